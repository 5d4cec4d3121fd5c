// Package demo runs the demo auth site of the local stack: two demo auth server
// processes (local/demo/authserver) behind a small proxy that sticks a browser to one
// instance and routes it to the other when its instance is down, as the old products'
// load balancer did. An instance that dies is restarted after a few seconds.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Options configure the demo; the zero value means the defaults on each field.
type Options struct {
	// Addr is where the proxy listens. Default 127.0.0.1:8080.
	Addr string
	// Env is the auth servers' environment: the site's KEY=value lines (site.Env).
	Env []string
	// ModuleRoot is the sessionha module's directory, to build the auth server. Required.
	ModuleRoot string
	// BinDir receives the built auth server. Required.
	BinDir string
	// Instances names the auth server instances. Default demo-a, demo-b.
	Instances []string
	// RestartDelay is how long a dead instance stays down. Default 3 s.
	RestartDelay time.Duration
	// Logger receives the demo's own events (instance died, restarted). Default: discard.
	Logger *slog.Logger
}

// Demo is a running demo site.
type Demo struct {
	opts      Options
	bin       string
	ln        net.Listener
	srv       *http.Server
	instances []*instance
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// instance is one supervised auth server process.
type instance struct {
	name string
	mu   sync.Mutex
	cmd  *exec.Cmd
	addr string // 127.0.0.1:PORT once listening, "" while down
	out  bytes.Buffer
}

// Start builds the auth server, starts the instances and the proxy.
func Start(ctx context.Context, o Options) (*Demo, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8080"
	}
	if len(o.Instances) == 0 {
		o.Instances = []string{"demo-a", "demo-b"}
	}
	if o.RestartDelay == 0 {
		o.RestartDelay = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if host, _, err := net.SplitHostPort(o.Addr); err != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("demo: address %q: want 127.0.0.1:PORT", o.Addr)
	}
	d := &Demo{opts: o, bin: filepath.Join(o.BinDir, "demo-authserver")}
	build := exec.CommandContext(ctx, filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", d.bin, "./local/demo/authserver")
	build.Dir = o.ModuleRoot
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("demo: build the auth server: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("demo: %s is taken or unusable: %w (choose another with -demo-addr)", o.Addr, err)
	}
	d.ln = ln
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, name := range o.Instances {
		in := &instance{name: name}
		d.instances = append(d.instances, in)
		if err := d.spawn(in); err != nil {
			d.Stop()
			return nil, err
		}
	}
	d.srv = &http.Server{Handler: d.proxy(), ReadHeaderTimeout: 5 * time.Second}
	go d.srv.Serve(ln)
	return d, nil
}

// URL is the demo's address for a browser.
func (d *Demo) URL() string { return "http://" + d.ln.Addr().String() }

// PIDs returns the running instances' process ids by name.
func (d *Demo) PIDs() map[string]int {
	pids := map[string]int{}
	for _, in := range d.instances {
		in.mu.Lock()
		if in.cmd != nil && in.addr != "" {
			pids[in.name] = in.cmd.Process.Pid
		}
		in.mu.Unlock()
	}
	return pids
}

var listening = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// spawn starts an instance and waits until it listens; a supervisor goroutine restarts
// it after RestartDelay whenever it dies, until Stop.
func (d *Demo) spawn(in *instance) error {
	cmd := exec.Command(d.bin, "-addr", "127.0.0.1:0")
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, d.opts.Env...), "SESSIONHA_INSTANCE_ID="+in.name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.out.Reset()
	cmd.Stderr = &lockedWriter{mu: &in.mu, w: &in.out}
	in.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("demo: start %s: %w", in.name, err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case addr := <-ready:
		in.mu.Lock()
		in.cmd, in.addr = cmd, addr
		in.mu.Unlock()
	case err := <-exited:
		in.mu.Lock()
		defer in.mu.Unlock()
		return fmt.Errorf("demo: %s exited at start (%v): %s", in.name, err, bytes.TrimSpace(in.out.Bytes()))
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return fmt.Errorf("demo: %s did not listen within 30s", in.name)
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := <-exited
		in.mu.Lock()
		in.addr = ""
		in.mu.Unlock()
		select {
		case <-d.ctx.Done():
			return
		default:
		}
		d.opts.Logger.Warn("demo instance died; restarting it shortly", "instance", in.name, "exit", fmt.Sprint(err), "after", d.opts.RestartDelay)
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(d.opts.RestartDelay):
		}
		for d.ctx.Err() == nil {
			if err := d.spawn(in); err == nil {
				return
			} else {
				d.opts.Logger.Error("demo instance restart failed", "instance", in.name, "reason", err.Error())
			}
			select {
			case <-d.ctx.Done():
			case <-time.After(d.opts.RestartDelay):
			}
		}
	}()
	return nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Stop stops the proxy and every instance, by PID.
func (d *Demo) Stop() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.srv != nil {
		d.srv.Close()
	} else if d.ln != nil {
		d.ln.Close()
	}
	for _, in := range d.instances {
		in.mu.Lock()
		if in.cmd != nil && in.cmd.ProcessState == nil {
			_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGTERM)
		}
		in.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		for _, in := range d.instances {
			in.mu.Lock()
			if in.cmd != nil {
				_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
			}
			in.mu.Unlock()
		}
		<-done
	}
}

// stickyCookie names the instance a browser sticks to.
const stickyCookie = "demo-instance"

// proxy forwards each request to the browser's instance, or to the next live one when
// that one is down (the sticky cookie then moves with it).
func (d *Demo) proxy() http.Handler {
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
			return
		}
		start := 0
		if c, err := r.Cookie(stickyCookie); err == nil {
			for i, in := range d.instances {
				if in.name == c.Value {
					start = i
				}
			}
		}
		for k := range d.instances {
			in := d.instances[(start+k)%len(d.instances)]
			in.mu.Lock()
			addr := in.addr
			in.mu.Unlock()
			if addr == "" {
				continue
			}
			target := &url.URL{Scheme: "http", Host: addr}
			req := r.Clone(r.Context())
			req.URL.Scheme, req.URL.Host, req.RequestURI = target.Scheme, target.Host, ""
			req.Body = io.NopCloser(bytes.NewReader(body))
			resp, err := transport.RoundTrip(req)
			if err != nil {
				// Connection refused or reset: the instance is down. Nothing was
				// processed, so the request can go to the next one.
				continue
			}
			defer resp.Body.Close()
			for k, vs := range resp.Header {
				w.Header()[k] = vs
			}
			http.SetCookie(w, &http.Cookie{Name: stickyCookie, Value: in.name, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
			return
		}
		http.Error(w, "no demo instance is up; they restart within seconds", http.StatusBadGateway)
	})
}
