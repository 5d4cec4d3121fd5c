// Command sessionctl operates a sessionha session store: it makes or checks the table,
// clears a cluster's sessions, prints the functions' counters every few seconds (as
// amsessiondb's -i did), shows, lists and logs out sessions, lists and redrives the
// dead-letter queues, deletes the queues of auth server instances gone for good, and
// names the build it runs (version).
//
//	sessionctl --env-file local/.run/site.env stats -i 5
//	sessionctl --outputs cdk-outputs.json --site eu dlq list
//	sessionctl help
//
// It is configured like an auth server: the SESSIONHA_* and AWS_* variables of the
// environment, or a file of them (--env-file, such as the local site's site.env), or the
// outputs file of `cdk deploy` (--outputs, read by infra/outputs, which imports no CDK).
//
// It never prints a session id or an attribute value (but with get --values). Exit
// status: 0 done, 1 failed, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// app is one run of sessionctl: its streams and what it knows of them.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// stdinTTY and stderrTTY say whether stdin and stderr are terminals: clear-store
	// and revoke want --yes from a person at a terminal; progress bars go to terminals only.
	stdinTTY, stderrTTY bool
	now                 func() time.Time

	// The configuration flags, which every command takes.
	envFile, outputsFile, site string
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of its arguments and flags
	summary string
	help    string // what it does, in full
	flags   func(fs *flag.FlagSet) func(ctx context.Context, a *app, args []string) error
}

var commands []*command // filled by init functions of the command files

// helpOrder is the order of the commands in the usage.
var helpOrder = []string{"create-store", "clear-store", "stats", "get", "destroy", "list", "revoke", "dlq list", "dlq redrive", "sweep-queues", "seal-key new", "seal-key wrap", "seal-key usage", "version"}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// terminal reports whether a stream is a terminal (tests replace it).
var terminal = func(v any) bool {
	f, ok := v.(*os.File)
	return ok && isTerminal(f)
}

// run is the whole program: main only adds os.Exit and signal handling.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	a.stdinTTY, a.stderrTTY = terminal(stdin), terminal(stderr)
	err := a.dispatch(ctx, args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK // -h: the usage was printed
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sessionctl: %s\nRun 'sessionctl help' for usage.\n", ue.msg)
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "sessionctl: interrupted")
		return exitFail
	default:
		fmt.Fprintf(stderr, "sessionctl: %v\n", err)
		return exitFail
	}
}

// configFlags registers the flags every command takes.
func (a *app) configFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.envFile, "env-file", a.envFile, "read `FILE` of KEY=value lines (such as local/.run/site.env); its variables override the environment's")
	fs.StringVar(&a.outputsFile, "outputs", a.outputsFile, "read the `FILE` that `cdk deploy --outputs-file` wrote; its values override the environment's")
	fs.StringVar(&a.site, "site", a.site, "with --outputs: the site `NAME` whose stack to read (may be omitted when the file holds one)")
}

func (a *app) dispatch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sessionctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.configFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(a.stdout)
			return err
		}
		return usagef("%v", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		a.usage(a.stderr)
		return &usageError{"no command given"}
	}
	name, rest := rest[0], rest[1:]
	if name == "help" {
		return a.helpCommand(rest)
	}
	if name == "dlq" { // two-word commands: dlq list, dlq redrive
		if len(rest) == 0 {
			return usagef("dlq: want a subcommand: dlq list or dlq redrive")
		}
		name, rest = "dlq "+rest[0], rest[1:]
	}
	if name == "seal-key" { // seal-key new, wrap, usage (seal.go)
		if len(rest) == 0 {
			return usagef("seal-key: want a subcommand: seal-key new, seal-key wrap or seal-key usage")
		}
		name, rest = "seal-key "+rest[0], rest[1:]
	}
	c := findCommand(name)
	if c == nil {
		return usagef("unknown command %q", name)
	}
	cfs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	a.configFlags(cfs)
	do := c.flags(cfs)
	pos, err := parseInterspersed(cfs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.commandUsage(a.stdout, c)
			return err
		}
		return usagef("%s: %v", c.name, err)
	}
	if err := a.loadConfigFiles(); err != nil {
		return err
	}
	return do(ctx, a, pos)
}

// parseInterspersed parses flags anywhere among the arguments (`get ID --values` as well
// as `get --values ID`), as long as "--" has not ended them. A session id may begin with
// "-" (one in 64 does: base64url): an argument shaped like one that names no flag is an
// argument, not a flag.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if len(args) > 0 && looksLikeID(args[0]) && fs.Lookup(strings.TrimLeft(args[0], "-")) == nil {
			pos, args = append(pos, args[0]), args[1:]
			continue
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil // flags ended by "--"
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (a *app) helpCommand(args []string) error {
	if len(args) == 0 {
		a.usage(a.stdout)
		return nil
	}
	name := strings.Join(args, " ")
	c := findCommand(name)
	if c == nil {
		return usagef("help: unknown command %q", name)
	}
	a.commandUsage(a.stdout, c)
	return nil
}

func (a *app) usage(w io.Writer) {
	fmt.Fprint(w, `sessionctl operates a sessionha session store.

Usage:
  sessionctl [config flags] COMMAND [flags] [arguments]

Commands:
`)
	for _, name := range helpOrder {
		c := findCommand(name)
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help [COMMAND] this text, or a command's in full

Config flags (any command, before or after it):
  --env-file FILE   KEY=value lines, such as local/.run/site.env from make local
  --outputs FILE    the outputs file of cdk deploy --outputs-file (with --site NAME)
Without them the environment's SESSIONHA_* and AWS_* variables apply, as for an auth
server: SESSIONHA_TABLE, SESSIONHA_CLUSTER, SESSIONHA_SITE, SESSIONHA_OPS_TOPIC_ARN, ...

Session ids are bearer credentials: sessionctl never prints one. Pass "-" instead of an
ID to read it from stdin, out of the shell history and the process list.

Exit status: 0 done, 1 failed, 2 usage error.
`)
}

func (a *app) commandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: sessionctl %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.help))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fmt.Fprintln(w, "\nConfig flags: --env-file FILE, --outputs FILE [--site NAME] (see sessionctl help).")
}

// idArg reads a session id argument: "-" reads it from stdin (first line).
func (a *app) idArg(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", usagef("%s: want one session ID (or - to read it from stdin), got %d arguments", cmd, len(args))
	}
	id := args[0]
	if id == "-" {
		b, err := io.ReadAll(io.LimitReader(a.stdin, 4096))
		if err != nil {
			return "", fmt.Errorf("%s: read the id from stdin: %w", cmd, err)
		}
		id, _, _ = strings.Cut(string(b), "\n")
		id = strings.TrimSpace(id)
	}
	if !validID(id) {
		// Not quoted back: it might be a mistyped credential.
		return "", usagef("%s: that is not a session id (want the 43 base64url characters of a session cookie)", cmd)
	}
	return id, nil
}

// looksLikeID reports whether s has a session id's shape: 43 characters of base64url.
func looksLikeID(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
