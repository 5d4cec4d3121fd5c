// Package site runs a whole sessionha site on one machine with no AWS account: DynamoDB
// Local and fauxqs, the edge port that routes SDK calls to them, the resources of
// infra/topology provisioned through SDK calls, and the functions' real bootstrap
// binaries under the Lambda runner, fed by their queues. `make local` and the
// end-to-end tests start it the same way, with Start.
package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/edge"
	"github.com/sessionha/sessionha/local/emulator"
	"github.com/sessionha/sessionha/local/lambdarunner"
	"github.com/sessionha/sessionha/local/metrics"
	"github.com/sessionha/sessionha/local/provision"
)

// Options configure a local site; the zero value means the defaults named on each field.
type Options struct {
	// Name of the site. Default "local".
	Name string
	// Region the site pretends to be in. Default "us-east-1".
	Region string
	// EdgePort is the single port SDK clients use, like LocalStack's. Default 4566;
	// -1 picks a free port (tests).
	EdgePort int
	// Dir is the local/ directory with the pinned emulators. Default: found from the
	// working directory (emulator.LocalDir).
	Dir string
	// RunDir receives logs and built bootstraps. Default Dir/.run.
	RunDir string
	// Settings override the topology's defaults.
	Settings topology.Settings
	// Table is the session table's name. Default topology.DefaultTable.
	Table string
	// FunctionOutput receives every line the functions print (JSON logs, metrics), in
	// addition to RunDir/logs/functions.log. Default none.
	FunctionOutput io.Writer
	// FunctionEnv adds variables to every function's environment, such as
	// SESSIONHA_CPUPROFILE (a directory: sessionop writes a CPU profile there, for the
	// benchmark). Default none.
	FunctionEnv map[string]string
	// Logger receives the site's own progress. Default: discard.
	Logger *slog.Logger
	// StartTimeout bounds each emulator's start. Default 60 s.
	StartTimeout time.Duration
}

// Credentials of the local site: any non-empty keys work with the emulators.
const (
	AccessKeyID     = "test"
	SecretAccessKey = "test"
)

// Site is a running local site.
type Site struct {
	Topology  topology.Topology
	Outputs   provision.Outputs
	DynamoDB  *emulator.DynamoDB
	Fauxqs    *emulator.Fauxqs
	Edge      *edge.Gateway
	Runner    *lambdarunner.Runner
	Functions map[string]*lambdarunner.Func // by topology function ID
	// AWS is an SDK configuration that reaches the site through the edge port.
	AWS aws.Config
	// Metrics sums the functions' EMF metric lines, as CloudWatch would on AWS; the edge
	// serves it at metrics.Path (SESSIONHA_METRICS_URL in Env).
	Metrics *metrics.Collector

	edgeSrv  *edge.Server
	fnEnv    map[string]string
	logFile  *os.File
	stopOnce sync.Once
}

