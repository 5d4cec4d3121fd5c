package lambdarunner

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// envState is where an execution environment is in its life. Transitions happen under
// Func.mu:
//
//	starting --first GET /next--> idle --dispatch--> busy --response/error--> finishing
//	finishing --GET /next--> idle;  any --process exit--> dead
//
// An environment is only idle again once the runtime asks for the next invocation, as in
// Lambda: a runtime that reports a result and then exits (aws-lambda-go does after a
// panic) must not be handed another invocation.
type envState int

const (
	stateStarting envState = iota
	stateIdle
	stateBusy
	stateFinishing
	stateDead
)

// killReason says why the runner killed an environment, so that its exit is not
// mistaken for a crash.
type killReason int

const (
	killNone        killReason = iota // not killed by the runner: a crash (or KillEnvironment)
	killTimeout                       // the invocation timed out
	killInitTimeout                   // init took too long
	killInitError                     // the runtime reported an init error
	killStop                          // Runner.Stop
)

// env is one execution environment: a bootstrap process and its Runtime API server.
type env struct {
	f       *Func
	pid     int
	cmd     *exec.Cmd
	srv     *http.Server
	out     *lineWriter
	tmp     string // the environment's private /tmp, HOME and TMPDIR
	started time.Time
	exited  chan struct{}    // closed once the process is reaped and the Func updated
	pending chan *invocation // capacity 1: the invocation assigned, until GET /next takes it

	// Guarded by f.mu.
	state      envState
	inv        *invocation // assigned and not yet answered
	delivered  bool        // inv was handed to the runtime by GET /next
	timer      *time.Timer // inv's timeout
	initTimer  *time.Timer
	killReason killReason
	reported   *FunctionError // from POST /runtime/init/error
	initErr    error          // why init failed, once dead
}

// Runtime API headers, as aws-lambda-go reads and writes them.
const (
	hdrRequestID   = "Lambda-Runtime-Aws-Request-Id"
	hdrDeadline    = "Lambda-Runtime-Deadline-Ms"
	hdrFunctionARN = "Lambda-Runtime-Invoked-Function-Arn"
	hdrTraceID     = "Lambda-Runtime-Trace-Id"
	hdrErrorType   = "Lambda-Runtime-Function-Error-Type"
	// aws-lambda-go sends these as HTTP trailers when a streamed response fails midway.
	trlErrorType = "Lambda-Runtime-Function-Error-Type"
	trlErrorBody = "Lambda-Runtime-Function-Error-Body"
	hdrExtName   = "Lambda-Extension-Name"
	hdrExtID     = "Lambda-Extension-Identifier"
)

// spawnLocked starts a new environment: its Runtime API server, then its bootstrap.
func (f *Func) spawnLocked() (*env, error) {
	// 127.0.0.1 only: the Runtime API must not be reachable from other hosts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("%s: runtime API listener: %w", f.fn.Name, err)
	}
	tmp, err := os.MkdirTemp("", "lambdarunner-"+f.fn.Name+"-")
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: environment directory: %w", f.fn.Name, err)
	}
	e := &env{
		f:       f,
		out:     &lineWriter{out: f.fn.Output, outMu: &f.r.outMu},
		tmp:     tmp,
		exited:  make(chan struct{}),
		pending: make(chan *invocation, 1),
		state:   stateStarting,
	}
	e.srv = &http.Server{
		Handler:           e.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // a dying runtime's broken connections are expected
	}
	go e.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed when the environment ends

	cmd := exec.Command(f.fn.Bootstrap)
	cmd.Dir = filepath.Dir(f.fn.Bootstrap)
	cmd.Env = f.environ(ln.Addr().String(), tmp)
	cmd.Stdout, cmd.Stderr = e.out, e.out // one writer: exec gives both fds one pipe, so lines keep their order
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own process group, so killing the group reaches its children
		Pdeathsig: syscall.SIGKILL, // and it dies with us even if we are SIGKILLed
	}
	// A child of the bootstrap holding the output pipe must not keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second
	e.cmd = cmd
	e.started = time.Now()
	if err := cmd.Start(); err != nil {
		e.srv.Close()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("%s: start bootstrap %s: %w", f.fn.Name, f.fn.Bootstrap, err)
	}
	e.pid = cmd.Process.Pid
	f.envs[e] = struct{}{}
	e.initTimer = time.AfterFunc(max(minInitTimeout, f.fn.Timeout), func() { f.initTimedOut(e) })
	f.log.Debug("environment starting", "pid", e.pid, "runtime_api", ln.Addr().String())
	go e.wait()
	return e, nil
}

