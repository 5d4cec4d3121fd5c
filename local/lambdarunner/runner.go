// Package lambdarunner runs AWS Lambda functions locally, without Docker, by serving
// their real bootstrap executables the Lambda Runtime API and by emulating the SQS event
// source mapping.
//
// Why it exists: AWS's Runtime Interface Emulator (RIE) is not available to this
// project: it ships as Docker images and release binaries, not as a module the project
// can pin through the Go module proxy, and the local stack runs without Docker. The
// functions are Go programs built for the provided.al2023 runtime (CGO_ENABLED=0 go
// build -tags lambda.norpc) that call lambda.Start from aws-lambda-go, and such a
// program only needs an HTTP server speaking the Runtime API, which is small enough to
// write and test here. Running the real bootstrap, rather than calling the handler
// in-process, keeps what is tested identical to what is deployed: the same binary, the
// same environment variables, and crashes and timeouts that really end the process.
//
// What it emulates:
//
//   - Execution environments: one bootstrap process per environment, each with its own
//     Runtime API server on 127.0.0.1. Environments start lazily on demand (cold starts),
//     are reused while warm, are limited by the function's concurrency, and are discarded
//     when their process exits, when an invocation times out (the process is killed, as
//     Lambda does) or when init fails. Repeated init failures back off instead of
//     spinning.
//   - The process environment of a provided.al2023 function: the AWS_LAMBDA_* variables,
//     _HANDLER, LAMBDA_TASK_ROOT, AWS_REGION, a minimal PATH and nothing else from the
//     parent process, plus the function's own variables.
//   - Synchronous invocation (Func.Invoke) with Lambda's payload limits.
//   - The SQS event source mapping (Func.MapSQS): long-polling pollers, batching
//     window, Lambda's SQS event shape, deletion on success, partial batch responses
//     (ReportBatchItemFailures) with Lambda's rules, and nothing deleted on failure, so
//     that the queue's own visibility timeout and redrive policy apply.
//   - The DynamoDB Streams event source mapping (Func.MapStream), fed by a local/dynamo
//     replica's change feed: records in the stream's order with Lambda's shape (eventName,
//     keys and images by the stream's view type, the TTL sweeper's userIdentity, the
//     change's sequence number, the table's LatestStreamArn), batch size and window, one
//     batch in flight (one shard), retries with backoff, partial batch failures as
//     checkpoints, bisection on error, retry and record-age limits, and the on-failure
//     destination's message for a discarded batch.
//
// What it does not emulate: the Lambda Invoke API over HTTP, async invocation, shards
// and ParallelizationFactor (a stream is one shard), TRIM_HORIZON's history (the feed
// starts at MapStream), tumbling windows, event filtering,
// throttling (an invocation over the concurrency limit waits for an environment instead
// of failing with TooManyRequestsException), freezing idle environments (an idle
// bootstrap keeps running, blocked in GET /next), the FIFO-specific ordering rules of the
// mapping, splitting SQS batches larger than the 6 MB payload limit, and extensions
// beyond the registration that aws-lambda-go's WithEnableSIGTERM performs.
package lambdarunner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// SQSAPI is the part of the SQS API the runner calls; *sqs.Client satisfies it.
type SQSAPI interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	// SendMessage tells a stream mapping's on-failure destination of a discarded batch.
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Config configures a Runner.
type Config struct {
	// SQS is the client the event source mappings poll with. Needed by MapSQS, and by
	// MapStream for an on-failure destination.
	SQS SQSAPI
	// DynamoDB finds a stream mapping's table and its stream. Needed only by MapStream.
	DynamoDB DynamoDBAPI
	// Region is reported to the functions (AWS_REGION, ARNs, SQS records). Default us-east-1.
	Region string
	// Logger receives the runner's own events (environments started, crashed, timed out;
	// SQS batches that failed). It never receives payloads or message bodies, which carry
	// session data. Default slog.Default().
	Logger *slog.Logger
}

// Runner runs Lambda functions locally. Create it with New, add functions with Start,
// and release everything with Stop.
type Runner struct {
	cfg Config
	log *slog.Logger

	// ctx is cancelled by Stop: it ends every poller's long poll at once.
	ctx    context.Context
	cancel context.CancelFunc

	// outMu serialises writes to every Function.Output, which callers may share between
	// functions (one writer for the whole stack), so lines never interleave.
	outMu sync.Mutex

	mu      sync.Mutex
	funcs   map[string]*Func
	stopped bool
	pollers sync.WaitGroup // Add only under mu while !stopped, so Stop's Wait is safe

	stopOnce sync.Once
}

// New returns a Runner. It starts nothing until Start and MapSQS are called.
func New(cfg Config) *Runner {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runner{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "lambdarunner"),
		ctx:    ctx,
		cancel: cancel,
		funcs:  map[string]*Func{},
	}
}

