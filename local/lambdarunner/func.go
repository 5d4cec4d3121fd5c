package lambdarunner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Function describes one Lambda function to run locally.
type Function struct {
	// Name is the function name, e.g. "sessionha-local-sessionop". Required.
	Name string
	// Bootstrap is the path to the bootstrap executable. Required. Its directory is the
	// working directory and LAMBDA_TASK_ROOT, as /var/task is in Lambda.
	Bootstrap string
	// Env is the function's environment, added to a minimal base (PATH, HOME and TMPDIR
	// set to a private directory per environment, TZ=UTC, LANG) and to the variables
	// Lambda sets. The parent's environment is not inherited, as in Lambda: pass
	// AWS credentials and endpoints here.
	Env map[string]string
	// Timeout limits each invocation; the environment is killed when it is exceeded.
	// Default 30 s; Lambda's range 1 s to 15 min.
	Timeout time.Duration
	// MemoryMB is reported in AWS_LAMBDA_FUNCTION_MEMORY_SIZE (not enforced). Default 128.
	MemoryMB int
	// Concurrency is the most execution environments (bootstrap processes) the function
	// may have, like reserved concurrency. Default 1.
	Concurrency int
	// Output receives every line the bootstraps print on stdout or stderr (their
	// CloudWatch logs in Lambda), one whole line per Write, never two writes at once.
	// Default: discarded.
	Output io.Writer
}

// FuncStats counts what happened to a function. It is a plain value, safe to copy.
type FuncStats struct {
	Invocations int64 // invocations handed to an environment
	Errors      int64 // function errors (*FunctionError results)
	Crashes     int64 // environments whose process exited unexpectedly (at init, during or between invocations)
	Timeouts    int64 // invocations, or inits, that timed out and had their environment killed
	ColdStarts  int64 // environments that completed init (process start to first GET /next)

	InitLast  time.Duration // the latest cold start's init duration
	InitMax   time.Duration // the longest init duration
	InitTotal time.Duration // the sum of init durations; InitTotal/ColdStarts is the mean

	// Billed is the invocations' durations (handed to an environment → answered, failed
	// or timed out), each rounded up to the millisecond, summed: Lambda's billed
	// duration, which times the memory makes its GB-seconds.
	Billed time.Duration
}

// Func is a started function. Its methods are safe for concurrent use.
type Func struct {
	r   *Runner
	fn  Function
	arn string
	log *slog.Logger

	mu      sync.Mutex
	envs    map[*env]struct{} // every live environment: starting, idle, busy or finishing
	idle    []*env            // environments blocked in GET /next with nothing assigned
	changed chan struct{}     // closed (and replaced) whenever a waiting invocation may proceed
	closed  bool
	// Init failures in a row, and when the next environment may start: a bootstrap that
	// crashes at init is retried with exponential backoff instead of in a tight loop.
	initFailures int
	retryAt      time.Time
	lastInitErr  error

	inflight sync.WaitGroup // invocations assigned and not yet finished; Add only under mu while !closed

	invocations, errors, crashes, timeouts, coldStarts atomic.Int64
	initLast, initMax, initTotal                       atomic.Int64 // nanoseconds

	billed atomic.Int64 // nanoseconds, whole milliseconds
}

func newFunc(r *Runner, f Function) *Func {
	return &Func{
		r:       r,
		fn:      f,
		arn:     fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s", r.cfg.Region, f.Name),
		log:     r.log.With("function", f.Name),
		envs:    map[*env]struct{}{},
		changed: make(chan struct{}),
	}
}

// Name is the function's name.
func (f *Func) Name() string { return f.fn.Name }

// ARN is the function's ARN, as passed to it in Lambda-Runtime-Invoked-Function-Arn.
func (f *Func) ARN() string { return f.arn }

// Stats returns the function's counters.
func (f *Func) Stats() FuncStats {
	return FuncStats{
		Invocations: f.invocations.Load(),
		Errors:      f.errors.Load(),
		Crashes:     f.crashes.Load(),
		Timeouts:    f.timeouts.Load(),
		ColdStarts:  f.coldStarts.Load(),
		InitLast:    time.Duration(f.initLast.Load()),
		InitMax:     time.Duration(f.initMax.Load()),
		InitTotal:   time.Duration(f.initTotal.Load()),
		Billed:      time.Duration(f.billed.Load()),
	}
}

// Environments returns the PIDs of the function's running bootstrap processes, in
// ascending order.
func (f *Func) Environments() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	pids := make([]int, 0, len(f.envs))
	for e := range f.envs {
		pids = append(pids, e.pid)
	}
	slices.Sort(pids)
	return pids
}

// KillEnvironment sends SIGKILL to the bootstrap with this PID (and its process group),
// as a crash would. The runner treats it as a crash: an invocation in flight fails, and
// a fresh environment starts on the next demand.
func (f *Func) KillEnvironment(pid int) error {
	f.mu.Lock()
	var found *env
	for e := range f.envs {
		if e.pid == pid {
			found = e
		}
	}
	f.mu.Unlock()
	if found == nil {
		return fmt.Errorf("lambdarunner: function %s has no environment with pid %d", f.fn.Name, pid)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("lambdarunner: kill environment %d of %s: %w", pid, f.fn.Name, err)
	}
	return nil
}