// environ is the bootstrap's whole environment: nothing is inherited but PATH, as in
// Lambda, so that a function cannot depend on the developer's shell (or read their
// ~/.aws: HOME is the environment's private directory).
func (f *Func) environ(api, tmp string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	vars := map[string]string{
		"PATH":   path,
		"HOME":   tmp,
		"TMPDIR": tmp,
		"TZ":     "UTC",
		"LANG":   "en_US.UTF-8",
	}
	for k, v := range f.fn.Env {
		vars[k] = v
	}
	dir := filepath.Dir(f.fn.Bootstrap)
	for k, v := range map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          api,
		"AWS_LAMBDA_FUNCTION_NAME":        f.fn.Name,
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(f.fn.MemoryMB),
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + f.fn.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME":      time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randomHex(16),
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"AWS_REGION":                      f.r.cfg.Region,
		"AWS_DEFAULT_REGION":              f.r.cfg.Region,
		"_HANDLER":                        "bootstrap",
		"LAMBDA_TASK_ROOT":                dir,
		"LAMBDA_RUNTIME_DIR":              dir,
	} {
		vars[k] = v
	}
	list := make([]string, 0, len(vars))
	for k, v := range vars {
		list = append(list, k+"="+v)
	}
	slices.Sort(list)
	return list
}

// wait reaps the process and retires the environment.
func (e *env) wait() {
	err := e.cmd.Wait()
	e.out.flush()
	// Lambda discards the whole sandbox: take down anything the bootstrap left in its group.
	syscall.Kill(-e.pid, syscall.SIGKILL) //nolint:errcheck // usually nothing is left (ESRCH)
	e.srv.Close()
	os.RemoveAll(e.tmp)
	e.f.retire(e, err)
	close(e.exited)
}

// kill SIGKILLs the environment's process group.
func (e *env) kill() {
	select {
	case <-e.exited:
	default:
		syscall.Kill(-e.pid, syscall.SIGKILL) //nolint:errcheck // it may have just exited
	}
}

// terminate stops the environment as Lambda's shutdown does: SIGTERM, a short grace
// period, then SIGKILL. It returns once the process is reaped.
func (e *env) terminate() {
	select {
	case <-e.exited:
		return
	default:
	}
	syscall.Kill(-e.pid, syscall.SIGTERM) //nolint:errcheck // it may have just exited
	grace := time.NewTimer(500 * time.Millisecond)
	defer grace.Stop()
	select {
	case <-e.exited:
		return
	case <-grace.C:
	}
	e.kill()
	<-e.exited
}

// initTimedOut kills an environment still starting after the init limit.
func (f *Func) initTimedOut(e *env) {
	f.mu.Lock()
	if e.state != stateStarting {
		f.mu.Unlock()
		return
	}
	e.killReason = killInitTimeout
	f.mu.Unlock()
	e.kill()
}

