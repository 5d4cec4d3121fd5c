// Package site runs sessionha sites on one machine with no AWS account: a DynamoDB
// replica per region (local/dynamo) and fauxqs for SNS and SQS, the edge port that routes
// SDK calls to them by service and region, the resources of infra/topology provisioned
// through SDK calls, and the functions' real bootstrap binaries under the Lambda runner,
// fed by their queues, or (the lifecycle function) by the table's stream: the region's
// replica's change feed. `make local` starts every site of cdk.json with StartStack; the
// end-to-end tests start one with Start.
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
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kmssdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/edge"
	"github.com/sessionha/sessionha/local/emulator"
	"github.com/sessionha/sessionha/local/lambdarunner"
	"github.com/sessionha/sessionha/local/metrics"
	"github.com/sessionha/sessionha/local/provision"
)

// Options configure a local stack of one site; the zero value means the defaults named
// on each field. (StackOptions runs several.)
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
	// TTLDelay and TTLPeriod: see StackOptions. Defaults 1 min and 10 s.
	TTLDelay, TTLPeriod time.Duration
	// WithoutAWSRules: see StackOptions. Default false: the edge holds SQS's and SNS's
	// rules, as AWS does.
	WithoutAWSRules bool
	// SealValues: see StackOptions. Default false.
	SealValues bool
}

// Site is one running site of a stack: its provisioned topology and its functions.
type Site struct {
	Topology topology.Topology
	Outputs  provision.Outputs
	// Stack is the stack the site runs on (shared emulators and edge).
	Stack *Stack
	// Replica is the DynamoDB of the site's region.
	Replica   *dynamo.Replica
	Fauxqs    *emulator.Fauxqs
	Edge      *edge.Gateway
	Runner    *lambdarunner.Runner
	Functions map[string]*lambdarunner.Func // by topology function ID
	// AWS is an SDK configuration that reaches the site through the edge port, in the
	// site's region.
	AWS aws.Config
	// Metrics sums the functions' EMF metric lines, as CloudWatch would on AWS, and
	// carries the region's table request counts (AWS/DynamoDB's metrics there); the edge
	// serves it at MetricsPath (SESSIONHA_METRICS_URL in Env).
	Metrics *metrics.Collector
	// MetricsPath is where the edge serves Metrics: metrics.Path for the primary site
	// (and for a lone site), metrics.Path/<site> for every site.
	MetricsPath string
	// SealKeyARN is the site's seal key in its region's KMS stand-in (topology SealKey).
	SealKeyARN string

	fnEnv map[string]string
	owner bool // Stop stops the whole stack: Start made it for this site alone
}

