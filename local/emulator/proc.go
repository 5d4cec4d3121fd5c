// Package emulator starts and stops the local stack's emulator process: fauxqs (SNS and
// SQS, on Node 22), pinned in local/package.json. It is started with a death signal so
// that it cannot outlive the Go process that started it, and stopped by its PID. (The
// local stack's DynamoDB is Go, in process: local/dynamo.)
package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process with the tail of its output kept for error messages.
type Proc struct {
	Name string

	cmd  *exec.Cmd
	out  *tail
	done chan struct{}
	err  error // set before done is closed
	stop sync.Once
}

// start runs cmd as a child that dies with us. Output goes to the tail buffer and, if
// logPath is set, to that file as well.
func start(name string, cmd *exec.Cmd, logPath string) (*Proc, error) {
	p := &Proc{Name: name, cmd: cmd, out: &tail{max: 64 << 10}, done: make(chan struct{})}
	var w io.Writer = p.out
	var logFile *os.File
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("%s: open log: %w", name, err)
		}
		logFile = f
		w = io.MultiWriter(p.out, f)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own group, so Stop reaches its children too
		Pdeathsig: syscall.SIGKILL, // and it dies if we are killed
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit status once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Tail returns the last n lines the process printed.
func (p *Proc) Tail(n int) string { return p.out.lines(n) }

// Stop sends SIGTERM to the process group, waits up to 5 s, then SIGKILLs it.
// It is safe to call more than once and after the process has exited.
func (p *Proc) Stop() {
	p.stop.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// Kill sends SIGKILL to the process group and waits for the process to exit,
// as a crash would end it.
func (p *Proc) Kill() {
	p.stop.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
}

// exitedError describes a process that ended while we waited for it to become healthy.
func (p *Proc) exitedError() error {
	return fmt.Errorf("%s exited during start-up (%v); last output:\n%s", p.Name, p.err, indent(p.Tail(20)))
}

// waitHealthy polls check until it succeeds, the process exits, ctx ends, or timeout passes.
func (p *Proc) waitHealthy(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitedError()
		case <-ctx.Done():
			p.Stop()
			return fmt.Errorf("%s: start interrupted: %w", p.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("%s not healthy within %s (last check: %v); last output:\n%s",
				p.Name, timeout, last, indent(p.Tail(20)))
		}
	}
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) lines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ls := bytes.Split(bytes.TrimRight(t.buf, "\n"), []byte("\n"))
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}

// ErrNotInstalled means local/node_modules is missing or older than package-lock.json.
var ErrNotInstalled = errors.New("local emulators not installed (run `make deps`, which runs npm ci in local/)")