// retire removes an exited environment and fails what it was doing.
func (f *Func) retire(e *env, waitErr error) {
	status := "exited"
	if waitErr != nil {
		status = waitErr.Error() // "exit status 3", "signal: killed"
	}
	tail := e.out.tail(tailLines)

	f.mu.Lock()
	prev := e.state
	e.state = stateDead
	delete(f.envs, e)
	f.idle = slices.DeleteFunc(f.idle, func(x *env) bool { return x == e })
	inv := e.inv
	e.inv = nil
	if e.timer != nil {
		e.timer.Stop()
	}
	e.initTimer.Stop()
	reason := e.killReason
	var invErr error
	switch {
	case reason == killStop:
		f.log.Debug("environment stopped", "pid", e.pid)
	case prev == stateStarting:
		if reason == killInitTimeout {
			f.timeouts.Add(1)
			e.initErr = newEnvError(ErrTimeout, tail, "%s: init timed out after %s (environment killed)", f.fn.Name, max(minInitTimeout, f.fn.Timeout))
		} else {
			f.crashes.Add(1)
			if e.reported != nil {
				e.initErr = newEnvError(ErrCrashed, tail, "%s: bootstrap crashed during init: it reported %s: %s (%s)", f.fn.Name, e.reported.Type, e.reported.Message, status)
			} else {
				e.initErr = newEnvError(ErrCrashed, tail, "%s: bootstrap crashed during init (%s)", f.fn.Name, status)
			}
		}
		f.initFailures++
		wait := initBackoff(f.initFailures)
		f.retryAt = time.Now().Add(wait)
		f.lastInitErr = e.initErr
		f.log.Warn("environment failed during init", "pid", e.pid, "status", status,
			"consecutive_failures", f.initFailures, "retry_in", wait)
	case reason == killTimeout:
		f.log.Debug("timed out environment killed", "pid", e.pid)
	case prev == stateBusy:
		f.crashes.Add(1)
		invErr = newEnvError(ErrCrashed, tail, "%s: bootstrap crashed during invocation %s (%s)", f.fn.Name, inv.id, status)
		f.log.Warn("environment crashed during an invocation", "pid", e.pid, "request_id", inv.id, "status", status)
	case prev == stateFinishing:
		f.crashes.Add(1)
		f.log.Warn("environment exited after its invocation", "pid", e.pid, "status", status)
	default:
		f.crashes.Add(1)
		f.log.Warn("idle environment crashed", "pid", e.pid, "status", status)
	}
	f.notifyLocked()
	f.mu.Unlock()

	if inv != nil {
		if invErr == nil {
			invErr = newEnvError(ErrCrashed, tail, "%s: environment ended during invocation %s (%s)", f.fn.Name, inv.id, status)
		}
		inv.finish(result{err: invErr})
	}
}

func (e *env) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", e.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", e.response)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", e.invokeError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", e.initError)
	// The Extensions API, only as far as aws-lambda-go's WithEnableSIGTERM uses it: it
	// registers an extension for no events and then blocks in GET event/next for ever.
	mux.HandleFunc("POST /2020-01-01/extension/register", e.extRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", e.extNext)
	return mux
}

// next is GET /runtime/invocation/next: the runtime is ready and waits for work.
func (e *env) next(w http.ResponseWriter, r *http.Request) {
	f := e.f
	var unanswered *invocation
	f.mu.Lock()
	switch e.state {
	case stateStarting:
		d := time.Since(e.started)
		e.initTimer.Stop()
		f.coldStarts.Add(1)
		f.initLast.Store(int64(d))
		f.initTotal.Add(int64(d))
		if int64(d) > f.initMax.Load() {
			f.initMax.Store(int64(d)) // only written under f.mu
		}
		f.initFailures, f.retryAt, f.lastInitErr = 0, time.Time{}, nil
		f.log.Info("environment started", "pid", e.pid, "init", d.Round(time.Microsecond))
		e.becomeIdleLocked()
	case stateFinishing:
		e.becomeIdleLocked()
	case stateBusy:
		if e.delivered {
			// The runtime asks for more without answering: the invocation is lost.
			unanswered = e.inv
			e.inv = nil
			e.timer.Stop()
			e.becomeIdleLocked()
		}
		// Otherwise the assignment is waiting in pending.
	case stateDead:
		f.mu.Unlock()
		runtimeError(w, http.StatusGone, "EnvironmentEnded", "the environment has ended")
		return
	}
	f.mu.Unlock()
	if unanswered != nil {
		f.errors.Add(1)
		unanswered.finish(result{err: &FunctionError{Type: "Runtime.NoResponse",
			Message: "the runtime asked for the next invocation without reporting a result for this one"}})
	}

	select {
	case inv := <-e.pending:
		f.mu.Lock()
		if e.inv == inv {
			e.delivered = true
		}
		f.mu.Unlock()
		h := w.Header()
		h.Set(hdrRequestID, inv.id)
		h.Set(hdrDeadline, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set(hdrFunctionARN, f.arn)
		h.Set(hdrTraceID, inv.traceID)
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(inv.payload)))
		w.WriteHeader(http.StatusOK)
		w.Write(inv.payload) //nolint:errcheck // a runtime that cannot read it is dying: wait reports that
	case <-r.Context().Done():
	case <-e.exited:
	}
}

// becomeIdleLocked makes e available to dispatch.
func (e *env) becomeIdleLocked() {
	e.state = stateIdle
	e.f.idle = append(e.f.idle, e)
	e.f.notifyLocked()
}