// Start brings a stack of one site up, or stops whatever it started and says what failed.
func Start(ctx context.Context, o Options) (*Site, error) {
	if o.Name == "" {
		o.Name = "local"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	st, err := StartStack(ctx, StackOptions{
		Sites: []topology.Site{{Name: o.Name, Region: o.Region, Primary: true, Settings: o.Settings}},
		Table: o.Table, EdgePort: o.EdgePort, Dir: o.Dir, RunDir: o.RunDir, FunctionOutput: o.FunctionOutput,
		FunctionEnv: o.FunctionEnv, Logger: o.Logger, StartTimeout: o.StartTimeout, TTLDelay: o.TTLDelay, TTLPeriod: o.TTLPeriod,
		WithoutAWSRules: o.WithoutAWSRules, SealValues: o.SealValues,
	})
	if err != nil {
		return nil, err
	}
	s := st.Sites[0]
	s.owner = true
	return s, nil
}

// startSite provisions one site's resources in its region and starts its functions.
func (st *Stack) startSite(ctx context.Context, topo topology.Topology, bootstraps map[string]string, o StackOptions, alone bool) (*Site, error) {
	region := topo.Site.Region
	s := &Site{Topology: topo, Stack: st, Replica: st.Replicas[region], Fauxqs: st.Fauxqs, Edge: st.Edge,
		Functions: map[string]*lambdarunner.Func{}, AWS: st.awsConfig(region),
		Metrics: metrics.New("sessionha"), fnEnv: o.FunctionEnv}
	s.Metrics.CountTables(s.Replica.RequestCounts) // as AWS/DynamoDB's metrics: every reader's requests
	s.MetricsPath = metrics.Path + "/" + topo.Site.Name
	if err := st.Edge.Handle(s.MetricsPath, s.Metrics); err != nil {
		return nil, err
	}
	if alone || topo.Site.Primary {
		s.MetricsPath = metrics.Path
		if err := st.Edge.Handle(metrics.Path, s.Metrics); err != nil {
			return nil, err
		}
	}
	sq := sqs.NewFromConfig(s.AWS)
	var err error
	if s.Outputs, err = provision.Apply(ctx, topo, s.DynamoDBClient(), sns.NewFromConfig(s.AWS), sq); err != nil {
		return nil, err
	}
	if s.SealKeyARN, err = provision.SealKey(ctx, topo, kmssdk.NewFromConfig(s.AWS)); err != nil {
		return nil, err
	}
	o.Logger.Info("provisioned", "site", topo.Site.Name, "table", s.Outputs.Table, "topics", len(s.Outputs.TopicARNs), "queues", len(s.Outputs.QueueURLs))
	// The runner writes whole lines, one per Write, never two at once.
	out := io.MultiWriter(st.logFile, s.Metrics)
	if o.FunctionOutput != nil {
		out = io.MultiWriter(st.logFile, s.Metrics, o.FunctionOutput)
	}
	s.Runner = lambdarunner.New(lambdarunner.Config{SQS: sq, DynamoDB: s.DynamoDBClient(), Region: region, Logger: o.Logger.With("site", topo.Site.Name)})
	for _, f := range topo.Functions {
		fn, err := s.Runner.Start(ctx, lambdarunner.Function{
			Name: f.Name, Bootstrap: bootstraps[f.ID], Env: s.FunctionEnv(f), Timeout: f.Timeout,
			Concurrency: f.MaxConcurrency, Output: out,
		})
		if err != nil {
			s.stopFunctions()
			return nil, fmt.Errorf("function %s: %w", f.ID, err)
		}
		s.Functions[f.ID] = fn
		if src := f.Stream; src != nil {
			// The table's stream in the site's region: its replica's change feed, replicated
			// changes included, as a global table's stream has them.
			if err := fn.MapStream(ctx, lambdarunner.StreamMapping{
				Feed: s.Replica, Table: s.Outputs.Table, StartingPosition: src.StartingPosition,
				BatchSize: f.BatchSize, BatchingWindow: f.BatchingWindow, RetryAttempts: src.RetryAttempts,
				MaxRecordAge: src.MaxRecordAge, BisectOnError: src.BisectOnError, ReportBatchItemFailures: true,
				OnFailureQueueURL: s.Outputs.QueueURLs[src.OnFailure],
			}); err != nil {
				s.stopFunctions()
				return nil, fmt.Errorf("function %s: stream event source mapping: %w", f.ID, err)
			}
			continue
		}
		if err := fn.MapSQS(ctx, lambdarunner.SQSMapping{
			QueueURL: s.Outputs.QueueURLs[f.Queue], QueueARN: s.Outputs.QueueARNs[f.Queue],
			BatchSize: f.BatchSize, BatchingWindow: f.BatchingWindow, MaxConcurrency: f.MaxConcurrency,
			ReportBatchItemFailures: true,
		}); err != nil {
			s.stopFunctions()
			return nil, fmt.Errorf("function %s: event source mapping: %w", f.ID, err)
		}
	}
	return s, nil
}

// DynamoDBClient is a DynamoDB client for the site's region.
func (s *Site) DynamoDBClient() *dynamodb.Client { return dynamodb.NewFromConfig(s.AWS) }

// EdgeURL is the one endpoint SDK clients need.
func (s *Site) EdgeURL() string { return s.Stack.EdgeURL() }

// FunctionEnv is the environment the site gives function f under the runner: its
// deployed variables resolved (table, topic and queue references to the site's names,
// ARNs and URLs), the edge endpoint and dummy credentials.
func (s *Site) FunctionEnv(f topology.Function) map[string]string {
	env := map[string]string{
		"AWS_ACCESS_KEY_ID":         AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":     SecretAccessKey,
		"AWS_ENDPOINT_URL":          s.EdgeURL(),
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
		"AWS_ENDPOINT_URL":                  s.EdgeURL(),
		"AWS_ENDPOINT_URL_DYNAMODB_STREAMS": s.EdgeURL(), // else the SDK sends Streams calls to AWS
		"SESSIONHA_SITE":                    s.Topology.Site.Name,
		"SESSIONHA_CLUSTER":                 "default",
		"SESSIONHA_TABLE":                   s.Outputs.Table,
		"SESSIONHA_PERSISTENCE":             "ha",
		"SESSIONHA_FREQUENCY":               "web-method",
		"SESSIONHA_SCOPE":                   "session",
		"SESSIONHA_READ_PATH":               "direct",
		"SESSIONHA_MAX_WAIT":                "5s",
		"SESSIONHA_METRICS_URL":             s.EdgeURL() + s.MetricsPath,
	}
	for _, t := range s.Topology.Topics {
		m[t.EnvVar] = s.Outputs.TopicARNs[t.ID]
	}
	if s.Stack.sealValues {
		for _, l := range s.SealEnv() {
			k, v, _ := strings.Cut(l, "=")
			m[k] = v
		}
	}
	m[topology.NoticeTopicsEnvVar] = strings.Join(s.NoticeTopicARNs(), ",")
	lines := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		lines = append(lines, k+"="+m[k])
	}
	return lines
}

