package site

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/edge"
	"github.com/sessionha/sessionha/local/emulator"
	"github.com/sessionha/sessionha/local/kms"
	"github.com/sessionha/sessionha/local/replication"
)

// StackOptions configure a local stack of one or more sites; the zero value means the
// defaults named on each field.
type StackOptions struct {
	// Sites to run, each in its own region with its own replica of the table, topics,
	// queues and functions, as `cdk deploy` makes them. Default: one site, "local" in
	// us-east-1. Sites may share a region (they share its replica then).
	Sites []topology.Site
	// Table is the session table's name. Default topology.DefaultTable.
	Table string
	// EdgePort is the single port SDK clients use, like LocalStack's. Default 4566;
	// -1 picks a free port (tests).
	EdgePort int
	// Dir is the local/ directory with the pinned emulators. Default: found from the
	// working directory (emulator.LocalDir).
	Dir string
	// RunDir receives logs and built bootstraps. Default Dir/.run.
	RunDir string
	// FunctionOutput receives every line the functions print (JSON logs, metrics), in
	// addition to RunDir/logs/functions.log. Default none.
	FunctionOutput io.Writer
	// FunctionEnv adds variables to every function's environment. Default none.
	FunctionEnv map[string]string
	// Logger receives the stack's own progress. Default: discard.
	Logger *slog.Logger
	// StartTimeout bounds each emulator's start. Default 60 s.
	StartTimeout time.Duration
	// TTLPeriod is how often each region's DynamoDB deletes expired items. Default 10 s.
	TTLPeriod time.Duration
	// TTLDelay is the least time an expired item stays in the table before it is deleted:
	// on AWS, TTL deletes come late (typically within days), and every read must filter
	// expired items meanwhile. Default 1 min, so that the local stack shows it too.
	TTLDelay time.Duration
	// Replication configures the global table's replication between the regions' replicas
	// (lag, jitter, seed). Default: replication.Options' defaults (500 ms ± 250 ms).
	Replication replication.Options
	// WithoutAWSRules turns off the AWS rules of SQS and SNS that the edge holds and
	// fauxqs lacks (edge.Gateway.EnforceAWSRules: a queue's name reusable only 60 s after
	// its deletion, one purge per 60 s, messages of the 60 s after a purge eaten, message
	// sizes, SNS calls about a topic only in the topic's region). Default false: the rules hold, as on AWS, so that code which breaks them
	// fails here first. A test may still switch them with Stack.Edge.EnforceAWSRules.
	WithoutAWSRules bool
	// SealValues puts the run's seal key in every site's Env (SealEnv), so that clients
	// configured from it seal attribute values through the KMS stand-in, as on AWS. The
	// key is made anyway; tests that want it add SealEnv. Default false.
	SealValues bool
}

// Stack is a running local stack: fauxqs (SNS and SQS of every region), one DynamoDB
// replica per region, the edge port in front of them all, and its sites.
type Stack struct {
	// Sites in the order of StackOptions.Sites.
	Sites []*Site
	// Fauxqs serves SNS and SQS for every region (it reads the region of each request).
	Fauxqs *emulator.Fauxqs
	// Replicas is each region's DynamoDB, by region.
	Replicas map[string]*dynamo.Replica
	// Edge is the gateway behind the edge port: faults and delays are set on it.
	Edge *edge.Gateway
	// Replicator makes the replicas one global table (multi-region eventual consistency,
	// a local stand-in); nil with one region.
	Replicator *replication.Replicator
	// KMS is each region's KMS stand-in (local/kms), by region.
	KMS map[string]*kms.Server
	// SealKeys is SESSIONHA_SEAL_KMS_KEYS for every site: one data key made for this run
	// (its id "local-" and random hex), wrapped by each site's seal key (sealkeys.go).
	SealKeys string

	kmsServers map[string]*kms.HTTPServer
	sealARNs   map[string]string // region -> the seal key that wrapped SealKeys' blob there
	sealValues bool

	ddbMu      sync.Mutex // guards ddbServers, replaced by StartDynamoDB
	ddbServers map[string]*dynamo.Server
	edgeSrv    *edge.Server
	logFile    *os.File
	stopOnce   sync.Once
}

