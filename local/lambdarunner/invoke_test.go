package lambdarunner

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type echoResponse struct {
	Echo         json.RawMessage   `json:"echo"`
	RequestID    string            `json:"requestId"`
	FunctionARN  string            `json:"functionArn"`
	FunctionName string            `json:"functionName"`
	MemoryMB     int               `json:"memoryMB"`
	DeadlineIn   int64             `json:"deadlineInMs"`
	PID          int               `json:"pid"`
	Env          map[string]string `json:"env"`
	Environ      []string          `json:"environ"`
}

func invoke(t *testing.T, fn *Func, payload string) echoResponse {
	t.Helper()
	out, err := fn.Invoke(context.Background(), []byte(payload))
	if err != nil {
		t.Fatalf("Invoke(%s): %v", payload, err)
	}
	var resp echoResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("Invoke(%s) returned %q: %v", payload, out, err)
	}
	return resp
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestInvokeRoundTrip(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{Name: "sessionha-local-echo", MemoryMB: 256, Timeout: 5 * time.Second})
	if got := fn.Environments(); len(got) != 0 {
		t.Fatalf("Start spawned environments %v; want none before the first invocation", got)
	}

	resp := invoke(t, fn, `{"op":"echo","value":{"a":[1,"two"]}}`)
	if string(resp.Echo) != `{"a":[1,"two"]}` {
		t.Errorf("echo = %s", resp.Echo)
	}
	if !uuidRE.MatchString(resp.RequestID) {
		t.Errorf("request id %q is not a UUID", resp.RequestID)
	}
	if want := "arn:aws:lambda:us-east-1:000000000000:function:sessionha-local-echo"; resp.FunctionARN != want || fn.ARN() != want {
		t.Errorf("invoked function ARN = %q (Func.ARN %q), want %q", resp.FunctionARN, fn.ARN(), want)
	}
	if resp.FunctionName != "sessionha-local-echo" || resp.MemoryMB != 256 {
		t.Errorf("lambdacontext: function %q memory %d", resp.FunctionName, resp.MemoryMB)
	}
	if resp.DeadlineIn <= 4000 || resp.DeadlineIn > 5000 {
		t.Errorf("deadline in %d ms, want about the 5 s timeout", resp.DeadlineIn)
	}

	// Warm: the same environment serves the next invocation.
	resp2 := invoke(t, fn, `{"op":"echo","value":2}`)
	if resp2.PID != resp.PID || resp2.RequestID == resp.RequestID {
		t.Errorf("second invocation: pid %d request %s, first: pid %d request %s", resp2.PID, resp2.RequestID, resp.PID, resp.RequestID)
	}
	if pids := fn.Environments(); !slices.Equal(pids, []int{resp.PID}) {
		t.Errorf("Environments() = %v, want [%d]", pids, resp.PID)
	}
	// An empty payload is passed as {} (as by Lambda), and a non-JSON one is refused.
	if _, err := fn.Invoke(context.Background(), nil); err == nil || !strings.Contains(err.Error(), `unknown op ""`) {
		t.Errorf("Invoke(nil) = %v; want the function's complaint about an empty op", err)
	}
	if _, err := fn.Invoke(context.Background(), []byte("not json")); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Invoke(not json) = %v; want a refusal", err)
	}
	st := fn.Stats()
	if st.Invocations != 3 || st.ColdStarts != 1 || st.Errors != 1 || st.Crashes != 0 || st.InitLast <= 0 || st.InitTotal != st.InitLast || st.InitMax != st.InitLast {
		t.Errorf("Stats = %+v; want 3 invocations, 1 cold start with its init time, 1 error", st)
	}
	t.Logf("cold start (process start to first GET /next): %s", st.InitLast)
}

