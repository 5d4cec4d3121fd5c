package main

// These tests run localsite as `make local` does: a real OS process, built once per test
// binary, stopped with SIGTERM. They check what an operator relies on: the summary, the
// env files a client sources, that the sites behind them apply session operations and
// replicate them between regions, and that stopping leaves no process behind.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sessionha/sessionha/client"
	_ "github.com/sessionha/sessionha/client/kmskeys" // site.env seals with KMS-wrapped keys
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// localsite is the command under test, built by TestMain.
var localsite string

const (
	upDeadline   = 120 * time.Second // start to site.env, emulators included
	stopDeadline = 30 * time.Second  // SIGTERM to exit
	pollEvery    = 50 * time.Millisecond
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "localsite-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	localsite = filepath.Join(tmp, "localsite")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", localsite, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build localsite: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// TestUpClientStop starts the sites of cdk.json as `make local` does (eu in eu-west-1,
// the primary, and us in us-east-1), uses them through their env files as auth servers
// would, and stops them with SIGTERM.
func TestUpClientStop(t *testing.T) {
	port := freePort(t)
	runDir := t.TempDir()
	envPath := filepath.Join(runDir, "site.env")
	demoPort := freePort(t)
	p := startLocalsite(t, "-edge-port", strconv.Itoa(port), "-run-dir", runDir, "-demo-addr", fmt.Sprintf("127.0.0.1:%d", demoPort))

	// Up: site.env appears, then the summary.
	waitFor(t, p, upDeadline, "site.env to be written", func() bool {
		_, err := os.Stat(envPath)
		return err == nil
	})
	upIn := time.Since(p.started)
	t.Logf("start to site.env: %.2fs", upIn.Seconds())
	p.collectDescendants()

	edgeURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, p, 10*time.Second, "the summary", func() bool {
		return strings.Contains(p.stdout.String(), "Stop with Ctrl-C.")
	})
	summary := p.stdout.String()
	demoURL := fmt.Sprintf("http://127.0.0.1:%d", demoPort)
	for _, want := range []string{"sessionha: 2 site(s) up", "edge (all services)  " + edgeURL, "site eu              eu-west-1, primary",
		"site us              us-east-1", "demo auth site       " + demoURL, "Stop with Ctrl-C."} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	// The file to source is named relative to the module root (where make runs) or,
	// outside it as here, absolutely.
	if m := regexp.MustCompile(`set -a; \. (\S+); set \+a`).FindStringSubmatch(summary); m == nil {
		t.Errorf("summary does not say how to configure a client:\n%s", summary)
	} else if src := m[1]; src != envPath {
		t.Errorf("summary says to source %s, want %s", src, envPath)
	}
	// The emulator PID it prints is its own child (DynamoDB runs in process).
	emuPIDs := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(fauxqs) .*\(pid (\d+)\)$`).FindAllStringSubmatch(summary, -1) {
		emuPIDs[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(emuPIDs) != 1 {
		t.Errorf("summary: want the pid of fauxqs, got %v:\n%s", emuPIDs, summary)
	}
	desc := p.descendants()
	for name, pid := range emuPIDs {
		if !slices.Contains(desc, pid) {
			t.Errorf("%s pid %d is not a descendant of localsite (pid %d); descendants %v", name, pid, p.pid(), desc)
		}
	}

	// The demo auth site answers with its login page, from one of its two instances.
	if resp, err := http.Get(demoURL); err != nil {
		t.Errorf("demo site: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "sessionha demo") || !strings.Contains(string(body), `id="login"`) {
			t.Errorf("demo site: %s\n%s", resp.Status, body)
		}
	}
	p.collectDescendants() // the demo's instances too

	// site.env: everything a client reads but the instance id, pointing at the edge port.
	if st, err := os.Stat(envPath); err == nil && st.Mode().Perm() != 0o600 {
		t.Errorf("site.env mode %v, want 0600", st.Mode().Perm())
	}
	env := parseEnvFile(t, envPath)
	for _, k := range []string{
		"SESSIONHA_SITE", "SESSIONHA_CLUSTER", "SESSIONHA_TABLE",
		"SESSIONHA_OPS_TOPIC_ARN", "SESSIONHA_QUERY_TOPIC_ARN", "SESSIONHA_REPLY_TOPIC_ARN", "SESSIONHA_NOTICE_TOPIC_ARN", "SESSIONHA_LIFECYCLE_TOPIC_ARN",
		"SESSIONHA_PERSISTENCE", "SESSIONHA_FREQUENCY", "SESSIONHA_SCOPE", "SESSIONHA_READ_PATH", "SESSIONHA_MAX_WAIT",
		"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
	} {
		if env[k] == "" {
			t.Errorf("site.env: %s missing or empty", k)
		}
	}
	if v, ok := env["SESSIONHA_INSTANCE_ID"]; ok {
		t.Errorf("site.env sets SESSIONHA_INSTANCE_ID=%s: each instance sets its own", v)
	}
	if got := env["AWS_ENDPOINT_URL"]; got != edgeURL {
		t.Errorf("site.env: AWS_ENDPOINT_URL=%s, want the edge %s", got, edgeURL)
	}
	// site.env is the primary site's; each site has its own file too.
	if env["SESSIONHA_SITE"] != "eu" || env["AWS_REGION"] != "eu-west-1" {
		t.Errorf("site.env: site %q in %q, want the primary eu in eu-west-1", env["SESSIONHA_SITE"], env["AWS_REGION"])
	}
	euEnv := parseEnvFile(t, filepath.Join(runDir, "eu.env"))
	usEnv := parseEnvFile(t, filepath.Join(runDir, "us.env"))
	if !maps.Equal(euEnv, env) {
		t.Errorf("eu.env differs from site.env:\n%v\n%v", euEnv, env)
	}
	if usEnv["SESSIONHA_SITE"] != "us" || usEnv["AWS_REGION"] != "us-east-1" || usEnv["SESSIONHA_TABLE"] != env["SESSIONHA_TABLE"] ||
		usEnv["SESSIONHA_OPS_TOPIC_ARN"] == env["SESSIONHA_OPS_TOPIC_ARN"] || !strings.Contains(usEnv["SESSIONHA_OPS_TOPIC_ARN"], ":us-east-1:") {
		t.Errorf("us.env: want site us in us-east-1 with the same table and its own topics: %v", usEnv)
	}
	// Sealing is on: one run key for both sites, each site unwrapping it with its own
	// region's seal key.
	if env[client.EnvSealKMSKeys] == "" || usEnv[client.EnvSealKMSKeys] != env[client.EnvSealKMSKeys] ||
		!strings.Contains(env[client.EnvSealKMSKeyARN], ":eu-west-1:") || !strings.Contains(usEnv[client.EnvSealKMSKeyARN], ":us-east-1:") {
		t.Errorf("the env files do not turn sealing on with one key for both sites: eu %s=%q %s=%.40q…, us %s=%q",
			client.EnvSealKMSKeyARN, env[client.EnvSealKMSKeyARN], client.EnvSealKMSKeys, env[client.EnvSealKMSKeys],
			client.EnvSealKMSKeyARN, usEnv[client.EnvSealKMSKeyARN])
	}
	// Every site's notice topic, the file's own site's first: notices cross sites.
	for _, e := range []map[string]string{env, usEnv} {
		other := euEnv
		if e["SESSIONHA_SITE"] == "eu" {
			other = usEnv
		}
		if want := e["SESSIONHA_NOTICE_TOPIC_ARN"] + "," + other["SESSIONHA_NOTICE_TOPIC_ARN"]; e["SESSIONHA_NOTICE_TOPIC_ARNS"] != want {
			t.Errorf("%s.env: SESSIONHA_NOTICE_TOPIC_ARNS=%q, want %q", e["SESSIONHA_SITE"], e["SESSIONHA_NOTICE_TOPIC_ARNS"], want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// A client configured only from site.env: a session saved by one instance is read by
	// another once the function has applied it, and a destroy is seen the same way.
	for k, v := range env {
		t.Setenv(k, v)
	}
	for _, k := range []string{"SESSIONHA_FLUSH_INTERVAL", "AWS_PROFILE", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SNS"} {
		if _, ok := env[k]; !ok {
			t.Setenv(k, "") // nothing from the developer's environment
		}
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(runDir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(runDir, "no-aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	a := openStore(t, "localsite-test-a", env)
	b := openStore(t, "localsite-test-b", env)
	us := openStore(t, "localsite-test-us", usEnv) // in the other region: reads its replica

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess, err := a.Create(ctx, client.NewSession{Principal: "alice", MaxIdle: 30 * time.Minute, MaxLife: 8 * time.Hour})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	cart := []byte(`["book"]`)
	sess.Set("cart", cart)
	if err := a.Save(ctx, sess); err != nil {
		t.Fatalf("Save: %v", err)
	}
	saved := time.Now()
	eventually(t, p, "the other instance to load the saved session", func() (bool, string) {
		got, err := b.Load(ctx, sess.ID())
		if err != nil {
			return false, err.Error()
		}
		v, ok := got.Get("cart")
		if !ok || !bytes.Equal(v, cart) || got.Principal() != "alice" {
			return false, fmt.Sprintf("principal %q, cart %q (present %v)", got.Principal(), v, ok)
		}
		return true, ""
	})
	t.Logf("save to load on another instance: %.2fs", time.Since(saved).Seconds())
	// What the table holds is sealed, with the run's key.
	awsCfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(env["AWS_REGION"])) // the environment is us.env's now
	if err != nil {
		t.Fatal(err)
	}
	it, err := (&record.Table{DB: dynamodb.NewFromConfig(awsCfg), Name: env["SESSIONHA_TABLE"]}).Get(ctx, record.Key("default", events.HashID(sess.ID())))
	if err != nil || it == nil {
		t.Fatalf("read the item: %v %v", it, err)
	}
	if id, sealed := client.SealedBy(it.Attrs["cart"]); !sealed || !strings.HasPrefix(id, "local-") || bytes.Contains(it.Attrs["cart"], cart) {
		t.Errorf("the table holds cart as %q (sealed %v by %q), want it sealed with the run's key", it.Attrs["cart"], sealed, id)
	}
	eventually(t, p, "an instance of the other region to load it (replicated)", func() (bool, string) {
		got, err := us.Load(ctx, sess.ID())
		if err != nil {
			return false, err.Error()
		}
		if v, _ := got.Get("cart"); !bytes.Equal(v, cart) {
			return false, fmt.Sprintf("cart %q", v)
		}
		return true, ""
	})
	t.Logf("save to load in the other region: %.2fs", time.Since(saved).Seconds())
	if err := a.Destroy(ctx, sess.ID()); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for name, other := range map[string]*client.Store{"the other instance": b, "the other region's instance": us} {
		eventually(t, p, name+" to see the destroy", func() (bool, string) {
			_, err := other.Load(ctx, sess.ID())
			if errors.Is(err, client.ErrNotFound) {
				return true, ""
			}
			return false, fmt.Sprintf("Load: %v", err)
		})
	}

	// The function ran as a bootstrap under the command (idle environments keep running).
	p.collectDescendants()
	if names := p.descendantNames(); !hasName(names, "bootstrap") {
		t.Errorf("no bootstrap among localsite's descendants after a session op: %v", names)
	}

	// Stop: SIGTERM, exit 0, site.env gone, and every process it started gone with it.
	p.collectDescendants()
	t.Logf("localsite pid %d; descendants seen: %s", p.pid(), strings.Join(p.descendantNames(), " "))
	stopAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopDeadline):
		t.Fatalf("localsite did not exit within %s of SIGTERM\nstdout:\n%s\nstderr:\n%s", stopDeadline, p.stdout, p.stderr)
	}
	stopIn := time.Since(stopAt)
	t.Logf("SIGTERM to exit: %.2fs", stopIn.Seconds())
	if p.waitErr != nil && !errors.As(p.waitErr, new(*exec.ExitError)) {
		t.Errorf("wait: %v (a descendant kept localsite's output open?)", p.waitErr)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0\nstderr:\n%s", code, p.stderr)
	}
	if !strings.Contains(p.stdout.String(), "stopping the site") {
		t.Errorf("stdout does not say it is stopping:\n%s", p.stdout)
	}
	for _, f := range []string{"site.env", "eu.env", "us.env"} {
		if _, err := os.Stat(filepath.Join(runDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after the sites stopped (stat: %v)", f, err)
		}
	}
	p.checkNoneLeft(t)
	t.Logf("timings: up %.2fs, stop %.2fs", upIn.Seconds(), stopIn.Seconds())
}

// TestEdgePortTaken: a taken edge port stops localsite at once, naming the port.
func TestEdgePortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	runDir := t.TempDir()
	p := startLocalsite(t, "-edge-port", strconv.Itoa(port), "-run-dir", runDir, "-demo-addr", "off")
	select {
	case <-p.done:
	case <-time.After(upDeadline):
		t.Fatalf("localsite still running %s after start on a taken edge port\nstdout:\n%s\nstderr:\n%s", upDeadline, p.stdout, p.stderr)
	}
	if code := p.cmd.ProcessState.ExitCode(); code == 0 || code == -1 {
		t.Errorf("exit code %d on a taken edge port, want a non-zero exit", code)
	}
	stderr := p.stderr.String()
	if !strings.Contains(stderr, "is taken") || !strings.Contains(stderr, strconv.Itoa(port)) {
		t.Errorf("stderr does not say port %d is taken:\n%s", port, stderr)
	}
	if out := p.stdout.String(); strings.Contains(out, "is up") {
		t.Errorf("printed an 'is up' summary although the site did not come up:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(runDir, "site.env")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("site.env written for a site that did not come up (stat: %v)", err)
	}
}

// TestBadEdgePort: an out-of-range port is a usage error (exit 2) naming the flag.
func TestBadEdgePort(t *testing.T) {
	p := startLocalsite(t, "-edge-port", "70000", "-run-dir", t.TempDir(), "-demo-addr", "off")
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("localsite -edge-port 70000 still running after 30s")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit code %d, want 2\nstderr:\n%s", code, p.stderr)
	}
	if stderr := p.stderr.String(); !strings.Contains(stderr, "-edge-port") || !strings.Contains(stderr, "70000") {
		t.Errorf("stderr does not name -edge-port 70000:\n%s", stderr)
	}
	if out := p.stdout.String(); out != "" {
		t.Errorf("printed on stdout: %s", out)
	}
}

// TestInterruptedStart: SIGTERM while the emulators start stops them too, and no
// site.env or summary is left claiming a site is up.
func TestInterruptedStart(t *testing.T) {
	runDir := t.TempDir()
	p := startLocalsite(t, "-edge-port", strconv.Itoa(freePort(t)), "-run-dir", runDir, "-demo-addr", "off")
	waitFor(t, p, upDeadline, "fauxqs to be started", func() bool {
		return hasName(p.descendantNames(), "node")
	})
	stopAt := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(stopDeadline):
		t.Fatalf("localsite did not exit within %s of SIGTERM during start-up", stopDeadline)
	}
	t.Logf("SIGTERM during start-up to exit: %.2fs; descendants seen %s", time.Since(stopAt).Seconds(), strings.Join(p.descendantNames(), " "))
	if strings.Contains(p.stdout.String(), "is up") {
		// Possible only if start-up won the race; then it must still have stopped cleanly.
		t.Logf("the site came up before SIGTERM arrived")
	} else if !strings.Contains(p.stderr.String(), "interrupted") {
		t.Errorf("stderr does not say start-up was interrupted:\n%s", p.stderr)
	}
	if code := p.cmd.ProcessState.ExitCode(); code < 0 {
		t.Errorf("localsite was killed by a signal (%v), not stopped", p.cmd.ProcessState)
	}
	if _, err := os.Stat(filepath.Join(runDir, "site.env")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("site.env left behind (stat: %v)", err)
	}
	p.checkNoneLeft(t)
}

// checkNoneLeft fails the test for any descendant of localsite still running a few
// seconds after it exited (reaping by init may lag a little).
func (p *process) checkNoneLeft(t *testing.T) {
	t.Helper()
	var left []int
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range p.descendants() {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(pollEvery)
		}
		if alive(pid) {
			left = append(left, pid)
		}
	}
	if len(left) > 0 {
		t.Errorf("still running after localsite exited: %s", describe(left))
	}
}

// process is a running localsite and every descendant seen while it ran.
type process struct {
	cmd            *exec.Cmd
	started        time.Time
	stdout, stderr *syncBuffer
	done           chan struct{}
	waitErr        error // set before done is closed

	mu   sync.Mutex
	desc map[int]string // pid -> command name
	t    *testing.T
}

// startLocalsite runs the command in its own process group, killed if the test process
// dies; on any test end it and everything it started are SIGKILLed if still there.
func startLocalsite(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{
		cmd: exec.Command(localsite, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{},
		done: make(chan struct{}), desc: map[int]string{}, t: t,
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.WaitDelay = 5 * time.Second // a descendant holding our pipes must not hang Wait
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	go func() { // children come and go (go build at start-up, bootstraps on demand)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			p.collectDescendants()
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// collectDescendants adds every process now below localsite in the process tree.
// Emulators and bootstraps each have a process group of their own, so the tree (not
// localsite's group) is what finds them.
func (p *process) collectDescendants() {
	if p.exited() {
		return
	}
	procs := processTable()
	p.mu.Lock()
	defer p.mu.Unlock()
	queue := []int{p.pid()}
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		for pid, pr := range procs {
			if pr.ppid == parent {
				if _, seen := p.desc[pid]; !seen {
					p.desc[pid] = pr.comm
				}
				queue = append(queue, pid)
			}
		}
	}
}

func (p *process) descendants() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.desc))
}

// hasName reports whether a "comm(pid)" of descendantNames has this command name.
func hasName(names []string, comm string) bool {
	return slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, comm+"(") })
}

// descendantNames lists the descendants seen as "comm(pid)", by pid.
func (p *process) descendantNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for _, pid := range slices.Sorted(maps.Keys(p.desc)) {
		names = append(names, p.desc[pid]+"("+strconv.Itoa(pid)+")")
	}
	return names
}

// kill SIGKILLs localsite's group and every descendant seen (and their groups).
func (p *process) kill() {
	p.collectDescendants()
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	for _, pid := range p.descendants() {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // emulators and bootstraps lead their groups
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("localsite pid %d not reaped 10s after SIGKILL", p.pid())
	}
	if p.t.Failed() {
		p.t.Logf("localsite %v\nstdout:\n%s\nstderr:\n%s", p.cmd.Args[1:], p.stdout, p.stderr)
	}
}

// waitFor polls cond until it holds; localsite exiting first, or the deadline, fails.
func waitFor(t *testing.T, p *process, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if p.exited() {
			t.Fatalf("localsite exited (%v) while waiting for %s\nstdout:\n%s\nstderr:\n%s", p.waitErr, what, p.stdout, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s\nstdout:\n%s\nstderr:\n%s", what, within, p.stdout, p.stderr)
		}
		time.Sleep(pollEvery)
	}
}

// eventually polls cond (which says what it last saw) for up to 45 s.
func eventually(t *testing.T, p *process, what string, cond func() (bool, string)) {
	t.Helper()
	const within = 45 * time.Second
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if p.exited() {
			t.Fatalf("localsite exited (%v) while waiting for %s; last: %s\nstderr:\n%s", p.waitErr, what, last, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// openStore opens a store configured from env, as sourcing that env file would.
func openStore(t *testing.T, instance string, env map[string]string) *client.Store {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Setenv("SESSIONHA_INSTANCE_ID", instance)
	t.Setenv("SESSIONHA_JOURNAL_DIR", t.TempDir()) // nothing written outside the test's own directories
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		t.Fatalf("ConfigFromEnv with site.env: %v", err)
	}
	if cfg.Table != env["SESSIONHA_TABLE"] || cfg.OpsTopicARN != env["SESSIONHA_OPS_TOPIC_ARN"] || cfg.InstanceID != instance {
		t.Fatalf("ConfigFromEnv: table %q, ops topic %q, instance %q; want %q, %q, %q",
			cfg.Table, cfg.OpsTopicARN, cfg.InstanceID, env["SESSIONHA_TABLE"], env["SESSIONHA_OPS_TOPIC_ARN"], instance)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open (%s): %v", instance, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// parseEnvFile reads KEY=value lines; blank lines and '#' comments are skipped.
func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			t.Errorf("site.env line %d: not KEY=value: %q", i+1, line)
			continue
		}
		if _, dup := env[k]; dup {
			t.Errorf("site.env line %d: %s set twice", i+1, k)
		}
		env[k] = v
	}
	return env
}

type procInfo struct {
	ppid int
	comm string
}

// processTable reads every process's parent and name from /proc.
func processTable() map[int]procInfo {
	entries, _ := os.ReadDir("/proc")
	procs := map[int]procInfo{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		procs[pid] = procInfo{ppid: ppid, comm: s[open+1 : end]}
	}
	return procs
}

// alive reports whether pid still exists (a zombie not yet reaped counts).
func alive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func describe(pids []int) string {
	var out []string
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	return strings.Join(out, "; ")
}

// freePort finds a free port below Linux's ephemeral range (32768 and up), where the
// kernel never hands out ports to the listeners and connections of other processes: a
// port from that range, freed again for localsite to take, may be taken meanwhile.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port found in 20000-31999")
	return 0
}

// syncBuffer is a bytes.Buffer safe for the command's output goroutines and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOneSite: -site runs one site of cdk.json alone, as its own primary; a name cdk.json
// does not list is a usage error naming the ones it does.
func TestOneSite(t *testing.T) {
	runDir := t.TempDir()
	p := startLocalsite(t, "-site", "us", "-edge-port", strconv.Itoa(freePort(t)), "-run-dir", runDir, "-demo-addr", "off")
	envPath := filepath.Join(runDir, "site.env")
	waitFor(t, p, upDeadline, "site.env to be written", func() bool {
		_, err := os.Stat(envPath)
		return err == nil
	})
	env := parseEnvFile(t, envPath)
	if env["SESSIONHA_SITE"] != "us" || env["AWS_REGION"] != "us-east-1" {
		t.Errorf("site.env: site %q in %q, want us in us-east-1", env["SESSIONHA_SITE"], env["AWS_REGION"])
	}
	if _, err := os.Stat(filepath.Join(runDir, "eu.env")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("eu.env written although only us runs (stat: %v)", err)
	}
	waitFor(t, p, 10*time.Second, "the summary", func() bool { return strings.Contains(p.stdout.String(), "Stop with Ctrl-C.") })
	if out := p.stdout.String(); !strings.Contains(out, "sessionha: 1 site(s) up") || strings.Contains(out, "site eu ") {
		t.Errorf("summary of one site:\n%s", out)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(stopDeadline):
		t.Fatalf("localsite -site us did not exit within %s of SIGTERM", stopDeadline)
	}
	p.checkNoneLeft(t)

	bad := startLocalsite(t, "-site", "mars", "-edge-port", strconv.Itoa(freePort(t)), "-run-dir", t.TempDir(), "-demo-addr", "off")
	select {
	case <-bad.done:
	case <-time.After(30 * time.Second):
		t.Fatal("localsite -site mars still running after 30s")
	}
	if code := bad.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(bad.stderr.String(), `"mars"`) ||
		!strings.Contains(bad.stderr.String(), "eu, us") {
		t.Errorf("-site mars: exit %d, stderr %q: want 2 naming mars and the sites eu, us", code, bad.stderr)
	}
}