// Limits Lambda itself enforces, so that a configuration that would fail on deploy fails
// here too.
const (
	defaultTimeout  = 30 * time.Second
	maxTimeout      = 15 * time.Minute
	defaultMemoryMB = 128
	minMemoryMB     = 128
	maxMemoryMB     = 10240
	// maxPayload is Lambda's limit on a synchronous request and response payload.
	maxPayload = 6291556
	// minInitTimeout is Lambda's limit on the init phase. Lambda retries a longer init
	// within the first invocation's timeout, so the effective limit is the larger of the two.
	minInitTimeout = 10 * time.Second
)

var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// reservedEnv are variables Lambda sets itself and refuses in a function's configuration.
// AWS_REGION and AWS_DEFAULT_REGION are reserved too but accepted when they equal the
// runner's region, because callers often pass one environment to every process.
var reservedEnv = map[string]bool{
	"_HANDLER": true, "_X_AMZN_TRACE_ID": true, "AWS_EXECUTION_ENV": true,
	"AWS_LAMBDA_RUNTIME_API": true, "LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true,
}

// Start registers a function after checking its configuration. It does not start a
// bootstrap: like Lambda, the first invocation does (a cold start).
func (r *Runner) Start(ctx context.Context, f Function) (*Func, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !functionName.MatchString(f.Name) {
		return nil, fmt.Errorf("lambdarunner: invalid function name %q: want 1-64 letters, digits, '-' or '_'", f.Name)
	}
	if f.Bootstrap == "" {
		return nil, fmt.Errorf("lambdarunner: function %s: Bootstrap (path to the bootstrap executable) is required", f.Name)
	}
	path, err := filepath.Abs(f.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("lambdarunner: function %s: bootstrap %s: %w", f.Name, f.Bootstrap, err)
	}
	st, err := os.Stat(path)
	switch {
	case os.IsNotExist(err):
		return nil, fmt.Errorf("lambdarunner: function %s: bootstrap %s does not exist (build it first: CGO_ENABLED=0 go build -tags lambda.norpc -o %s <the function's main package>)", f.Name, path, path)
	case err != nil:
		return nil, fmt.Errorf("lambdarunner: function %s: bootstrap %s: %w", f.Name, path, err)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("lambdarunner: function %s: bootstrap %s is not a regular file", f.Name, path)
	case st.Mode().Perm()&0o111 == 0:
		return nil, fmt.Errorf("lambdarunner: function %s: bootstrap %s is not executable", f.Name, path)
	}
	f.Bootstrap = path
	switch {
	case f.Timeout == 0:
		f.Timeout = defaultTimeout
	case f.Timeout < time.Second || f.Timeout > maxTimeout:
		return nil, fmt.Errorf("lambdarunner: function %s: Timeout %s out of Lambda's range 1s-15m", f.Name, f.Timeout)
	}
	switch {
	case f.MemoryMB == 0:
		f.MemoryMB = defaultMemoryMB
	case f.MemoryMB < minMemoryMB || f.MemoryMB > maxMemoryMB:
		return nil, fmt.Errorf("lambdarunner: function %s: MemoryMB %d out of Lambda's range %d-%d", f.Name, f.MemoryMB, minMemoryMB, maxMemoryMB)
	}
	switch {
	case f.Concurrency == 0:
		f.Concurrency = 1
	case f.Concurrency < 0:
		return nil, fmt.Errorf("lambdarunner: function %s: negative Concurrency %d", f.Name, f.Concurrency)
	}
	for k, v := range f.Env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0):
			return nil, fmt.Errorf("lambdarunner: function %s: invalid environment variable %q", f.Name, k)
		case reservedEnv[k] || strings.HasPrefix(k, "AWS_LAMBDA_"):
			return nil, fmt.Errorf("lambdarunner: function %s: environment variable %s is reserved by Lambda", f.Name, k)
		case (k == "AWS_REGION" || k == "AWS_DEFAULT_REGION") && v != r.cfg.Region:
			return nil, fmt.Errorf("lambdarunner: function %s: %s=%s differs from the runner's region %s", f.Name, k, v, r.cfg.Region)
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, ErrStopped
	}
	if _, dup := r.funcs[f.Name]; dup {
		return nil, fmt.Errorf("lambdarunner: function %s is already started", f.Name)
	}
	fn := newFunc(r, f)
	r.funcs[f.Name] = fn
	return fn, nil
}

// Stop ends every event source mapping (cancelling their long polls), waits for the
// invocations in flight (each is bounded by its function's timeout, after which its
// environment is killed), then stops every bootstrap: SIGTERM to its process group, and
// SIGKILL if it has not exited shortly after. When Stop returns no bootstrap is left
// running. It is safe to call more than once and from several goroutines.
func (r *Runner) Stop() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopped = true
		funcs := make([]*Func, 0, len(r.funcs))
		for _, f := range r.funcs {
			funcs = append(funcs, f)
		}
		r.mu.Unlock()

		r.cancel()
		// Pollers first: they finish (and delete) the batch they are invoking, and start
		// no new one.
		r.pollers.Wait()
		var wg sync.WaitGroup
		for _, f := range funcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.close()
			}()
		}
		wg.Wait()
	})
}
