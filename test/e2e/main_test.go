// Package e2e runs the walking skeleton end to end: a local site started from Go (the
// same one `make local` runs) and auth server instances as separate OS processes, which
// the tests SIGKILL to fail sessions over.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

var (
	theSite *site.Site
	authBin string
	// journals is where auth server processes journal by default (SESSIONHA_JOURNAL_DIR),
	// so that the tests leave nothing in the user's cache directory.
	journals string
	fnLog    = &lines{}
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "sessionha-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	ctx := context.Background()
	authBin = filepath.Join(tmp, "authserver")
	journals = filepath.Join(tmp, "journals")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", authBin, "./authserver")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build authserver: %v\n%s", err, out)
		return 1
	}
	theSite, err = localtest.Site(ctx, tmp, fnLog)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local site:", err)
		return 1
	}
	defer theSite.Stop()
	code := m.Run()
	if code != 0 {
		// The functions' own account of what they did is usually the quickest clue.
		out := strings.Split(strings.TrimRight(fnLog.String(), "\n"), "\n")
		fmt.Fprintf(os.Stderr, "last lines the functions printed:\n%s\n", strings.Join(out[max(0, len(out)-40):], "\n"))
	}
	return code
}

// lines collects what the functions print, for assertions on their logs.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Command and Reply mirror the authserver's line protocol.
type Command struct {
	Cmd       string            `json:"cmd"`
	ID        string            `json:"id,omitempty"`
	Principal string            `json:"principal,omitempty"`
	MaxIdle   string            `json:"maxIdle,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"`
	Name      string            `json:"name,omitempty"`
}

type Reply struct {
	OK        bool              `json:"ok"`
	Err       string            `json:"err,omitempty"`
	NotFound  bool              `json:"notFound,omitempty"`
	ID        string            `json:"id,omitempty"`
	Principal string            `json:"principal,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"`
	Mode      string            `json:"mode,omitempty"`

	Notices     int64 `json:"notices,omitempty"`
	BusQueries  int64 `json:"busQueries,omitempty"`
	BusTimeouts int64 `json:"busTimeouts,omitempty"`
}

// instance is one auth server process.
type instance struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan Reply
	stderr  *lines
}

// startInstance starts an auth server process with the site's environment and waits
// for it to be ready. It is SIGKILLed when the test ends, if still running.
func startInstance(t *testing.T, name string) *instance {
	t.Helper()
	return startInstanceWith(t, name)
}

// startInstanceWith is startInstance with extra environment variables (later ones win).
func startInstanceWith(t *testing.T, name string, env ...string) *instance {
	t.Helper()
	cmd := exec.Command(authBin)
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "SESSIONHA_INSTANCE_ID=" + name,
		"SESSIONHA_JOURNAL_DIR=" + journals}, theSite.Env()...), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	i := &instance{t: t, name: name, cmd: cmd, in: in, replies: make(chan Reply, 1), stderr: &lines{}}
	cmd.Stderr = i.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r Reply
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = Reply{Err: "bad reply: " + sc.Text()}
			}
			i.replies <- r
		}
		close(i.replies)
	}()
	t.Cleanup(i.kill)
	if r := i.read(); !r.OK {
		t.Fatalf("instance %s did not start: %s", name, r.Err)
	}
	return i
}

func (i *instance) read() Reply {
	i.t.Helper()
	select {
	case r, ok := <-i.replies:
		if !ok {
			i.t.Fatalf("instance %s exited: %v\n%s", i.name, i.cmd.Wait(), i.stderr.String())
		}
		return r
	case <-time.After(60 * time.Second):
		i.t.Fatalf("instance %s: no reply within 60s\n%s", i.name, i.stderr.String())
	}
	return Reply{}
}

// do sends one command and returns its reply.
func (i *instance) do(c Command) Reply {
	i.t.Helper()
	b, _ := json.Marshal(c)
	if _, err := i.in.Write(append(b, '\n')); err != nil {
		i.t.Fatalf("instance %s: %v", i.name, err)
	}
	return i.read()
}

// kill ends the process with SIGKILL, as a crash would, and reaps it.
func (i *instance) kill() {
	if i.cmd.ProcessState != nil {
		return
	}
	_ = i.cmd.Process.Signal(syscall.SIGKILL)
	_, _ = i.cmd.Process.Wait()
}

// stop closes the process's input, which makes it Close its store and exit, and waits
// for it to exit.
func (i *instance) stop() {
	i.t.Helper()
	_ = i.in.Close()
	for range i.replies {
	}
	if err := i.cmd.Wait(); err != nil {
		i.t.Fatalf("instance %s did not exit cleanly: %v\n%s", i.name, err, i.stderr.String())
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	localtest.Eventually(t, what, cond)
}

func describe(r Reply) string {
	b, _ := json.Marshal(r)
	if r.ID == "" {
		return string(b)
	}
	return strings.ReplaceAll(string(b), r.ID, "<id>")
}