// NoticeTopicARNs are the notice topics of every site of the stack (the topology's
// Peers, this site's first), as provisioned: what SESSIONHA_NOTICE_TOPIC_ARNS lists, and
// an instance subscribes its queue to.
func (s *Site) NoticeTopicARNs() []string {
	var arns []string
	for _, p := range s.Topology.Peers {
		if ps := s.Stack.Site(p.Site); ps != nil {
			arns = append(arns, ps.Outputs.TopicARNs[topology.TopicNotice])
		}
	}
	return arns
}

// WriteEnv writes Env to path (mode 0600), replacing it atomically.
func (s *Site) WriteEnv(path string) error {
	tmp := path + ".tmp"
	body := "# sessionha local site " + s.Topology.Site.Name + " (" + s.AWS.Region + "): source this file, or pass it to sessionctl --env-file.\n" +
		strings.Join(s.Env(), "\n") + "\n"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Stop stops the stack the site runs on, when Start made it for this site; for a site of
// a larger stack, Stack.Stop stops it. It is safe to call twice.
func (s *Site) Stop() {
	if s.owner {
		s.Stack.Stop()
	}
}

func (s *Site) stopFunctions() {
	if s.Runner != nil {
		s.Runner.Stop()
	}
}

// BuildFunctions builds the bootstrap of each function (folders under functions/) for
// this machine, as Lambda's provided.al2023 runtime would run them (static, no RPC), and
// returns their paths by ID. Go's build cache makes a rebuild of unchanged code quick.
// The commit is stamped in each (-buildvcs=auto, whatever GOFLAGS says) when moduleRoot
// is a git checkout, so that the functions' first log line names it.
func BuildFunctions(ctx context.Context, moduleRoot, outDir string, ids ...string) (map[string]string, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			return nil, errors.New("go not found: the functions' bootstraps are built with the Go toolchain")
		}
	}
	paths := map[string]string{}
	build := func(id, out, vcs string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, goBin, "build", "-buildvcs="+vcs, "-tags", "lambda.norpc", "-trimpath", "-o", out, "./functions/"+id)
		cmd.Dir = moduleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		return cmd.CombinedOutput()
	}
	for _, id := range ids {
		out := filepath.Join(outDir, id, "bootstrap")
		msg, err := build(id, out, "auto")
		if err != nil && strings.Contains(string(msg), "error obtaining VCS status") {
			// git is there but refuses the checkout (another owner, say): build without the
			// commit rather than not at all; the build line then says "unknown".
			msg, err = build(id, out, "false")
		}
		if err != nil {
			return nil, fmt.Errorf("build function %s: %v\n%s", id, err, msg)
		}
		paths[id] = out
	}
	return paths, nil
}
