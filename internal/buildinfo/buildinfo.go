// Package buildinfo names the build a program runs: the module's version, the VCS commit
// it was built from, and the Go toolchain, read from what `go build` stamps into every
// binary (runtime/debug.ReadBuildInfo). sessionctl prints it (sessionctl version) and the
// functions log it once at start, so that an operator can tell which code answers.
//
// The commit is stamped only when the build runs inside a git checkout (a directory with
// a .git folder; Go does not recognise a git worktree) with VCS stamping on: the default
// -buildvcs=auto, which the project's builds pass explicitly since a GOFLAGS of
// -buildvcs=false would turn it off. -trimpath does not remove it. Elsewhere (a source
// tarball, `go run`, a test binary) the commit is unknown, and Info says so; the module
// version is then "(devel)", or the release when the program was built from a module
// download (go install ...@v1.2.3).
package buildinfo

import (
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what a binary knows of its build. It holds no secret: only the module's path
// and version, the VCS fields and the toolchain, never build flags or the environment.
type Info struct {
	// Module is the main module's path ("github.com/sessionha/sessionha"), "" if unknown.
	Module string
	// Version is the main module's version: a release, a pseudo-version made from the
	// commit (Go 1.24 and later, "+dirty" when modified), or "(devel)".
	Version string
	// Commit is the full VCS revision, "" if not stamped; Time its commit time (RFC 3339,
	// UTC), and Modified whether the checkout had uncommitted changes.
	Commit, Time string
	Modified     bool
	// Go is the toolchain's version ("go1.26.8"), Platform GOOS/GOARCH.
	Go, Platform string
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	}
	return From(bi)
}

// From reads bi: Read's work, for a BuildInfo of any binary.
func From(bi *debug.BuildInfo) Info {
	in := Info{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos == "" || goarch == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	in.Platform = goos + "/" + goarch
	if in.Go == "" {
		in.Go = runtime.Version()
	}
	return in
}

// Unknown is what Text and Attrs give for a commit that was not stamped.
const Unknown = "unknown"

// commit is the commit as shown: the revision, or Unknown.
func (in Info) commit() string {
	if in.Commit == "" {
		return Unknown
	}
	return in.Commit
}

// Text is Info for people, as `sessionctl version` prints it: the program's name, then
// one "key  value" line each for the module, the commit and the toolchain:
//
//	sessionctl
//	  module  github.com/sessionha/sessionha v0.0.0-20261202203852-bead600095e3
//	  commit  bead600095e3acc78ca544ac5522eac85dddd77e (2026-12-02T20:38:52Z)
//	  go      go1.26.8 linux/amd64
//
// A commit with uncommitted changes ends in ", modified" inside the parentheses; one
// not stamped reads "unknown (not built in a git checkout with -buildvcs=auto)".
func (in Info) Text(program string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", program)
	module := in.Module
	if module == "" {
		module = "(unknown module)"
	}
	fmt.Fprintf(&b, "  module  %s %s\n", module, in.Version)
	switch {
	case in.Commit == "":
		fmt.Fprintf(&b, "  commit  %s (not built in a git checkout with -buildvcs=auto)\n", Unknown)
	default:
		var notes []string
		if in.Time != "" {
			notes = append(notes, in.Time)
		}
		if in.Modified {
			notes = append(notes, "modified")
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, "  commit  %s (%s)\n", in.Commit, strings.Join(notes, ", "))
		} else {
			fmt.Fprintf(&b, "  commit  %s\n", in.Commit)
		}
	}
	fmt.Fprintf(&b, "  go      %s %s\n", in.Go, in.Platform)
	return b.String()
}

// Attrs is Info for a structured log line: module, version, commit (Unknown if not
// stamped), commitTime (only if stamped), modified, go.
func (in Info) Attrs() []any {
	attrs := []any{slog.String("module", in.Module), slog.String("version", in.Version), slog.String("commit", in.commit())}
	if in.Time != "" {
		attrs = append(attrs, slog.String("commitTime", in.Time))
	}
	return append(attrs, slog.Bool("modified", in.Modified), slog.String("go", in.Go))
}

// Log writes the one line a program logs at start: message "build" with Attrs.
func Log(log *slog.Logger) {
	log.Info("build", Read().Attrs()...)
}
