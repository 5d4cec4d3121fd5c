// Command localsite runs a sessionha site on this machine, in the foreground, until
// SIGINT or SIGTERM: DynamoDB Local, fauxqs, the edge port, the provisioned topology and
// the functions. Once the site is up it writes local/.run/site.env. `make local` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sessionha/sessionha/local/demo"
	"github.com/sessionha/sessionha/local/emulator"
	"github.com/sessionha/sessionha/local/site"
)

func main() {
	os.Exit(run())
}

func run() int {
	// Stop (gracefully, via SIGTERM) when whoever started us dies, e.g. make killed:
	// the emulators would otherwise be orphaned with us.
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	fs := flag.NewFlagSet("localsite", flag.ContinueOnError)
	name := fs.String("site", "local", "site `name` (1-32 of a-z, 0-9, -)")
	region := fs.String("region", "us-east-1", "AWS `region` the site pretends to be in")
	edgePort := fs.Int("edge-port", 4566, "the edge `port` on 127.0.0.1 that SDK clients use")
	runDir := fs.String("run-dir", "", "`dir` for site.env, logs and bootstraps (default local/.run)")
	demoAddr := fs.String("demo-addr", "127.0.0.1:8080", "`address` of the demo auth site (127.0.0.1:PORT; \"off\" for none)")
	verbose := fs.Bool("v", false, "log the site's progress")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: localsite [flags]\n\nRuns a sessionha site locally until interrupted.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h asked for the usage, which was printed
		}
		return 2
	}
	if *edgePort < 1 || *edgePort > 65535 {
		fmt.Fprintf(os.Stderr, "localsite: -edge-port %d: want 1-65535\n", *edgePort)
		return 2
	}
	if host, _, err := net.SplitHostPort(*demoAddr); *demoAddr != "off" && (err != nil || host != "127.0.0.1") {
		fmt.Fprintf(os.Stderr, "localsite: -demo-addr %q: want 127.0.0.1:PORT, or off\n", *demoAddr)
		return 2
	}
	dir, err := emulator.LocalDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localsite:", err)
		return 1
	}
	if *runDir == "" {
		*runDir = filepath.Join(dir, ".run")
	}
	// Absolute: the bootstraps are built from the module root, not the working directory,
	// and the summary names site.env relative to the module root.
	if *runDir, err = filepath.Abs(*runDir); err != nil {
		fmt.Fprintln(os.Stderr, "localsite: -run-dir:", err)
		return 1
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	s, err := site.Start(ctx, site.Options{
		Name: *name, Region: *region, EdgePort: *edgePort, Dir: dir, RunDir: *runDir, Logger: log,
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "localsite: interrupted while the site was starting; stopped what had started")
			return 1
		}
		fmt.Fprintln(os.Stderr, "localsite: the site did not come up:", err)
		return 1
	}
	defer s.Stop()
	demoLine := "off"
	if *demoAddr != "off" {
		d, err := demo.Start(ctx, demo.Options{
			Addr: *demoAddr, ModuleRoot: filepath.Dir(dir), BinDir: filepath.Join(*runDir, "bin"), Logger: log,
			// The demo's instances journal under the run directory, like everything else.
			Env: append(s.Env(), "SESSIONHA_JOURNAL_DIR="+filepath.Join(*runDir, "journal")),
		})
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "localsite: interrupted while the demo was starting; stopped what had started")
				return 1
			}
			fmt.Fprintln(os.Stderr, "localsite: the demo auth site did not come up:", err)
			return 1
		}
		defer d.Stop()
		demoLine = d.URL() + "   (two auth server instances behind a sticky proxy)"
	}
	// site.env last: when it exists, everything it describes answers.
	envPath := filepath.Join(*runDir, "site.env")
	if err := s.WriteEnv(envPath); err != nil {
		fmt.Fprintln(os.Stderr, "localsite: write site.env:", err)
		return 1
	}
	defer os.Remove(envPath) // whenever we return, the site it describes is gone
	// make local runs from the module root: name site.env relative to it when inside it.
	source := envPath
	if rel, err := filepath.Rel(filepath.Dir(dir), envPath); err == nil && filepath.IsLocal(rel) {
		source = rel
	}
	fmt.Printf(`sessionha site %q is up (%.1fs)
  edge (all services)  %s
  dynamodb-local       %s   (pid %d)
  fauxqs (sns, sqs)    %s   (pid %d)
  table                %s
  ops topic            %s
  functions            sessionop, sessionquery (real bootstraps under the local Lambda runner)
  demo auth site       %s
  logs                 %s
Configure a client:  set -a; . %s; set +a; export SESSIONHA_INSTANCE_ID=auth-1
Stop with Ctrl-C.
`, *name, time.Since(began).Seconds(), s.EdgeURL(), s.DynamoDB.Endpoint, s.DynamoDB.PID(),
		s.Fauxqs.Endpoint, s.Fauxqs.PID(), s.Outputs.Table, s.Outputs.TopicARNs["ops"],
		demoLine, filepath.Join(*runDir, "logs"), source)

	select {
	case <-ctx.Done():
		fmt.Println("\nstopping the site...")
	case <-s.DynamoDB.Done():
		fmt.Fprintf(os.Stderr, "localsite: dynamodb-local exited unexpectedly:\n%s\n", s.DynamoDB.Tail(20))
		return 1
	case <-s.Fauxqs.Done():
		fmt.Fprintf(os.Stderr, "localsite: fauxqs exited unexpectedly:\n%s\n", s.Fauxqs.Tail(20))
		return 1
	}
	return 0
}
