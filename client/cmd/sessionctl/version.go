package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/sessionha/sessionha/internal/buildinfo"
)

func init() {
	commands = append(commands, &command{
		name: "version", args: "",
		summary: "print the module version, the commit and the Go version sessionctl was built from",
		help: `
Prints what go build stamped into this binary:
  module  the module path and version: a release, a pseudo-version made from the
          commit (with +dirty for uncommitted changes), or (devel)
  commit  the git commit, its time, and "modified" if the checkout had uncommitted
          changes; "unknown" when built outside a git checkout (a source tarball, a git
          worktree, go run) or with -buildvcs=false (make build passes -buildvcs=auto)
  go      the Go toolchain and the platform
The functions log the same at start, as one JSON line with msg "build".`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			return func(_ context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("version takes no arguments, got %q", args[0])
				}
				_, err := fmt.Fprint(a.stdout, buildinfo.Read().Text("sessionctl"))
				return err
			}
		},
	})
}
