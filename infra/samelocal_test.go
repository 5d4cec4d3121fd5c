package main

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/sessionha/sessionha/infra/outputs"
	"github.com/sessionha/sessionha/infra/topology"
)

// TestSameTopologyAsLocal reads the synthesized templates back into the terms of
// infra/topology and compares them with topology.For for the same site: the call the
// local provisioner (local/site, local/provision) renders through SDK calls. So what
// `cdk deploy` creates and what `make local` runs are one description: the same topic
// and queue names, every site's notice topic (the peers the client subscribes to), queue
// attributes and redrive, subscriptions with raw delivery and filter policies, the table's
// key, TTL and index, and the functions with their feeds (queues, or the table's stream
// with its mapping's settings and on-failure queue).
func TestSameTopologyAsLocal(t *testing.T) {
	for _, sc := range testCfg.Sites {
		t.Run(sc.Name, func(t *testing.T) {
			want := topoOf(t, sc)
			got := readTopology(t, tpls[sc.Name], sc.Primary)

			if w, g := topicNames(want), slices.Sorted(maps.Values(got.topics)); !slices.Equal(w, g) {
				t.Errorf("topics %v, topology %v", g, w)
			}
			if len(got.queues) != len(want.Queues) {
				t.Errorf("%d queues, topology has %d", len(got.queues), len(want.Queues))
			}
			for _, q := range want.Queues {
				g, ok := got.queues[q.Name]
				if !ok {
					t.Errorf("queue %s missing", q.Name)
					continue
				}
				w := queueView{Visibility: q.VisibilityTimeout, Retention: q.Retention}
				if q.DLQ != "" {
					dlq, _ := want.Queue(q.DLQ)
					w.DLQ, w.MaxReceiveCount = dlq.Name, q.MaxReceiveCount
				}
				if g != w {
					t.Errorf("queue %s: template %+v, topology %+v", q.Name, g, w)
				}
			}
			var wantSubs []subView
			for _, s := range want.Subscriptions {
				tp, _ := want.Topic(s.Topic)
				q, _ := want.Queue(s.Queue)
				wantSubs = append(wantSubs, subView{Topic: tp.Name, Queue: q.Name, Raw: s.RawDelivery, Filter: canonical(t, s.FilterPolicy)})
			}
			sortSubs(wantSubs)
			if !reflect.DeepEqual(got.subs, wantSubs) {
				t.Errorf("subscriptions\n template %+v\n topology %+v", got.subs, wantSubs)
			}
			var wantFns []fnView
			for _, f := range want.Functions {
				q, _ := want.Queue(f.Queue)
				v := fnView{Name: f.Name, Queue: q.Name, BatchSize: f.BatchSize,
					Window: f.BatchingWindow, MaxConcurrency: f.MaxConcurrency, Timeout: f.Timeout}
				if src := f.Stream; src != nil {
					dlq, _ := want.Queue(src.OnFailure)
					v.Stream = &streamView{StartingPosition: src.StartingPosition, Retries: src.RetryAttempts, MaxAge: src.MaxRecordAge,
						Bisect: src.BisectOnError, OnFailure: dlq.Name}
				}
				wantFns = append(wantFns, v)
			}
			slices.SortFunc(wantFns, func(a, b fnView) int { return cmpStr(a.Name, b.Name) })
			if !reflect.DeepEqual(got.fns, wantFns) {
				t.Errorf("functions\n template %+v\n topology %+v", got.fns, wantFns)
			}
			if peers := readPeers(t, tpls[sc.Name], got, sc.Region); !reflect.DeepEqual(peers, want.Peers) {
				t.Errorf("notice topics of every site (output %s)\n template %+v\n topology %+v", outputs.NoticeTopicARNs, peers, want.Peers)
			}
			if sc.Primary {
				if !reflect.DeepEqual(got.table, want.Table) {
					t.Errorf("table\n template %+v\n topology %+v", got.table, want.Table)
				}
			} else if got.table.Name != "" {
				t.Errorf("site %s is not primary but its stack has a table", sc.Name)
			}
		})
	}
}

// TestFilterPolicyVerbatim: a topology subscription's filter policy reaches the template
// as the same JSON document the local provisioner hands SNS. The example topology has
// none (the ops queue must see everything), so render one with a filter.
func TestFilterPolicyVerbatim(t *testing.T) {
	sc := siteNamed(testCfg.primary().Name)
	topo := topoOf(t, sc)
	const policy = `{"kind":["query"],"size":[{"numeric":["<",4096]}],"site":[{"anything-but":["x"]}]}`
	for i := range topo.Subscriptions {
		if topo.Subscriptions[i].Topic == topology.TopicQuery {
			topo.Subscriptions[i].FilterPolicy = policy
		}
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir())})
	cfg := testCfg
	cfg.Sites = []SiteConfig{sc}
	st, err := newSiteStack(app, cfg, sc, topo, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := readTopology(t, *templatesFromStack(st), true)
	for _, s := range got.subs {
		want := ""
		if s.Topic == "sessionha-"+sc.Name+"-query" {
			want = canonical(t, policy)
		}
		if s.Filter != want {
			t.Errorf("subscription %s -> %s: filter %s, want %s", s.Topic, s.Queue, s.Filter, want)
		}
	}
}