func TestEnvironmentVariables(t *testing.T) {
	t.Setenv("LAMBDARUNNER_TEST_LEAK", "parent only")
	r := newRunner(t)
	fn := start(t, r, Function{Env: map[string]string{"FOO": "bar", "AWS_ACCESS_KEY_ID": "test", "AWS_REGION": "us-east-1"}})
	resp := invoke(t, fn, `{"op":"env","env":["FOO","AWS_ACCESS_KEY_ID","AWS_LAMBDA_RUNTIME_API","AWS_LAMBDA_FUNCTION_NAME",
		"AWS_LAMBDA_FUNCTION_VERSION","AWS_LAMBDA_FUNCTION_MEMORY_SIZE","AWS_REGION","AWS_DEFAULT_REGION",
		"AWS_LAMBDA_LOG_GROUP_NAME","_HANDLER","LAMBDA_TASK_ROOT","TZ","PATH","HOME","LAMBDARUNNER_TEST_LEAK"]}`)
	want := map[string]string{
		"FOO": "bar", "AWS_ACCESS_KEY_ID": "test",
		"AWS_LAMBDA_FUNCTION_NAME": fn.Name(), "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
		"AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + fn.Name(), "_HANDLER": "bootstrap",
		"LAMBDA_TASK_ROOT": filepath.Dir(bootstrap), "TZ": "UTC",
	}
	for k, v := range want {
		if resp.Env[k] != v {
			t.Errorf("%s = %q, want %q", k, resp.Env[k], v)
		}
	}
	if !strings.HasPrefix(resp.Env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:") {
		t.Errorf("AWS_LAMBDA_RUNTIME_API = %q, want 127.0.0.1:PORT", resp.Env["AWS_LAMBDA_RUNTIME_API"])
	}
	if resp.Env["PATH"] == "" || resp.Env["HOME"] == "" {
		t.Errorf("PATH %q, HOME %q: want both set", resp.Env["PATH"], resp.Env["HOME"])
	}
	if _, leaked := resp.Env["LAMBDARUNNER_TEST_LEAK"]; leaked {
		t.Errorf("the parent's environment leaked into the function: %v", resp.Environ)
	}
}

func TestStartValidation(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	missing := filepath.Join(t.TempDir(), "nope", "bootstrap")
	for _, c := range []struct {
		f    Function
		want string
	}{
		{Function{Name: "x", Bootstrap: missing}, missing + " does not exist"},
		{Function{Name: "x"}, "Bootstrap (path to the bootstrap executable) is required"},
		{Function{Name: "bad name", Bootstrap: bootstrap}, "invalid function name"},
		{Function{Name: "x", Bootstrap: bootstrap, Env: map[string]string{"AWS_LAMBDA_RUNTIME_API": "x"}}, "reserved"},
		{Function{Name: "x", Bootstrap: bootstrap, Env: map[string]string{"AWS_REGION": "eu-west-1"}}, "differs from the runner's region"},
		{Function{Name: "x", Bootstrap: bootstrap, Timeout: 20 * time.Minute}, "out of Lambda's range"},
	} {
		if _, err := r.Start(context.Background(), c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v) = %v; want an error containing %q", c.f, err, c.want)
		}
	}
	start(t, r, Function{Name: "dup"})
	if _, err := r.Start(context.Background(), Function{Name: "dup", Bootstrap: bootstrap}); err == nil {
		t.Error("starting a function twice: no error")
	}
}

func TestFunctionError(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{})
	first := invoke(t, fn, `{"op":"echo"}`)
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"error"}`))
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Type != "echoError" || fe.Message != "asked to fail" {
		t.Fatalf("Invoke = %v; want *FunctionError{echoError, asked to fail}", err)
	}
	// A function error leaves the environment warm.
	if again := invoke(t, fn, `{"op":"echo"}`); again.PID != first.PID {
		t.Errorf("environment replaced after a function error: pid %d, was %d", again.PID, first.PID)
	}
	if st := fn.Stats(); st.Errors != 1 || st.Crashes != 0 || st.ColdStarts != 1 || st.Invocations != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPanic(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{})
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"panic"}`))
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Message != "asked to panic" {
		t.Fatalf("Invoke = %v; want the panic as a *FunctionError", err)
	}
	// aws-lambda-go exits after reporting a panic: the next invocation needs (and gets)
	// a fresh environment, never the dying one.
	invoke(t, fn, `{"op":"echo"}`)
	if st := fn.Stats(); st.ColdStarts != 2 || st.Crashes != 1 || st.Errors != 1 {
		t.Errorf("Stats = %+v; want 2 cold starts, the exit after the panic counted as a crash, 1 error", st)
	}
}