// response is POST /runtime/invocation/{id}/response.
func (e *env) response(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		runtimeError(w, http.StatusBadRequest, "InvalidRequest", "reading the response: "+err.Error())
		return
	}
	var res result
	status := http.StatusAccepted
	switch {
	case len(body) > maxPayload:
		// Lambda refuses it (413 to the runtime) and returns a function error to the caller.
		status = http.StatusRequestEntityTooLarge
		res.err = &FunctionError{Type: "Function.ResponseSizeTooLarge",
			Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", maxPayload)}
	case r.Trailer.Get(trlErrorType) != "":
		// The handler's io.Reader failed midway: aws-lambda-go reports it in trailers.
		res.err = trailerError(r.Trailer)
	default:
		res.out = body
	}
	if !e.answer(w, r.PathValue("id"), res) {
		return
	}
	if status == http.StatusRequestEntityTooLarge {
		runtimeError(w, status, "RequestEntityTooLarge", res.err.(*FunctionError).Message)
		return
	}
	accepted(w)
}

// invokeError is POST /runtime/invocation/{id}/error: a function error.
func (e *env) invokeError(w http.ResponseWriter, r *http.Request) {
	fe := readFunctionError(r)
	if e.answer(w, r.PathValue("id"), result{err: fe}) {
		accepted(w)
	}
}

// answer completes the delivered invocation id with res; it writes the Runtime API's
// error and returns false if id is not the invocation in progress.
func (e *env) answer(w http.ResponseWriter, id string, res result) bool {
	f := e.f
	f.mu.Lock()
	inv := e.inv
	if e.state != stateBusy || !e.delivered || inv == nil || inv.id != id {
		f.mu.Unlock()
		runtimeError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return false
	}
	e.inv = nil
	e.timer.Stop()
	e.state = stateFinishing
	f.mu.Unlock()
	var fe *FunctionError
	if errors.As(res.err, &fe) {
		f.errors.Add(1)
	}
	inv.finish(res)
	return true
}

// initError is POST /runtime/init/error: the runtime could not initialise. Lambda
// discards the environment; so do we.
func (e *env) initError(w http.ResponseWriter, r *http.Request) {
	fe := readFunctionError(r)
	f := e.f
	f.mu.Lock()
	if e.state != stateStarting {
		f.mu.Unlock()
		runtimeError(w, http.StatusForbidden, "InvalidStateTransition", "init error reported after init")
		return
	}
	e.reported = fe
	e.killReason = killInitError
	f.mu.Unlock()
	accepted(w)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	e.kill()
}

// extRegister is POST /extension/register, allowed during init only.
func (e *env) extRegister(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body) //nolint:errcheck
	f := e.f
	f.mu.Lock()
	starting := e.state == stateStarting
	f.mu.Unlock()
	if !starting || r.Header.Get(hdrExtName) == "" {
		runtimeError(w, http.StatusForbidden, "Extension.RegistrationFailed", "extensions register during init, with a Lambda-Extension-Name")
		return
	}
	w.Header().Set(hdrExtID, newRequestID())
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{ //nolint:errcheck
		"functionName": f.fn.Name, "functionVersion": "$LATEST", "handler": "bootstrap",
	})
}

// extNext is GET /extension/event/next: no events are ever sent, so it blocks until the
// environment ends.
func (e *env) extNext(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-e.exited:
	}
}

func readFunctionError(r *http.Request) *FunctionError {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxPayload)) //nolint:errcheck // a partial body still says something
	var m struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		m.Message = string(body)
	}
	if m.Type == "" {
		m.Type = r.Header.Get(hdrErrorType)
	}
	if m.Type == "" {
		m.Type = "Unhandled"
	}
	return &FunctionError{Type: m.Type, Message: m.Message}
}

func trailerError(t http.Header) *FunctionError {
	fe := &FunctionError{Type: t.Get(trlErrorType)}
	if b, err := base64.StdEncoding.DecodeString(t.Get(trlErrorBody)); err == nil {
		var m struct {
			Message string `json:"errorMessage"`
		}
		if json.Unmarshal(b, &m) == nil {
			fe.Message = m.Message
		}
	}
	return fe
}

func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"OK"}`+"\n") //nolint:errcheck
}

func runtimeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"errorType": typ, "errorMessage": msg}) //nolint:errcheck
}

func randomHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// newRequestID returns a random UUID, the form of Lambda's request ids.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) //nolint:errcheck
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newTraceID returns an X-Ray trace header like the one Lambda passes (not sampled).
func newTraceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(24), randomHex(16))
}