// The template, read back in the topology's terms.
type (
	readBack struct {
		topics map[string]string // logical id -> name
		queues map[string]queueView
		subs   []subView
		fns    []fnView
		table  topology.Table
	}
	queueView struct {
		Visibility, Retention time.Duration
		DLQ                   string
		MaxReceiveCount       int
	}
	subView struct {
		Topic, Queue string
		Raw          bool
		Filter       string // canonical JSON, "" for none
	}
	fnView struct {
		Name, Queue               string // Queue "" for a function fed by the table's stream
		BatchSize, MaxConcurrency int
		Window, Timeout           time.Duration
		Stream                    *streamView
	}
	streamView struct {
		StartingPosition string
		Retries          int
		MaxAge           time.Duration
		Bisect           bool
		OnFailure        string // queue name
	}
)

func readTopology(t *testing.T, tpl map[string]any, primary bool) readBack {
	t.Helper()
	rb := readBack{topics: map[string]string{}, queues: map[string]queueView{}}
	for _, r := range resources(tpl, "AWS::SNS::Topic") {
		rb.topics[r.ID] = str(r.Props["TopicName"])
	}
	queueName := map[string]string{}
	for _, r := range resources(tpl, "AWS::SQS::Queue") {
		queueName[r.ID] = str(r.Props["QueueName"])
	}
	for _, r := range resources(tpl, "AWS::SQS::Queue") {
		v := queueView{Visibility: secs(r.Props["VisibilityTimeout"]), Retention: secs(r.Props["MessageRetentionPeriod"])}
		if rp, ok := r.Props["RedrivePolicy"].(map[string]any); ok {
			v.DLQ = queueName[refID(rp["deadLetterTargetArn"])]
			v.MaxReceiveCount = int(num(rp["maxReceiveCount"]))
		}
		rb.queues[queueName[r.ID]] = v
	}
	for _, r := range resources(tpl, "AWS::SNS::Subscription") {
		if r.Props["Protocol"] != "sqs" {
			t.Errorf("subscription %s: protocol %v", r.ID, r.Props["Protocol"])
		}
		s := subView{Topic: rb.topics[refID(r.Props["TopicArn"])], Queue: queueName[refID(r.Props["Endpoint"])], Raw: r.Props["RawMessageDelivery"] == true}
		if fp, ok := r.Props["FilterPolicy"]; ok {
			b, _ := json.Marshal(fp)
			s.Filter = canonical(t, string(b))
		}
		rb.subs = append(rb.subs, s)
	}
	sortSubs(rb.subs)
	fnName := map[string]string{}
	fnTimeout := map[string]time.Duration{}
	for _, r := range resources(tpl, "AWS::Lambda::Function") {
		if r.Props["FunctionName"] == nil {
			continue // the CDK's own (the replica stream's lookup): no function of the topology
		}
		fnName[r.ID] = str(r.Props["FunctionName"])
		fnTimeout[r.ID] = secs(r.Props["Timeout"])
	}
	for _, r := range resources(tpl, "AWS::Lambda::EventSourceMapping") {
		fn := refID(r.Props["FunctionName"])
		sc, _ := r.Props["ScalingConfig"].(map[string]any)
		v := fnView{
			Name: fnName[fn], Queue: queueName[refID(r.Props["EventSourceArn"])],
			BatchSize: int(num(r.Props["BatchSize"])), MaxConcurrency: int(num(sc["MaximumConcurrency"])),
			Window: secs(r.Props["MaximumBatchingWindowInSeconds"]), Timeout: fnTimeout[fn],
		}
		if pos, ok := r.Props["StartingPosition"]; ok { // a stream's mapping
			dc, _ := r.Props["DestinationConfig"].(map[string]any)
			of, _ := dc["OnFailure"].(map[string]any)
			v.Stream = &streamView{StartingPosition: str(pos), Retries: int(num(r.Props["MaximumRetryAttempts"])),
				MaxAge: secs(r.Props["MaximumRecordAgeInSeconds"]), Bisect: r.Props["BisectBatchOnFunctionError"] == true,
				OnFailure: queueName[refID(of["Destination"])]}
		}
		rb.fns = append(rb.fns, v)
	}
	if len(rb.fns) != len(fnName) {
		t.Errorf("%d functions but %d event source mappings", len(fnName), len(rb.fns))
	}
	slices.SortFunc(rb.fns, func(a, b fnView) int { return cmpStr(a.Name, b.Name) })
	for _, r := range resources(tpl, "AWS::DynamoDB::GlobalTable") {
		rb.table = readTable(t, r)
	}
	return rb
}