func TestCrash(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{})
	before := invoke(t, fn, `{"op":"echo"}`)
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"crash"}`))
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("Invoke = %v; want ErrCrashed", err)
	}
	for _, want := range []string{"bootstrap crashed during invocation", "exit status 3", "echofn: crashing as asked"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("crash error %q does not contain %q", err, want)
		}
	}
	after := invoke(t, fn, `{"op":"echo"}`)
	if after.PID == before.PID {
		t.Error("the crashed environment served the next invocation")
	}
	if st := fn.Stats(); st.Crashes != 1 || st.ColdStarts != 2 {
		t.Errorf("Stats = %+v; want 1 crash, 2 cold starts", st)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{Timeout: time.Second})
	pid := invoke(t, fn, `{"op":"echo"}`).PID
	began := time.Now()
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"sleep","sleep":"30s"}`))
	took := time.Since(began)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "timed out after 1s") || !strings.Contains(err.Error(), "echofn: sleeping") {
		t.Fatalf("Invoke = %v; want a timeout after 1s quoting the function's output", err)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("the timeout took %s, want about 1s", took)
	}
	eventually(t, 10*time.Second, "the timed out environment's process to be gone", func() bool {
		return syscall.Kill(pid, 0) != nil && len(fn.Environments()) == 0
	})
	if again := invoke(t, fn, `{"op":"echo"}`); again.PID == pid {
		t.Error("the killed environment served the next invocation")
	}
	if st := fn.Stats(); st.Timeouts != 1 || st.Crashes != 0 || st.ColdStarts != 2 {
		t.Errorf("Stats = %+v; want 1 timeout, no crash, 2 cold starts", st)
	}
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{Concurrency: 3})
	const n = 12
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pids    = map[int]bool{}
		errs    []error
		maxEnvs int
	)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			mu.Lock()
			maxEnvs = max(maxEnvs, len(fn.Environments()))
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := fn.Invoke(context.Background(), []byte(`{"op":"sleep","sleep":"300ms"}`))
			var resp echoResponse
			if err == nil {
				err = json.Unmarshal(out, &resp)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			pids[resp.PID] = true
		}()
	}
	wg.Wait()
	close(done)
	<-sampled
	if len(errs) > 0 {
		t.Fatalf("%d of %d invocations failed: %v", len(errs), n, errs)
	}
	st := fn.Stats()
	if maxEnvs > 3 || len(pids) > 3 || st.ColdStarts != 3 || st.Invocations != n {
		t.Errorf("at most %d environments seen, %d distinct pids served, stats %+v; want 3 environments, 3 cold starts, %d invocations", maxEnvs, len(pids), st, n)
	}
	t.Logf("cold starts: %d, mean init %s, max %s", st.ColdStarts, st.InitTotal/time.Duration(st.ColdStarts), st.InitMax)
}

func TestInitCrashBacksOff(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{Env: map[string]string{"ECHOFN_CRASH_AT_INIT": "1"}})
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"echo"}`))
	if !errors.Is(err, ErrCrashed) {
		t.Fatalf("Invoke = %v; want ErrCrashed", err)
	}
	for _, want := range []string{"bootstrap crashed during init", "exit status 2", "echofn: crashing at init as asked"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("init crash error %q does not contain %q", err, want)
		}
	}
	// Hammering it must not start a bootstrap per call: starts are held back, and the
	// callers get the last init failure at once.
	const calls = 50
	var backedOff int
	for range calls {
		_, err := fn.Invoke(context.Background(), []byte(`{"op":"echo"}`))
		if !errors.Is(err, ErrCrashed) {
			t.Fatalf("Invoke = %v; want ErrCrashed", err)
		}
		if strings.Contains(err.Error(), "consecutive init failures") && strings.Contains(err.Error(), "crashing at init as asked") {
			backedOff++
		}
	}
	st := fn.Stats()
	if backedOff == 0 || st.Crashes >= calls/2 || st.ColdStarts != 0 || st.Invocations != 0 {
		t.Errorf("%d of %d calls backed off; stats %+v: want back-off, few init attempts, no cold start", backedOff, calls, st)
	}
}

func TestKillEnvironment(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{})
	if err := fn.KillEnvironment(1); err == nil {
		t.Error("KillEnvironment(1): no error for a pid that is not an environment")
	}
	pid := invoke(t, fn, `{"op":"echo"}`).PID

	// Killed during an invocation: the invocation fails as a crash.
	res := make(chan error, 1)
	go func() {
		_, err := fn.Invoke(context.Background(), []byte(`{"op":"sleep","sleep":"20s"}`))
		res <- err
	}()
	eventually(t, 10*time.Second, "the invocation to start", func() bool { return fn.Stats().Invocations == 2 })
	if err := fn.KillEnvironment(pid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), "signal: killed") {
			t.Errorf("Invoke = %v; want a crash by SIGKILL", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the invocation did not end when its environment was killed")
	}
	eventually(t, 10*time.Second, "the killed environment to be gone", func() bool {
		return len(fn.Environments()) == 0 && syscall.Kill(pid, 0) != nil
	})

	// Killed while idle: noticed, and replaced on demand.
	pid = invoke(t, fn, `{"op":"echo"}`).PID
	if err := fn.KillEnvironment(pid); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the idle environment's crash to be noticed", func() bool { return len(fn.Environments()) == 0 })
	if again := invoke(t, fn, `{"op":"echo"}`); again.PID == pid {
		t.Error("the killed environment served an invocation")
	}
	if st := fn.Stats(); st.Crashes != 2 || st.ColdStarts != 3 {
		t.Errorf("Stats = %+v; want 2 crashes, 3 cold starts", st)
	}
}

func TestResponseTooLarge(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{})
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"big","size":7000000}`))
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Type != "Function.ResponseSizeTooLarge" {
		t.Fatalf("Invoke = %v; want Function.ResponseSizeTooLarge", err)
	}
	invoke(t, fn, `{"op":"echo"}`) // the runtime exits on the 413; a fresh environment serves this
}

