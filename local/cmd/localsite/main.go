// Command localsite runs the sessionha sites of cdk.json on this machine, in the
// foreground, until SIGINT or SIGTERM: each site in its own region with its own DynamoDB
// replica (replicated between regions like a global table), topics, queues and
// functions, fauxqs for SNS and SQS, and one edge port for every service and region.
// Once the sites are up it writes local/.run/site.env (the primary site's) and
// local/.run/<site>.env for each site. `make local` runs it.
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
	"strings"
	"syscall"
	"time"

	"github.com/sessionha/sessionha/infra/topology"
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
	only := fs.String("site", "", "run only the site of this `name` from cdk.json (default: every site)")
	cdkJSON := fs.String("cdk-json", "", "the `file` listing the sites (default cdk.json at the module root)")
	edgePort := fs.Int("edge-port", 4566, "the edge `port` on 127.0.0.1 that SDK clients use")
	runDir := fs.String("run-dir", "", "`dir` for the env files, logs and bootstraps (default local/.run)")
	demoAddr := fs.String("demo-addr", "127.0.0.1:8080", "`address` of the demo auth site (127.0.0.1:PORT; \"off\" for none)")
	verbose := fs.Bool("v", false, "log the sites' progress")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: localsite [flags]\n\nRuns the sessionha sites of cdk.json locally until interrupted.\n\n")
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
	root := filepath.Dir(dir)
	if *cdkJSON == "" {
		*cdkJSON = filepath.Join(root, "cdk.json")
	}
	dep, err := topology.ReadCDKJSON(*cdkJSON)
	if err != nil {
		fmt.Fprintln(os.Stderr, "localsite: -cdk-json:", err)
		return 2
	}
	sites := dep.Sites
	if *only != "" {
		sites = nil
		var names []string
		for _, s := range dep.Sites {
			names = append(names, s.Name)
			if s.Name == *only {
				s.Primary = true // alone, it is its own primary
				sites = []topology.Site{s}
			}
		}
		if sites == nil {
			fmt.Fprintf(os.Stderr, "localsite: -site %q: cdk.json lists %s\n", *only, strings.Join(names, ", "))
			return 2
		}
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
	st, err := site.StartStack(ctx, site.StackOptions{
		Sites: sites, Table: dep.Table, EdgePort: *edgePort, Dir: dir, RunDir: *runDir, Logger: log,
		SealValues: true, // the env files seal attribute values with the run's key, through the KMS stand-in
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "localsite: interrupted while the sites were starting; stopped what had started")
			return 1
		}
		fmt.Fprintln(os.Stderr, "localsite: the sites did not come up:", err)
		return 1
	}
	defer st.Stop()
	primary := st.Primary()
	demoLine := "off"
	if *demoAddr != "off" {
		d, err := demo.Start(ctx, demo.Options{
			Addr: *demoAddr, ModuleRoot: root, BinDir: filepath.Join(*runDir, "bin"), Logger: log,
			// The demo's instances journal under the run directory, like everything else.
			Env: append(primary.Env(), "SESSIONHA_JOURNAL_DIR="+filepath.Join(*runDir, "journal")),
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
		demoLine = d.URL() + "   (two auth server instances of site " + primary.Topology.Site.Name + " behind a sticky proxy)"
	}
	// The env files last: when site.env exists, everything it describes answers.
	var written []string
	defer func() { // whenever we return, the sites they describe are gone
		for _, p := range written {
			os.Remove(p)
		}
	}()
	for _, s := range st.Sites {
		p := filepath.Join(*runDir, s.Topology.Site.Name+".env")
		if err := s.WriteEnv(p); err != nil {
			fmt.Fprintln(os.Stderr, "localsite: write", p+":", err)
			return 1
		}
		written = append(written, p)
	}
	envPath := filepath.Join(*runDir, "site.env")
	if err := primary.WriteEnv(envPath); err != nil {
		fmt.Fprintln(os.Stderr, "localsite: write site.env:", err)
		return 1
	}
	written = append(written, envPath)
	// make local runs from the module root: name the env files relative to it when inside it.
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && filepath.IsLocal(r) {
			return r
		}
		return p
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sessionha: %d site(s) up (%.1fs)\n", len(st.Sites), time.Since(began).Seconds())
	fmt.Fprintf(&b, "  edge (all services)  %s\n", st.EdgeURL())
	fmt.Fprintf(&b, "  fauxqs (sns, sqs)    %s   (pid %d)\n", st.Fauxqs.Endpoint, st.Fauxqs.PID())
	for _, s := range st.Sites {
		tag := ""
		if s == primary {
			tag = ", primary"
		}
		fmt.Fprintf(&b, "  site %-15s %s%s: table %s, ops topic %s, env %s\n", s.Topology.Site.Name, s.AWS.Region, tag,
			s.Outputs.Table, s.Outputs.TopicARNs[topology.TopicOps], rel(filepath.Join(*runDir, s.Topology.Site.Name+".env")))
	}
	fmt.Fprintf(&b, "  dynamodb             in process, one replica per region (%s)\n", strings.Join(st.Regions(), ", "))
	fmt.Fprintf(&b, "  functions            sessionop, sessionquery per site (real bootstraps under the local Lambda runner)\n")
	fmt.Fprintf(&b, "  demo auth site       %s\n", demoLine)
	fmt.Fprintf(&b, "  logs                 %s\n", filepath.Join(*runDir, "logs"))
	fmt.Fprintf(&b, "Configure a client:  set -a; . %s; set +a; export SESSIONHA_INSTANCE_ID=auth-1\n", rel(envPath))
	fmt.Fprintf(&b, "Stop with Ctrl-C.\n")
	fmt.Print(b.String())

	select {
	case <-ctx.Done():
		fmt.Println("\nstopping the sites...")
	case <-st.Fauxqs.Done():
		fmt.Fprintf(os.Stderr, "localsite: fauxqs exited unexpectedly:\n%s\n", st.Fauxqs.Tail(20))
		return 1
	}
	return 0
}