// Start brings the whole site up, or stops whatever it started and says what failed.
func Start(ctx context.Context, o Options) (_ *Site, err error) {
	if o.Name == "" {
		o.Name = "local"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.EdgePort == 0 {
		o.EdgePort = 4566
	}
	if o.Dir == "" {
		if o.Dir, err = emulator.LocalDir(); err != nil {
			return nil, err
		}
	}
	if o.RunDir == "" {
		o.RunDir = filepath.Join(o.Dir, ".run")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	logDir := filepath.Join(o.RunDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	topo, err := topology.For(topology.Site{Name: o.Name, Region: o.Region, Primary: true, Settings: o.Settings}, o.Table)
	if err != nil {
		return nil, err
	}
	s := &Site{Topology: topo, Functions: map[string]*lambdarunner.Func{}, Metrics: metrics.New("sessionha"), fnEnv: o.FunctionEnv}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if o.EdgePort > 0 {
		if err := emulator.CheckPortFree(o.EdgePort); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}

	// The emulators start in parallel with building the bootstraps: DynamoDB Local's JVM
	// is the slowest part.
	eo := emulator.Options{Dir: o.Dir, LogDir: logDir, Timeout: o.StartTimeout}
	var (
		wg                  sync.WaitGroup
		ddbErr, fqErr, bErr error
		bootstraps          map[string]string
	)
	wg.Add(3)
	go func() { defer wg.Done(); s.DynamoDB, ddbErr = emulator.StartDynamoDB(ctx, eo) }()
	go func() { defer wg.Done(); s.Fauxqs, fqErr = emulator.StartFauxqs(ctx, eo) }()
	go func() {
		defer wg.Done()
		ids := make([]string, 0, len(topo.Functions))
		for _, f := range topo.Functions {
			ids = append(ids, f.ID)
		}
		bootstraps, bErr = BuildFunctions(ctx, filepath.Dir(o.Dir), filepath.Join(o.RunDir, "bin"), ids...)
	}()
	wg.Wait()
	if err := errors.Join(ddbErr, fqErr, bErr); err != nil {
		return nil, err
	}
	o.Logger.Info("emulators up", "dynamodb", s.DynamoDB.Endpoint, "fauxqs", s.Fauxqs.Endpoint)

	gw, err := edge.New(map[string]string{
		"dynamodb": s.DynamoDB.Endpoint, "sns": s.Fauxqs.Endpoint, "sqs": s.Fauxqs.Endpoint, "sts": s.Fauxqs.Endpoint,
	})
	if err != nil {
		return nil, err
	}
	s.Edge = gw
	if err := gw.Handle(metrics.Path, s.Metrics); err != nil {
		return nil, err
	}
	port := max(o.EdgePort, 0)
	if s.edgeSrv, err = edge.Listen(fmt.Sprintf("127.0.0.1:%d", port), gw); err != nil {
		return nil, err
	}
	s.AWS = aws.Config{
		Region:       o.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		BaseEndpoint: aws.String(s.edgeSrv.URL()),
	}
	db := s.DynamoDBClient()
	sq := sqs.NewFromConfig(s.AWS)
	if s.Outputs, err = provision.Apply(ctx, topo, db, sns.NewFromConfig(s.AWS), sq); err != nil {
		return nil, err
	}
	o.Logger.Info("provisioned", "table", s.Outputs.Table, "topics", len(s.Outputs.TopicARNs), "queues", len(s.Outputs.QueueURLs))

	if s.logFile, err = os.OpenFile(filepath.Join(logDir, "functions.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
		return nil, err
	}
	// The runner writes whole lines, one per Write, never two at once.
	var out io.Writer = io.MultiWriter(s.logFile, s.Metrics)
	if o.FunctionOutput != nil {
		out = io.MultiWriter(s.logFile, s.Metrics, o.FunctionOutput)
	}
	s.Runner = lambdarunner.New(lambdarunner.Config{SQS: sq, Region: o.Region, Logger: o.Logger})
	for _, f := range topo.Functions {
		env := s.functionEnv(f)
		fn, err := s.Runner.Start(ctx, lambdarunner.Function{
			Name: f.Name, Bootstrap: bootstraps[f.ID], Env: env, Timeout: f.Timeout,
			Concurrency: f.MaxConcurrency, Output: out,
		})
		if err != nil {
			return nil, fmt.Errorf("function %s: %w", f.ID, err)
		}
		s.Functions[f.ID] = fn
		if err := fn.MapSQS(ctx, lambdarunner.SQSMapping{
			QueueURL: s.Outputs.QueueURLs[f.Queue], QueueARN: s.Outputs.QueueARNs[f.Queue],
			BatchSize: f.BatchSize, BatchingWindow: f.BatchingWindow, MaxConcurrency: f.MaxConcurrency,
			ReportBatchItemFailures: true,
		}); err != nil {
			return nil, fmt.Errorf("function %s: event source mapping: %w", f.ID, err)
		}
	}
	return s, nil
}

// DynamoDBClient is a DynamoDB client for the site.
func (s *Site) DynamoDBClient() *dynamodb.Client {
	return dynamodb.NewFromConfig(s.AWS, func(o *dynamodb.Options) {
		o.DisableValidateResponseChecksum = true // DynamoDB Local's 400s carry no CRC32
	})
}

// EdgeURL is the one endpoint SDK clients need.
func (s *Site) EdgeURL() string { return s.edgeSrv.URL() }

func (s *Site) functionEnv(f topology.Function) map[string]string {
	env := map[string]string{
		"AWS_ACCESS_KEY_ID":         AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":     SecretAccessKey,
		"AWS_ENDPOINT_URL":          s.edgeSrv.URL(),
		"AWS_EC2_METADATA_DISABLED": "true",
	}
	for k, v := range f.Env {
		kind, ref, _ := strings.Cut(v, ":")
		switch kind {
		case "table":
			v = ref
		case "topic":
			v = s.Outputs.TopicARNs[ref]
		case "queue":
			v = s.Outputs.QueueURLs[ref]
		}
		env[k] = v
	}
	maps.Copy(env, s.fnEnv)
	return env
}

// Env is what a client needs to use the site, as KEY=value lines (sorted): every
// SESSIONHA_* variable but SESSIONHA_INSTANCE_ID (each instance sets its own), the
// region, dummy credentials and the edge endpoint; and SESSIONHA_METRICS_URL, where
// the edge serves the functions' counters (sessionctl stats reads it; on AWS, without
// it, sessionctl reads CloudWatch).
func (s *Site) Env() []string {
	m := map[string]string{
		"AWS_REGION":                        s.AWS.Region,
		"AWS_ACCESS_KEY_ID":                 AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":             SecretAccessKey,
		"AWS_ENDPOINT_URL":                  s.edgeSrv.URL(),
		"AWS_ENDPOINT_URL_DYNAMODB_STREAMS": s.edgeSrv.URL(), // else the SDK sends Streams calls to AWS
		"SESSIONHA_SITE":                    s.Topology.Site.Name,
		"SESSIONHA_CLUSTER":                 "default",
		"SESSIONHA_TABLE":                   s.Outputs.Table,
		"SESSIONHA_PERSISTENCE":             "ha",
		"SESSIONHA_FREQUENCY":               "web-method",
		"SESSIONHA_SCOPE":                   "session",
		"SESSIONHA_READ_PATH":               "direct",
		"SESSIONHA_MAX_WAIT":                "5s",
		"SESSIONHA_METRICS_URL":             s.edgeSrv.URL() + metrics.Path,
	}
	for _, t := range s.Topology.Topics {
		m[t.EnvVar] = s.Outputs.TopicARNs[t.ID]
	}
	lines := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		lines = append(lines, k+"="+m[k])
	}
	return lines
}

// WriteEnv writes Env to path (mode 0600), replacing it atomically.
func (s *Site) WriteEnv(path string) error {
	tmp := path + ".tmp"
	body := "# sessionha local site: source this file, or pass it to sessionctl --env-file.\n" +
		strings.Join(s.Env(), "\n") + "\n"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Stop stops everything Start started, functions first. It is safe to call twice.
func (s *Site) Stop() {
	s.stopOnce.Do(func() {
		if s.Runner != nil {
			s.Runner.Stop()
		}
		if s.edgeSrv != nil {
			s.edgeSrv.Close()
		}
		if s.Fauxqs != nil {
			s.Fauxqs.Stop()
		}
		if s.DynamoDB != nil {
			s.DynamoDB.Stop()
		}
		if s.logFile != nil {
			s.logFile.Close()
		}
	})
}

// BuildFunctions builds the bootstrap of each function (folders under functions/) for
// this machine, as Lambda's provided.al2023 runtime would run them (static, no RPC), and
// returns their paths by ID. Go's build cache makes a rebuild of unchanged code quick.
func BuildFunctions(ctx context.Context, moduleRoot, outDir string, ids ...string) (map[string]string, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			return nil, errors.New("go not found: the functions' bootstraps are built with the Go toolchain")
		}
	}
	paths := map[string]string{}
	for _, id := range ids {
		out := filepath.Join(outDir, id, "bootstrap")
		cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, "./functions/"+id)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build function %s: %v\n%s", id, err, msg)
		}
		paths[id] = out
	}
	return paths, nil
}
