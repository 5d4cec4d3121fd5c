package lambdarunner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/local/emulator"
)

// Shared by every test: the test function's bootstrap, and one fauxqs (each test makes
// its own queues).
var (
	bootstrap string
	fq        *emulator.Fauxqs
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "lambdarunner-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bootstrap = filepath.Join(tmp, "bootstrap")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	// Built exactly as sessionha's functions are for the provided.al2023 runtime.
	build := exec.Command(goTool, "build", "-tags", "lambda.norpc", "-o", bootstrap, "./testdata/echofn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build testdata/echofn: %v\n%s", err, out)
		return 1
	}
	fq, err = emulator.StartFauxqs(context.Background(), emulator.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "start fauxqs: %v\n", err)
		return 1
	}
	defer fq.Stop()
	return m.Run()
}

// testLogger shows the runner's own log with -v, and discards it otherwise.
func testLogger() *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func sqsClient() *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(fq.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

// newRunner returns a Runner stopped at the end of the test.
func newRunner(t *testing.T) *Runner {
	t.Helper()
	r := New(Config{SQS: sqsClient(), Logger: testLogger()})
	t.Cleanup(r.Stop)
	return r
}

// start starts the test function with a name unique to the test.
func start(t *testing.T, r *Runner, f Function) *Func {
	t.Helper()
	if f.Name == "" {
		f.Name = "echofn-" + strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
		if len(f.Name) > 64 {
			f.Name = f.Name[:64]
		}
	}
	if f.Bootstrap == "" {
		f.Bootstrap = bootstrap
	}
	fn, err := r.Start(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

// lines collects a function's output.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !bytes.HasSuffix(p, []byte("\n")) || bytes.Count(p, []byte("\n")) != 1 {
		l.all = append(l.all, "NOT ONE WHOLE LINE: "+string(p))
	}
	l.all = append(l.all, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (l *lines) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

// record is one of the "record" log lines echofn prints for each SQS record.
type record struct {
	Msg               string   `json:"msg"`
	RequestID         string   `json:"requestId"`
	MessageID         string   `json:"messageId"`
	ReceiveCount      string   `json:"receiveCount"`
	BatchSize         int      `json:"batchSize"`
	EventSource       string   `json:"eventSource"`
	EventSourceARN    string   `json:"eventSourceARN"`
	AWSRegion         string   `json:"awsRegion"`
	MD5OK             bool     `json:"md5ok"`
	ReceiptHandle     bool     `json:"receiptHandle"`
	Attributes        []string `json:"attributes"`
	MessageAttributes []string `json:"messageAttributes"`
}

func (l *lines) records() []record {
	var recs []record
	for _, s := range l.snapshot() {
		var r record
		if json.Unmarshal([]byte(s), &r) == nil && r.Msg == "record" {
			recs = append(recs, r)
		}
	}
	return recs
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ io.Writer = (*lines)(nil)