// Credentials of the local stack: any non-empty keys work with the emulators.
const (
	AccessKeyID     = "test"
	SecretAccessKey = "test"
)

// StartStack brings the whole stack up, or stops whatever it started and says what failed.
func StartStack(ctx context.Context, o StackOptions) (_ *Stack, err error) {
	if len(o.Sites) == 0 {
		o.Sites = []topology.Site{{Name: "local", Region: "us-east-1", Primary: true}}
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
	if o.TTLPeriod == 0 {
		o.TTLPeriod = 10 * time.Second
	}
	if o.TTLDelay == 0 {
		o.TTLDelay = time.Minute
	}
	logDir := filepath.Join(o.RunDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	// What `cdk deploy` renders: every site knowing every site's notice topic, to which
	// its instances subscribe (cross-region where the sites' regions differ; fauxqs
	// delivers across regions, and the edge holds SNS to the topic's region).
	topos, err := topology.ForDeployment(o.Sites, o.Table)
	if err != nil {
		return nil, err
	}
	var regions []string
	for _, s := range o.Sites {
		if !slices.Contains(regions, s.Region) {
			regions = append(regions, s.Region)
		}
	}
	st := &Stack{Replicas: map[string]*dynamo.Replica{}, ddbServers: map[string]*dynamo.Server{},
		KMS: map[string]*kms.Server{}, kmsServers: map[string]*kms.HTTPServer{}, sealARNs: map[string]string{}, sealValues: o.SealValues}
	defer func() {
		if err != nil {
			st.Stop()
		}
	}()
	if o.EdgePort > 0 {
		if err := emulator.CheckPortFree(o.EdgePort); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}

	// fauxqs (a Node process) starts while the bootstraps build; DynamoDB is in process.
	eo := emulator.Options{Dir: o.Dir, LogDir: logDir, Timeout: o.StartTimeout}
	var (
		wg         sync.WaitGroup
		fqErr, bEr error
		bootstraps map[string]string
	)
	wg.Add(2)
	go func() { defer wg.Done(); st.Fauxqs, fqErr = emulator.StartFauxqs(ctx, eo) }()
	go func() {
		defer wg.Done()
		var ids []string
		for _, f := range topos[0].Functions {
			ids = append(ids, f.ID)
		}
		bootstraps, bEr = BuildFunctions(ctx, filepath.Dir(o.Dir), filepath.Join(o.RunDir, "bin"), ids...)
	}()
	for _, region := range regions {
		r := dynamo.New(dynamo.Options{Region: region, TTLPeriod: o.TTLPeriod, TTLDelay: o.TTLDelay})
		st.Replicas[region] = r
		if st.ddbServers[region], err = r.Listen("127.0.0.1:0"); err != nil {
			wg.Wait()
			return nil, err
		}
	}
	wg.Wait()
	if err := errors.Join(fqErr, bEr); err != nil {
		return nil, err
	}
	o.Logger.Info("emulators up", "fauxqs", st.Fauxqs.Endpoint, "dynamodb regions", regions)

	// SNS and SQS of every region go to fauxqs (it keeps regions apart itself); DynamoDB to
	// the region's replica.
	routes := []edge.Route{{Service: "sns", URL: st.Fauxqs.Endpoint}, {Service: "sqs", URL: st.Fauxqs.Endpoint},
		{Service: "sts", URL: st.Fauxqs.Endpoint}}
	for _, region := range regions {
		routes = append(routes, edge.Route{Service: "dynamodb", Region: region, URL: st.ddbServers[region].URL()})
	}
	kmsRoutes, err := st.startKMS(regions) // sealkeys.go
	if err != nil {
		return nil, err
	}
	routes = append(routes, kmsRoutes...)
	if st.Edge, err = edge.NewGateway(edge.Options{Routes: routes, EnforceAWSRules: !o.WithoutAWSRules}); err != nil {
		return nil, err
	}
	if len(regions) > 1 {
		replicas := make([]*dynamo.Replica, len(regions))
		for i, region := range regions {
			replicas[i] = st.Replicas[region]
		}
		if st.Replicator, err = replication.New(replicas, o.Replication); err != nil {
			return nil, err
		}
	}
	if st.edgeSrv, err = edge.Listen(fmt.Sprintf("127.0.0.1:%d", max(o.EdgePort, 0)), st.Edge); err != nil {
		return nil, err
	}
	if st.logFile, err = os.OpenFile(filepath.Join(logDir, "functions.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
		return nil, err
	}
	for i, topo := range topos {
		s, err := st.startSite(ctx, topo, bootstraps, o, i == 0 && len(topos) == 1)
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", topo.Site.Name, err)
		}
		st.Sites = append(st.Sites, s)
		o.Logger.Info("site up", "site", topo.Site.Name, "region", topo.Site.Region)
	}
	if err := st.makeSealKeys(ctx); err != nil { // sealkeys.go
		return nil, err
	}
	return st, nil
}

// awsConfig reaches the stack through the edge port as a client in region would.
func (st *Stack) awsConfig(region string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		BaseEndpoint: aws.String(st.edgeSrv.URL()),
	}
}

// EdgeURL is the one endpoint SDK clients need, whatever their region.
func (st *Stack) EdgeURL() string { return st.edgeSrv.URL() }

// Site returns the site of that name, nil if there is none.
func (st *Stack) Site(name string) *Site {
	for _, s := range st.Sites {
		if s.Topology.Site.Name == name {
			return s
		}
	}
	return nil
}

// Primary is the site marked primary (the first site if none is).
func (st *Stack) Primary() *Site {
	for _, s := range st.Sites {
		if s.Topology.Site.Primary {
			return s
		}
	}
	if len(st.Sites) == 0 {
		return nil
	}
	return st.Sites[0]
}

// DynamoDBServer is the address of region's DynamoDB behind the edge (tests take the
// table offline by closing it: StopDynamoDB and StartDynamoDB).
func (st *Stack) DynamoDBServer(region string) *dynamo.Server {
	st.ddbMu.Lock()
	defer st.ddbMu.Unlock()
	return st.ddbServers[region]
}

// StopDynamoDB takes region's DynamoDB offline, as an outage would: connections are
// refused, and nothing stored is lost (as on AWS).
func (st *Stack) StopDynamoDB(region string) error {
	st.ddbMu.Lock()
	defer st.ddbMu.Unlock()
	srv, ok := st.ddbServers[region]
	if !ok {
		return fmt.Errorf("no DynamoDB in region %q", region)
	}
	return srv.Close()
}

// StartDynamoDB brings region's DynamoDB back on the address it had.
func (st *Stack) StartDynamoDB(region string) error {
	st.ddbMu.Lock()
	defer st.ddbMu.Unlock()
	srv, ok := st.ddbServers[region]
	if !ok {
		return fmt.Errorf("no DynamoDB in region %q", region)
	}
	n, err := st.Replicas[region].Listen(srv.Addr())
	if err != nil {
		return err
	}
	st.ddbServers[region] = n
	return nil
}

// Stop stops everything StartStack started, functions first. It is safe to call twice.
func (st *Stack) Stop() {
	st.stopOnce.Do(func() {
		for _, s := range st.Sites {
			s.stopFunctions()
		}
		if st.Replicator != nil {
			st.Replicator.Close()
		}
		if st.edgeSrv != nil {
			st.edgeSrv.Close()
		}
		if st.Fauxqs != nil {
			st.Fauxqs.Stop()
		}
		for _, h := range st.kmsServers {
			h.Close()
		}
		st.ddbMu.Lock()
		for region, srv := range st.ddbServers {
			srv.Close()
			st.Replicas[region].Close()
		}
		st.ddbMu.Unlock()
		if st.logFile != nil {
			st.logFile.Close()
		}
	})
}

// Regions lists the stack's regions, in the order of its sites.
func (st *Stack) Regions() []string {
	var rs []string
	for _, s := range st.Sites {
		if !slices.Contains(rs, s.AWS.Region) {
			rs = append(rs, s.AWS.Region)
		}
	}
	return rs
}

// KillRegion loses a region as a disaster would: its DynamoDB changes not yet replicated
// are lost, and every request to any of its services is refused from now on.
func (st *Stack) KillRegion(region string) error {
	if st.Replicator != nil {
		if err := st.Replicator.Kill(region); err != nil {
			return err
		}
	}
	st.Edge.SetRegionFault("", region, edge.FaultRefuse)
	return nil
}
