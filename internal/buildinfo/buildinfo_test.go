package buildinfo

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func stamped(modified string) *debug.BuildInfo {
	return &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/sessionha/sessionha", Version: "v0.0.0-20261202203852-bead600095e3"},
		Settings: []debug.BuildSetting{
			{Key: "-ldflags", Value: "-s -w -X main.secret=hunter2"},
			{Key: "CGO_ENABLED", Value: "0"},
			{Key: "GOARCH", Value: "arm64"},
			{Key: "GOOS", Value: "linux"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "bead600095e3acc78ca544ac5522eac85dddd77e"},
			{Key: "vcs.time", Value: "2026-12-02T20:38:52Z"},
			{Key: "vcs.modified", Value: modified},
		},
	}
}

// TestText: the lines sessionctl version prints, for a stamped build, a modified one and
// one without VCS information.
func TestText(t *testing.T) {
	got := From(stamped("false")).Text("sessionctl")
	want := "sessionctl\n" +
		"  module  github.com/sessionha/sessionha v0.0.0-20261202203852-bead600095e3\n" +
		"  commit  bead600095e3acc78ca544ac5522eac85dddd77e (2026-12-02T20:38:52Z)\n" +
		"  go      go1.26.8 linux/arm64\n"
	if got != want {
		t.Errorf("stamped:\n%s\nwant:\n%s", got, want)
	}
	if got := From(stamped("true")).Text("x"); !strings.Contains(got, "(2026-12-02T20:38:52Z, modified)") {
		t.Errorf("modified build:\n%s", got)
	}
	bare := From(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sessionha/sessionha"}})
	got = bare.Text("sessionctl")
	for _, s := range []string{"module  github.com/sessionha/sessionha (devel)\n", "commit  unknown (not built in a git checkout", "go      go1.26.8 " + runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, s) {
			t.Errorf("unstamped build lacks %q:\n%s", s, got)
		}
	}
}

// TestLog: one JSON line naming the build, with no build flag (which could carry a
// secret passed with -X) and no environment.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("build", From(stamped("true")).Attrs()...)
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines, want 1:\n%s", n, buf.String())
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"msg": "build", "module": "github.com/sessionha/sessionha", "version": "v0.0.0-20261202203852-bead600095e3",
		"commit": "bead600095e3acc78ca544ac5522eac85dddd77e", "commitTime": "2026-12-02T20:38:52Z", "modified": true, "go": "go1.26.8",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	if strings.Contains(buf.String(), "hunter2") || strings.Contains(buf.String(), "ldflags") {
		t.Errorf("the build line carries build flags: %s", buf.String())
	}

	buf.Reset()
	log.Info("build", From(&debug.BuildInfo{Main: debug.Module{Path: "m"}}).Attrs()...)
	line = nil
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["commit"] != Unknown || line["version"] != "(devel)" || line["commitTime"] != nil {
		t.Errorf("unstamped build line: %s", buf.String())
	}
}

// TestRead: the test binary's own information (go test stamps no VCS data).
func TestRead(t *testing.T) {
	in := Read()
	if in.Go != runtime.Version() || in.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Read: %+v", in)
	}
}