// Invoke runs one synchronous invocation (RequestResponse) and returns the function's
// response. A function error is returned as *FunctionError; an environment failure as
// an error matching ErrCrashed or ErrTimeout that quotes the bootstrap's last output.
// If ctx ends first, Invoke returns ctx.Err() but, as in Lambda, an invocation already
// handed to an environment runs on until it finishes or times out.
func (f *Func) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	inv, err := f.dispatch(ctx, payload)
	if err != nil {
		return nil, err
	}
	select {
	case res := <-inv.done:
		return res.out, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// invocation is one request on its way through an environment.
type invocation struct {
	id       string
	traceID  string
	payload  []byte
	deadline time.Time
	done     chan result // buffered: finish never blocks
	once     sync.Once
	f        *Func
	started  time.Time // when an environment was handed it
}

type result struct {
	out []byte
	err error
}

// finish delivers the first result; later ones (a crash after a timeout, say) are dropped.
func (inv *invocation) finish(res result) {
	inv.once.Do(func() {
		if !inv.started.IsZero() {
			inv.f.billed.Add(int64((time.Since(inv.started) + time.Millisecond - 1).Truncate(time.Millisecond)))
		}
		inv.done <- res
		inv.f.inflight.Done()
	})
}

// dispatch hands payload to an environment: an idle one if any, else a new one if the
// concurrency allows, else it waits, like Lambda's placement of a synchronous request.
func (f *Func) dispatch(ctx context.Context, payload []byte) (*invocation, error) {
	if len(payload) == 0 {
		payload = []byte("{}") // what Lambda passes when an Invoke has no payload
	}
	if len(payload) > maxPayload {
		return nil, fmt.Errorf("%s: request payload of %d bytes exceeds Lambda's limit of %d bytes (RequestTooLargeException)", f.fn.Name, len(payload), maxPayload)
	}
	if !json.Valid(payload) {
		return nil, fmt.Errorf("%s: request payload is not valid JSON (InvalidRequestContentException)", f.fn.Name)
	}
	inv := &invocation{
		id:      newRequestID(),
		traceID: newTraceID(),
		payload: payload,
		done:    make(chan result, 1),
		f:       f,
	}

	var mine *env // an environment this call started, whose init failure it reports
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return nil, ErrStopped
		}
		if mine != nil && mine.state != stateStarting {
			if mine.state == stateDead && mine.initErr != nil {
				err := mine.initErr
				f.mu.Unlock()
				return nil, err
			}
			mine = nil // it is up (and may serve someone else), or went away: carry on
		}
		if n := len(f.idle); n > 0 {
			// The most recently used environment first: like Lambda, keep a few warm
			// rather than spreading the load over all of them.
			e := f.idle[n-1]
			f.idle = f.idle[:n-1]
			f.assignLocked(e, inv)
			f.mu.Unlock()
			return inv, nil
		}
		var wake <-chan time.Time
		if mine == nil && len(f.envs) < f.fn.Concurrency {
			if wait := time.Until(f.retryAt); wait > 0 {
				if len(f.envs) == 0 {
					// Nothing to wait for but the backoff: fail now, as Lambda fails an
					// invoke whose init fails, rather than hold the caller.
					err := &backoffError{last: f.lastInitErr, failures: f.initFailures, wait: wait.Round(time.Millisecond).String()}
					f.mu.Unlock()
					return nil, err
				}
				if retry == nil {
					retry = time.NewTimer(wait)
				} else {
					retry.Reset(wait)
				}
				wake = retry.C
			} else {
				e, err := f.spawnLocked()
				if err != nil {
					f.mu.Unlock()
					return nil, err
				}
				mine = e
			}
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// assignLocked gives inv to the idle environment e and starts its timeout clock.
func (f *Func) assignLocked(e *env, inv *invocation) {
	f.inflight.Add(1)
	f.invocations.Add(1)
	inv.started = time.Now()
	inv.deadline = inv.started.Add(f.fn.Timeout)
	e.state = stateBusy
	e.inv = inv
	e.delivered = false
	e.timer = time.AfterFunc(f.fn.Timeout, func() { f.timeout(e, inv) })
	e.pending <- inv // capacity 1, and an idle environment has nothing pending
}

// notifyLocked wakes every dispatch waiting for a change.
func (f *Func) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// timeout ends an invocation that outlived the function's timeout: Lambda kills the
// environment, since the runtime may be stuck for good.
func (f *Func) timeout(e *env, inv *invocation) {
	f.mu.Lock()
	if e.inv != inv {
		f.mu.Unlock()
		return // answered just in time
	}
	e.killReason = killTimeout
	f.mu.Unlock()
	f.timeouts.Add(1)
	f.log.Warn("invocation timed out: killing its environment", "pid", e.pid, "request_id", inv.id, "timeout", f.fn.Timeout)
	inv.finish(result{err: newEnvError(ErrTimeout, e.out.tail(tailLines),
		"%s: invocation %s timed out after %s (environment killed)", f.fn.Name, inv.id, f.fn.Timeout)})
	e.kill()
}

// initBackoff is how long to hold back new environments after n init failures in a row.
func initBackoff(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// close refuses new invocations, waits for those in flight (each ends by its timeout at
// the latest), and stops every environment.
func (f *Func) close() {
	f.mu.Lock()
	f.closed = true
	f.notifyLocked()
	f.mu.Unlock()

	f.inflight.Wait()

	f.mu.Lock()
	envs := make([]*env, 0, len(f.envs))
	for e := range f.envs {
		e.killReason = killStop
		envs = append(envs, e)
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.terminate()
		}()
	}
	wg.Wait()
}