// readPeers reads the stack's list of every site's notice topic (its output, which the
// env file hands the client) back as the topology's Peers: the stack's own topic by
// reference, the others as ARNs naming their region and topic. The site a peer is comes
// from its topic's name (sessionha-<site>-notice).
func readPeers(t *testing.T, tpl map[string]any, rb readBack, region string) []topology.Peer {
	t.Helper()
	outs, _ := tpl["Outputs"].(map[string]any)
	o, _ := outs[outputs.LogicalID(outputs.NoticeTopicARNs)].(map[string]any)
	if o == nil {
		t.Errorf("no output %s", outputs.NoticeTopicARNs)
		return nil
	}
	var peers []topology.Peer
	for _, arn := range strings.Split(flat(o["Value"]), ",") {
		p := topology.Peer{Region: region}
		if id, ok := strings.CutPrefix(arn, "<"); ok {
			p.NoticeTopic = rb.topics[strings.TrimSuffix(id, ">")]
		} else if f := strings.Split(arn, ":"); len(f) >= 6 && f[len(f)-4] == "sns" { // the partition is <AWS::Partition>
			p.Region, p.NoticeTopic = f[len(f)-3], f[len(f)-1]
		} else {
			t.Errorf("output %s: %q is not a topic's ARN", outputs.NoticeTopicARNs, arn)
		}
		site := strings.TrimSuffix(strings.TrimPrefix(p.NoticeTopic, "sessionha-"), "-notice")
		p.Site = site
		peers = append(peers, p)
	}
	return peers
}

// readTable reads a GlobalTable back as a topology.Table, checking the attribute types
// the topology implies (keys are strings, index sort keys numbers).
func readTable(t *testing.T, r res) topology.Table {
	types := map[string]string{}
	for _, a := range list(r.Props["AttributeDefinitions"]) {
		a := a.(map[string]any)
		types[str(a["AttributeName"])] = str(a["AttributeType"])
	}
	key := func(schema any, kind string) string {
		for _, k := range list(schema) {
			k := k.(map[string]any)
			if k["KeyType"] == kind {
				return str(k["AttributeName"])
			}
		}
		return ""
	}
	tb := topology.Table{Name: str(r.Props["TableName"]), PartitionKey: key(r.Props["KeySchema"], "HASH")}
	if types[tb.PartitionKey] != "S" {
		t.Errorf("table key %s has type %s, want S", tb.PartitionKey, types[tb.PartitionKey])
	}
	if ttl, ok := r.Props["TimeToLiveSpecification"].(map[string]any); ok && ttl["Enabled"] == true {
		tb.TTLAttribute = str(ttl["AttributeName"])
	}
	for _, g := range list(r.Props["GlobalSecondaryIndexes"]) {
		g := g.(map[string]any)
		proj, _ := g["Projection"].(map[string]any)
		ix := topology.Index{Name: str(g["IndexName"]), PartitionKey: key(g["KeySchema"], "HASH"), SortKey: key(g["KeySchema"], "RANGE")}
		if proj["ProjectionType"] != "INCLUDE" {
			t.Errorf("index %s: projection %v, want INCLUDE", ix.Name, proj["ProjectionType"])
		}
		for _, a := range list(proj["NonKeyAttributes"]) {
			ix.Include = append(ix.Include, str(a))
		}
		if types[ix.PartitionKey] != "S" || types[ix.SortKey] != "N" {
			t.Errorf("index %s: key types %s/%s, want S/N", ix.Name, types[ix.PartitionKey], types[ix.SortKey])
		}
		tb.Indexes = append(tb.Indexes, ix)
	}
	return tb
}

func topicNames(t topology.Topology) []string {
	var names []string
	for _, tp := range t.Topics {
		names = append(names, tp.Name)
	}
	slices.Sort(names)
	return names
}

func sortSubs(s []subView) {
	slices.SortFunc(s, func(a, b subView) int { return cmpStr(a.Topic+" "+a.Queue, b.Topic+" "+b.Queue) })
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// canonical re-encodes a JSON document with sorted keys, so that equal policies compare equal.
func canonical(t *testing.T, doc string) string {
	t.Helper()
	if doc == "" {
		return ""
	}
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("filter policy %q: %v", doc, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func num(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case string:
		f, _ := strconv.ParseFloat(n, 64)
		return f
	}
	return 0
}

func secs(v any) time.Duration { return time.Duration(num(v) * float64(time.Second)) }

func templatesFromStack(st awscdk.Stack) *map[string]any {
	return assertions.Template_FromStack(st, nil).ToJSON()
}