func TestInvokeContextCancelled(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := fn.Invoke(ctx, []byte(`{"op":"sleep","sleep":"1s"}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Invoke = %v; want context.DeadlineExceeded", err)
	}
	// The invocation runs on in its environment (as in Lambda); the next one waits for it.
	invoke(t, fn, `{"op":"echo"}`)
	if st := fn.Stats(); st.Invocations != 2 || st.ColdStarts != 1 || st.Crashes != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	t.Parallel()
	r := New(Config{Logger: testLogger()})
	t.Cleanup(r.Stop) // should the test fail before its own Stop
	fn := start(t, r, Function{Concurrency: 3})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn.Invoke(context.Background(), []byte(`{"op":"sleep","sleep":"200ms"}`)) //nolint:errcheck
		}()
	}
	wg.Wait()
	pids := fn.Environments()
	if len(pids) == 0 {
		t.Fatal("no environment running")
	}
	// One invocation in flight when Stop begins: Stop lets it finish.
	inflight := make(chan error, 1)
	go func() {
		_, err := fn.Invoke(context.Background(), []byte(`{"op":"sleep","sleep":"500ms"}`))
		inflight <- err
	}()
	eventually(t, 10*time.Second, "the last invocation to start", func() bool { return fn.Stats().Invocations == 4 })
	r.Stop()
	if err := <-inflight; err != nil {
		t.Errorf("the invocation in flight during Stop failed: %v", err)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if got := fn.Environments(); len(got) != 0 {
		t.Errorf("Environments() = %v after Stop", got)
	}
	r.Stop() // safe twice
	if _, err := fn.Invoke(context.Background(), []byte(`{}`)); !errors.Is(err, ErrStopped) {
		t.Errorf("Invoke after Stop = %v; want ErrStopped", err)
	}
	if _, err := r.Start(context.Background(), Function{Name: "late", Bootstrap: bootstrap}); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop = %v; want ErrStopped", err)
	}
}

func TestOutputWholeLines(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	var out lines
	fn := start(t, r, Function{Output: &out})
	_, err := fn.Invoke(context.Background(), []byte(`{"op":"error"}`))
	if err == nil {
		t.Fatal("want a function error")
	}
	var got []string
	eventually(t, 5*time.Second, "aws-lambda-go's error log line", func() bool {
		got = out.snapshot()
		return len(got) > 0
	})
	for _, l := range got {
		if strings.HasPrefix(l, "NOT ONE WHOLE LINE") {
			t.Errorf("Output got a write that is not one whole line: %q", l)
		}
	}
	if !strings.Contains(strings.Join(got, "\n"), `"errorType":"echoError"`) {
		t.Errorf("Output = %q; want the runtime's error log line", got)
	}
}
