package topology

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionha/sessionha/internal/retry"
)

func TestForDefaults(t *testing.T) {
	top, err := For(Site{Name: "eu-1", Region: "eu-west-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if top.Table.Name != DefaultTable || top.Table.TTLAttribute != "expiresAt" || top.Table.PartitionKey != "pk" {
		t.Errorf("table %+v", top.Table)
	}
	ops, _ := top.Queue(QueueOps)
	if ops.DLQ != QueueOpsDLQ || ops.MaxReceiveCount != 20 || ops.VisibilityTimeout != time.Minute {
		t.Errorf("ops queue %+v", ops)
	}
	for _, q := range top.Queues {
		if !strings.HasPrefix(q.Name, "sessionha-eu-1-") {
			t.Errorf("queue name %q does not carry the site", q.Name)
		}
		if strings.HasSuffix(q.ID, "dlq") != strings.HasSuffix(q.Name, "-dlq") {
			t.Errorf("queue %q: a DLQ's name must end in -dlq", q.Name)
		}
	}
	for _, s := range top.Subscriptions {
		if s.Topic == TopicOps && s.FilterPolicy != "" {
			t.Error("the ops queue must take every message on the ops topic")
		}
		if !s.RawDelivery {
			t.Errorf("subscription %s->%s is not raw", s.Topic, s.Queue)
		}
	}
	if len(top.Topics) != 5 {
		t.Errorf("%d topics, want ops, query, reply, notice, lifecycle", len(top.Topics))
	}
}

// TestLifecycleFunction: the lifecycle function is fed by the table's stream, publishes
// on the lifecycle topic, and gives up on a batch into a DLQ that operators watch like the
// others.
func TestLifecycleFunction(t *testing.T) {
	top, err := For(Site{Name: "eu", Region: "eu-west-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	f, ok := top.Function(FunctionLifecycle)
	if !ok || f.ID != FunctionLifecycle {
		t.Fatalf("no lifecycle function: %+v", f)
	}
	if _, ok := top.Function("no-such-function"); ok {
		t.Fatal("Function found a function of an unknown ID")
	}
	if f.Queue != "" || f.Stream == nil {
		t.Fatalf("lifecycle fed by queue %q, stream %+v; want the table's stream", f.Queue, f.Stream)
	}
	dlq, ok := top.Queue(f.Stream.OnFailure)
	if !ok || !strings.HasSuffix(dlq.Name, "-dlq") || !top.DeadLetterQueues()[dlq.ID] {
		t.Errorf("on-failure destination %q: %+v (a DLQ: %v)", f.Stream.OnFailure, dlq, top.DeadLetterQueues()[dlq.ID])
	}
	if s := f.Stream; !s.BisectOnError || s.RetryAttempts <= 0 || s.MaxRecordAge <= 0 || s.StartingPosition != "TRIM_HORIZON" {
		t.Errorf("stream source %+v", s)
	}
	if tp, ok := top.Topic(TopicLifecycle); !ok || tp.EnvVar != "SESSIONHA_LIFECYCLE_TOPIC_ARN" || f.Env["SESSIONHA_LIFECYCLE_TOPIC_ARN"] != "topic:"+TopicLifecycle || f.Env["SESSIONHA_SITE"] != "eu" {
		t.Errorf("topic %+v, env %v", tp, f.Env)
	}
	for _, sub := range top.Subscriptions {
		if sub.Topic == TopicLifecycle {
			t.Errorf("the site subscribes %s to the lifecycle topic: it is for others", sub.Queue)
		}
	}
}

func TestForRejectsBadInput(t *testing.T) {
	for _, s := range []Site{
		{Name: "Bad_Name", Region: "us-east-1"},
		{Name: "ok"},
		{Name: "ok", Region: "us-east-1", Settings: Settings{BatchSize: 11}},
		{Name: "ok", Region: "us-east-1", Settings: Settings{MaxConcurrency: 1}},
		{Name: "ok", Region: "us-east-1", Settings: Settings{ClockTolerance: 2 * time.Hour}},
	} {
		if _, err := For(s, ""); err == nil {
			t.Errorf("For(%+v) accepted", s)
		}
	}
}

// TestDefaultRetryCoversLongOutage: with the default settings a valid op that fails
// every receive (the table is down) is retried for well over 30 minutes before its queue
// dead-letters it, by the schedule the functions hide messages on (internal/retry, the
// same code): the least waits, jitter taken off, over maxReceiveCount−1 receives.
func TestDefaultRetryCoversLongOutage(t *testing.T) {
	s := Settings{}.WithDefaults()
	sched := retry.Schedule{Base: s.RetryBase, Max: s.RetryMax}
	if err := sched.Validate(); err != nil {
		t.Fatal(err)
	}
	covered := sched.Before(s.MaxReceiveCount)
	if covered < 45*time.Minute {
		t.Errorf("the default schedule (base %s, max %s, maxReceiveCount %d) retries for at least %s before the DLQ; want well over 30 min",
			s.RetryBase, s.RetryMax, s.MaxReceiveCount, covered)
	}
	t.Logf("default schedule: base %s, max %s, maxReceiveCount %d: at least %s before the DLQ", s.RetryBase, s.RetryMax, s.MaxReceiveCount, covered)
	// Lambda's guidance for a queue feeding a function: visibility at least 6 × its timeout.
	if s.VisibilityTimeout < 6*s.FunctionTimeout {
		t.Errorf("visibility timeout %s is under 6 × the function timeout %s", s.VisibilityTimeout, s.FunctionTimeout)
	}
	// The old default (5 receives, no backoff: the 60 s visibility timeout) covered 4 min.
	if old := 4 * s.VisibilityTimeout; covered < 10*old {
		t.Errorf("covered %s: not far beyond the old %s", covered, old)
	}
}

// TestFunctionsRetryEnv: the functions get their queue, its DLQ and the retry settings
// in their environment, as the renderers resolve them.
func TestFunctionsRetryEnv(t *testing.T) {
	top, err := For(Site{Name: "eu", Region: "eu-west-1", Settings: Settings{RetryBase: 2 * time.Second, RetryMax: time.Minute, QueryMaxAge: 20 * time.Second}}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		FunctionSessionOp: {"SESSIONHA_QUEUE_URL": "queue:" + QueueOps, "SESSIONHA_DLQ_URL": "queue:" + QueueOpsDLQ,
			"SESSIONHA_RETRY_BASE": "2s", "SESSIONHA_RETRY_MAX": "1m0s"},
		FunctionSessionQuery: {"SESSIONHA_QUEUE_URL": "queue:" + QueueQuery, "SESSIONHA_DLQ_URL": "queue:" + QueueQueryDLQ,
			"SESSIONHA_QUERY_MAX_AGE": "20s"},
	}
	for _, f := range top.Functions {
		if f.Stream != nil {
			continue // no queue: its mapping gives up into its on-failure destination
		}
		q, _ := top.Queue(f.Queue)
		if f.Env["SESSIONHA_DLQ_URL"] != "queue:"+q.DLQ {
			t.Errorf("%s: DLQ %s, but its queue's DLQ is %s", f.ID, f.Env["SESSIONHA_DLQ_URL"], q.DLQ)
		}
		for k, v := range want[f.ID] {
			if f.Env[k] != v {
				t.Errorf("%s: %s=%q, want %q", f.ID, k, f.Env[k], v)
			}
		}
	}
}

func TestRetrySettingsValidated(t *testing.T) {
	for _, tc := range []struct {
		s    Settings
		want string
	}{
		{Settings{RetryBase: 500 * time.Millisecond}, "RetryBase"},
		{Settings{RetryBase: time.Minute, RetryMax: 30 * time.Second}, "RetryMax"},
		{Settings{RetryMax: 13 * time.Hour}, "RetryMax"},
		{Settings{QueryMaxAge: 2 * time.Hour}, "QueryMaxAge"},
	} {
		if _, err := For(Site{Name: "ok", Region: "us-east-1", Settings: tc.s}, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.s, err, tc.want)
		}
	}
	if s := (Settings{RetryBase: 10 * time.Minute}).WithDefaults(); s.RetryMax != 10*time.Minute {
		t.Errorf("a base above the default cap: max %s, want the base", s.RetryMax)
	}
}

func TestReadCDKJSONRetrySettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cdk.json")
	doc := `{"context":{"sites":[{"name":"eu","region":"eu-west-1","primary":true,
		"settings":{"maxReceiveCount":30,"retryBase":"5s","retryMax":"2m","queryMaxAge":"15s"}}]}}`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := ReadCDKJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	s := d.Sites[0].Settings
	if s.MaxReceiveCount != 30 || s.RetryBase != 5*time.Second || s.RetryMax != 2*time.Minute || s.QueryMaxAge != 15*time.Second {
		t.Errorf("settings %+v", s)
	}
	// The project's own cdk.json deploys a schedule that covers a long outage too.
	d, err = ReadCDKJSON(filepath.Join("..", "..", "cdk.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, site := range d.Sites {
		s := site.Settings.WithDefaults()
		if got := (retry.Schedule{Base: s.RetryBase, Max: s.RetryMax}).Before(s.MaxReceiveCount); got < 45*time.Minute {
			t.Errorf("cdk.json site %s retries for at least %s before the DLQ; want well over 30 min", site.Name, got)
		}
	}
}

// TestForDeploymentPeers: every site of a deployment knows every site's notice topic,
// its own first, then the others in the deployment's order; a lone site knows itself.
func TestForDeploymentPeers(t *testing.T) {
	sites := []Site{{Name: "eu", Region: "eu-west-1", Primary: true}, {Name: "us", Region: "us-east-1"}, {Name: "ap", Region: "ap-southeast-2"}}
	topos, err := ForDeployment(sites, "")
	if err != nil {
		t.Fatal(err)
	}
	peer := func(name, region string) Peer {
		return Peer{Site: name, Region: region, NoticeTopic: "sessionha-" + name + "-notice"}
	}
	eu, us, ap := peer("eu", "eu-west-1"), peer("us", "us-east-1"), peer("ap", "ap-southeast-2")
	want := map[string][]Peer{"eu": {eu, us, ap}, "us": {us, eu, ap}, "ap": {ap, eu, us}}
	for _, topo := range topos {
		if got := topo.Peers; !slices.Equal(got, want[topo.Site.Name]) {
			t.Errorf("site %s: peers %+v, want %+v", topo.Site.Name, got, want[topo.Site.Name])
		}
		notice, _ := topo.Topic(TopicNotice)
		if topo.Peers[0].NoticeTopic != notice.Name {
			t.Errorf("site %s: its own peer names topic %s, its notice topic is %s", topo.Site.Name, topo.Peers[0].NoticeTopic, notice.Name)
		}
	}
	alone, err := For(sites[1], "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alone.Peers, []Peer{us}) {
		t.Errorf("a lone site's peers %+v, want itself", alone.Peers)
	}
	if got := us.NoticeTopicARN("aws", "123456789012"); got != "arn:aws:sns:us-east-1:123456789012:sessionha-us-notice" {
		t.Errorf("NoticeTopicARN = %s", got)
	}
	if _, err := ForDeployment([]Site{sites[0], sites[0]}, ""); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a site listed twice: %v", err)
	}
	if _, err := ForDeployment([]Site{sites[0], {Name: "Bad_Name", Region: "us-east-1"}}, ""); err == nil {
		t.Error("a bad site accepted")
	}
	if _, err := ForDeployment(nil, ""); err == nil {
		t.Error("no sites accepted")
	}
}
