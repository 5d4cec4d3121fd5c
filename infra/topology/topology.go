// Package topology is the one description of a sessionha site's resources: the session
// table, the topics, the queues with their dead-letter queues, the subscriptions and the
// functions fed by them. The CDK app (infra) and the local provisioner (local/provision)
// both render it, so what runs on a laptop is what `cdk deploy` creates.
//
// It is plain Go with no AWS or CDK imports: a program that renders it pulls in nothing.
package topology

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Settings are the per-site knobs; the zero value means the defaults named on each field.
type Settings struct {
	// BatchSize is the SQS event source mapping's batch size. Default 10.
	BatchSize int
	// BatchingWindow is how long the mapping gathers a batch. Default 0 (invoke at once).
	BatchingWindow time.Duration
	// MaxConcurrency caps concurrent invocations per queue. Default 4 (AWS's minimum is 2).
	MaxConcurrency int
	// FunctionTimeout is each function's timeout. Default 10 s.
	FunctionTimeout time.Duration
	// VisibilityTimeout of the function queues. Default 6 × FunctionTimeout, as AWS
	// advises for queues feeding Lambda.
	VisibilityTimeout time.Duration
	// MaxReceiveCount is how many receives a message gets before the queue moves it to
	// its DLQ. Default 20: with the default retry waits a valid op that keeps failing (a
	// table outage, throttling) is retried for at least an hour before it is
	// dead-lettered (8+16+32+64+128 s, then 14 × 240 s: the waits less their jitter). A
	// message that can never apply does not count on it: the function dead-letters it at
	// its first receive.
	MaxReceiveCount int
	// RetryBase is how long a function hides a message whose receive failed for a reason
	// that may pass, after the first receive; each further receive waits twice as long,
	// up to RetryMax, less up to 20 % at random (internal/retry). Default 10 s.
	RetryBase time.Duration
	// RetryMax caps the wait between retries: after an outage ends, an op waits at most
	// this long to be applied. Default 5 min.
	RetryMax time.Duration
	// QueryMaxAge is the age (since the query reached its queue) past which sessionquery
	// drops a failover query instead of answering or retrying it: its client has stopped
	// waiting (MaxWait, 5 s by default) and answers ErrTimeout. Keep it above the longest
	// MaxWait of the site's clients. Default 30 s.
	QueryMaxAge time.Duration
	// TombstoneGrace is how long a tombstone outlives its session's latest possible
	// deadline (and at least its destroy), and an ended session its deadline, so that
	// late messages still find them; it must cover the clock skew between auth servers.
	// Default 30 min.
	TombstoneGrace time.Duration
	// ClockTolerance is how far ahead of the functions' clock an op's times may be
	// before they are clamped. Default 30 s.
	ClockTolerance time.Duration
}

// WithDefaults fills every zero field with its default.
func (s Settings) WithDefaults() Settings {
	if s.BatchSize == 0 {
		s.BatchSize = 10
	}
	if s.MaxConcurrency == 0 {
		s.MaxConcurrency = 4
	}
	if s.FunctionTimeout == 0 {
		s.FunctionTimeout = 10 * time.Second
	}
	if s.VisibilityTimeout == 0 {
		s.VisibilityTimeout = 6 * s.FunctionTimeout
	}
	if s.MaxReceiveCount == 0 {
		s.MaxReceiveCount = 20
	}
	if s.RetryBase == 0 {
		s.RetryBase = 10 * time.Second
	}
	if s.RetryMax == 0 {
		s.RetryMax = max(5*time.Minute, s.RetryBase)
	}
	if s.QueryMaxAge == 0 {
		s.QueryMaxAge = 30 * time.Second
	}
	if s.TombstoneGrace == 0 {
		s.TombstoneGrace = 30 * time.Minute
	}
	if s.ClockTolerance == 0 {
		s.ClockTolerance = 30 * time.Second
	}
	return s
}

// maxRetry is the longest retry wait: SQS hides a message at most 12 h from its receive,
// and the invocation that received it counts (internal/retry.MaxDelay).
const maxRetry = 11 * time.Hour

// Validate reports the first setting out of range, naming it.
func (s Settings) Validate() error {
	switch {
	case s.BatchSize < 1 || s.BatchSize > 10:
		return fmt.Errorf("topology: BatchSize %d out of range 1-10", s.BatchSize)
	case s.MaxConcurrency < 2 || s.MaxConcurrency > 1000:
		return fmt.Errorf("topology: MaxConcurrency %d out of range 2-1000", s.MaxConcurrency)
	case s.BatchingWindow < 0 || s.BatchingWindow > 5*time.Minute:
		return fmt.Errorf("topology: BatchingWindow %s out of range 0-5m", s.BatchingWindow)
	case s.FunctionTimeout < time.Second || s.FunctionTimeout > 15*time.Minute:
		return fmt.Errorf("topology: FunctionTimeout %s out of range 1s-15m", s.FunctionTimeout)
	case s.VisibilityTimeout < time.Second || s.VisibilityTimeout > 12*time.Hour:
		return fmt.Errorf("topology: VisibilityTimeout %s out of range 1s-12h", s.VisibilityTimeout)
	case s.MaxReceiveCount < 1 || s.MaxReceiveCount > 1000:
		return fmt.Errorf("topology: MaxReceiveCount %d out of range 1-1000", s.MaxReceiveCount)
	case s.TombstoneGrace < time.Second:
		return fmt.Errorf("topology: TombstoneGrace %s below 1s", s.TombstoneGrace)
	case s.RetryBase < time.Second || s.RetryBase > maxRetry:
		return fmt.Errorf("topology: RetryBase %s out of range 1s-%s (SQS visibility timeouts are whole seconds, at most 12h)", s.RetryBase, maxRetry)
	case s.RetryMax < s.RetryBase || s.RetryMax > maxRetry:
		return fmt.Errorf("topology: RetryMax %s out of range RetryBase (%s) to %s", s.RetryMax, s.RetryBase, maxRetry)
	case s.QueryMaxAge < time.Second || s.QueryMaxAge > time.Hour:
		return fmt.Errorf("topology: QueryMaxAge %s out of range 1s-1h", s.QueryMaxAge)
	case s.ClockTolerance < time.Second || s.ClockTolerance > time.Hour:
		return fmt.Errorf("topology: ClockTolerance %s out of range 1s-1h", s.ClockTolerance)
	}
	return nil
}

// Site names one deployment of the functions and the bus in one region.
type Site struct {
	Name     string // [a-z0-9-]{1,32}; part of every resource name
	Region   string
	Primary  bool // the site whose region holds the table's primary replica
	Settings Settings
}

// Table is the session table (a global table when several regions share it).
type Table struct {
	Name         string
	PartitionKey string // string key
	TTLAttribute string // epoch seconds
	Indexes      []Index
}

// Index is a global secondary index of the table.
type Index struct {
	Name         string
	PartitionKey string   // string key
	SortKey      string   // number key
	Include      []string // non-key attributes projected into the index
}

// Topic is an SNS topic; EnvVar is the SESSIONHA_* variable (and stack output) holding its ARN.
type Topic struct {
	ID     string // logical id: ops, query, reply, notice
	Name   string
	EnvVar string
}

// Queue is an SQS queue. A queue with a DLQ has DLQ set to the DLQ's ID.
type Queue struct {
	ID                string
	Name              string
	DLQ               string // ID of its dead-letter queue, "" for none
	MaxReceiveCount   int    // with DLQ
	VisibilityTimeout time.Duration
	Retention         time.Duration
}

// Subscription feeds a queue from a topic.
type Subscription struct {
	Topic        string // topic ID
	Queue        string // queue ID
	RawDelivery  bool   // the message body is the published message, attributes become SQS attributes
	FilterPolicy string // JSON, "" for none (every message)
}

// Function is a Lambda function fed by a queue, or by the session table's stream.
type Function struct {
	ID             string // folder under functions/: sessionop, sessionquery, lifecycle
	Name           string
	Queue          string // queue ID of its event source; "" for a function fed by Stream
	Stream         *StreamSource
	BatchSize      int
	BatchingWindow time.Duration
	MaxConcurrency int
	Timeout        time.Duration
	// Env lists the function's environment: variable -> value, where a value of the form
	// "table:name", "topic:ID" or "queue:ID" is resolved by the renderer.
	Env map[string]string
}

// StreamSource feeds a function from the session table's stream in the site's region (the
// replica's, on AWS; the emulator's change feed, locally): a Lambda event source mapping
// of DynamoDB Streams, with partial batch failures (ReportBatchItemFailures).
type StreamSource struct {
	// StartingPosition is where a new mapping starts reading: "TRIM_HORIZON" (the oldest
	// record the stream keeps, 24 h) or "LATEST".
	StartingPosition string
	// RetryAttempts bounds the retries of a failed batch (0-10000), MaxRecordAge the age
	// of a record still retried; past either the batch goes to OnFailure.
	RetryAttempts int
	MaxRecordAge  time.Duration
	// BisectOnError splits a failed batch in two before retrying, so that what fails is
	// narrowed down to the records that fail.
	BisectOnError bool
	// OnFailure is the queue ID of the mapping's on-failure destination: a message per
	// discarded batch (its shard and sequence numbers, not its records).
	OnFailure string
}

// Topology is every resource of one site, and what the site knows of the other sites
// of its deployment.
type Topology struct {
	Site          Site
	Table         Table
	Topics        []Topic
	Queues        []Queue
	Subscriptions []Subscription
	Functions     []Function
	SealKey       SealKey
	// Peers are the notice topics of every site of the deployment, this one's first, then
	// the others in the deployment's order: each auth server instance subscribes its own
	// queue to all of them (cross-region subscriptions where a peer is in another
	// region), so that a destroy notice with scope "all", and a superseded notice for the
	// instance from any site, reaches it. The client takes their ARNs from NoticeTopicsEnvVar.
	Peers []Peer
}

// SealKey is the site's KMS key that wraps the data keys sealing attribute values
// (client/kmskeys): the auth servers may decrypt with it, the functions may not.
type SealKey struct {
	Alias  string // alias/sessionha-<site>-seal
	EnvVar string // the variable (and stack output) holding its ARN
}

// The encryption context of every data key the seal key wraps: the auth servers'
// policies allow kms:Decrypt only with it, so that the key unwraps seal keys and nothing
// else, and each wrapped key opens only under the id it was made for.
const (
	SealContextPurposeKey = "sessionha-purpose"
	SealContextPurpose    = "seal"
	SealContextKeyID      = "sessionha-key-id"
)

// Peer is one site of the deployment as another site's instances see it: where its
// notice topic is. Its ARN is the renderer's to make (the CDK app from the account and
// partition tokens, without cross-stack references; the local stack from what it
// provisioned), from NoticeTopicARN.
type Peer struct {
	Site        string // the site's name
	Region      string // the site's region: SNS takes a call about the topic only there
	NoticeTopic string // the name of its notice topic
}

// NoticeTopicARN is the ARN of the peer's notice topic in the given partition ("aws")
// and account.
func (p Peer) NoticeTopicARN(partition, account string) string {
	return "arn:" + partition + ":sns:" + p.Region + ":" + account + ":" + p.NoticeTopic
}

// NoticeTopicsEnvVar is the variable (and stack output) listing the notice topic ARNs of
// every site, this site's first, comma-separated.
const NoticeTopicsEnvVar = "SESSIONHA_NOTICE_TOPIC_ARNS"

// Names of things, shared by the renderers and the client's environment.
const (
	TopicOps    = "ops"
	TopicQuery  = "query"
	TopicReply  = "reply"
	TopicNotice = "notice"
	// TopicLifecycle carries sessions' lifecycle events (events.Lifecycle) for operators,
	// auditors and the apps' instances; nothing of the site subscribes to it.
	TopicLifecycle = "lifecycle"

	QueueOps      = "ops"
	QueueOpsDLQ   = "ops-dlq"
	QueueQuery    = "query"
	QueueQueryDLQ = "query-dlq"
	// QueueLifecycleDLQ is the lifecycle function's stream mapping's on-failure
	// destination: the batches it gave up on.
	QueueLifecycleDLQ = "lifecycle-dlq"

	FunctionSessionOp    = "sessionop"
	FunctionSessionQuery = "sessionquery"
	FunctionLifecycle    = "lifecycle"

	PartitionKey = "pk"
	TTLAttribute = "expiresAt"

	// IndexByPrincipal lists a user's sessions: cluster#principal, then creation time.
	IndexByPrincipal = "byPrincipal"
)

var siteName = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// DefaultTable is the session table's name: fixed, so that every site's stack and the
// global table's replicas agree on it without cross-stack references.
const DefaultTable = "sessionha-sessions"

// For describes a site. table is the deployment's table name ("" for DefaultTable).
func For(site Site, table string) (Topology, error) {
	if !siteName.MatchString(site.Name) {
		return Topology{}, fmt.Errorf("topology: site name %q: want 1-32 characters of a-z, 0-9 and -", site.Name)
	}
	if site.Region == "" {
		return Topology{}, fmt.Errorf("topology: site %q has no region", site.Name)
	}
	site.Settings = site.Settings.WithDefaults()
	if err := site.Settings.Validate(); err != nil {
		return Topology{}, fmt.Errorf("site %q: %w", site.Name, err)
	}
	if table == "" {
		table = DefaultTable
	}
	s := site.Settings
	name := func(part string) string { return "sessionha-" + site.Name + "-" + part }
	const retention = 4 * 24 * time.Hour // SQS's default; DLQs keep 14 days for operators
	t := Topology{
		Site:  site,
		Peers: []Peer{{Site: site.Name, Region: site.Region, NoticeTopic: name("notice")}},
		Table: Table{Name: table, PartitionKey: PartitionKey, TTLAttribute: TTLAttribute, Indexes: []Index{{
			Name: IndexByPrincipal, PartitionKey: "upk", SortKey: "cr",
			// What List needs to show a session and filter out expired ones, without the attributes.
			Include: []string{"st", "grp", "la", "mi", "ml", "site", TTLAttribute},
		}}},
		Topics: []Topic{
			{ID: TopicOps, Name: name("ops"), EnvVar: "SESSIONHA_OPS_TOPIC_ARN"},
			{ID: TopicQuery, Name: name("query"), EnvVar: "SESSIONHA_QUERY_TOPIC_ARN"},
			{ID: TopicReply, Name: name("reply"), EnvVar: "SESSIONHA_REPLY_TOPIC_ARN"},
			{ID: TopicNotice, Name: name("notice"), EnvVar: "SESSIONHA_NOTICE_TOPIC_ARN"},
			{ID: TopicLifecycle, Name: name("lifecycle"), EnvVar: "SESSIONHA_LIFECYCLE_TOPIC_ARN"},
		},
		Queues: []Queue{
			{ID: QueueOpsDLQ, Name: name("ops-dlq"), Retention: 14 * 24 * time.Hour, VisibilityTimeout: 30 * time.Second},
			{ID: QueueOps, Name: name("ops"), DLQ: QueueOpsDLQ, MaxReceiveCount: s.MaxReceiveCount,
				VisibilityTimeout: s.VisibilityTimeout, Retention: retention},
			{ID: QueueQueryDLQ, Name: name("query-dlq"), Retention: 14 * 24 * time.Hour, VisibilityTimeout: 30 * time.Second},
			{ID: QueueQuery, Name: name("query"), DLQ: QueueQueryDLQ, MaxReceiveCount: s.MaxReceiveCount,
				VisibilityTimeout: s.VisibilityTimeout, Retention: retention},
			{ID: QueueLifecycleDLQ, Name: name("lifecycle-dlq"), Retention: 14 * 24 * time.Hour, VisibilityTimeout: 30 * time.Second},
		},
		Subscriptions: []Subscription{
			// No filter policy on the ops queue: nothing published on the ops topic may go unseen.
			{Topic: TopicOps, Queue: QueueOps, RawDelivery: true},
			{Topic: TopicQuery, Queue: QueueQuery, RawDelivery: true},
		},
		Functions: []Function{{
			ID: FunctionSessionOp, Name: name("sessionop"), Queue: QueueOps,
			BatchSize: s.BatchSize, BatchingWindow: s.BatchingWindow, MaxConcurrency: s.MaxConcurrency,
			Timeout: s.FunctionTimeout,
			Env: map[string]string{
				"SESSIONHA_TABLE":           "table:" + table,
				"SESSIONHA_SITE":            site.Name,
				"SESSIONHA_TOMBSTONE_GRACE": s.TombstoneGrace.String(),
				// A message that can never apply goes to the DLQ at once; one that failed
				// for a reason that may pass is hidden on the retry schedule.
				"SESSIONHA_QUEUE_URL":  "queue:" + QueueOps,
				"SESSIONHA_DLQ_URL":    "queue:" + QueueOpsDLQ,
				"SESSIONHA_RETRY_BASE": s.RetryBase.String(),
				"SESSIONHA_RETRY_MAX":  s.RetryMax.String(),
				// Superseded notices: instances serving sessions from memory learn of takeovers.
				"SESSIONHA_NOTICE_TOPIC_ARN": "topic:" + TopicNotice,
				"SESSIONHA_CLOCK_TOLERANCE":  s.ClockTolerance.String(),
			},
		}, {
			ID: FunctionSessionQuery, Name: name("sessionquery"), Queue: QueueQuery,
			// Queries wait for their answer: no batching window, whatever the site's setting.
			BatchSize: s.BatchSize, MaxConcurrency: s.MaxConcurrency, Timeout: s.FunctionTimeout,
			Env: map[string]string{
				"SESSIONHA_TABLE":           "table:" + table,
				"SESSIONHA_SITE":            site.Name,
				"SESSIONHA_REPLY_TOPIC_ARN": "topic:" + TopicReply,
				// Poison queries go to the DLQ at once; a query that failed is retried
				// within a second while its client may still wait, and dropped past
				// QueryMaxAge, when no one does.
				"SESSIONHA_QUEUE_URL":     "queue:" + QueueQuery,
				"SESSIONHA_DLQ_URL":       "queue:" + QueueQueryDLQ,
				"SESSIONHA_QUERY_MAX_AGE": s.QueryMaxAge.String(),
			},
		}, {
			// Lifecycle events from the table's stream (functions/lifecycle). From the
			// stream's oldest record: a mapping made after the table (a first deploy, a
			// replaced mapping) misses nothing, and what it sends twice carries the same
			// idempotency keys. A failed batch (the topic out of reach) is retried for up
			// to six hours, split in halves, before it goes to the DLQ; the function
			// itself never fails a record it cannot read (that would block the shard).
			ID: FunctionLifecycle, Name: name("lifecycle"), BatchSize: 100, Timeout: s.FunctionTimeout,
			Stream: &StreamSource{StartingPosition: "TRIM_HORIZON", RetryAttempts: 10000, MaxRecordAge: 6 * time.Hour,
				BisectOnError: true, OnFailure: QueueLifecycleDLQ},
			Env: map[string]string{
				"SESSIONHA_SITE":                site.Name,
				"SESSIONHA_LIFECYCLE_TOPIC_ARN": "topic:" + TopicLifecycle,
			},
		}},
		SealKey: SealKey{Alias: "alias/" + name("seal"), EnvVar: "SESSIONHA_SEAL_KMS_KEY_ARN"},
	}
	return t, nil
}

// ForDeployment describes every site of a deployment, each knowing all of them (its
// Peers): what `cdk deploy` and `make local` render for several sites. table is the
// deployment's table name ("" for DefaultTable). Site names must be unique.
func ForDeployment(sites []Site, table string) ([]Topology, error) {
	if len(sites) == 0 {
		return nil, fmt.Errorf("topology: a deployment needs at least one site")
	}
	topos := make([]Topology, len(sites))
	var peers []Peer
	for i, s := range sites {
		t, err := For(s, table)
		if err != nil {
			return nil, err
		}
		for _, p := range peers {
			if p.Site == s.Name {
				return nil, fmt.Errorf("topology: site %q is listed twice", s.Name)
			}
		}
		topos[i] = t
		peers = append(peers, t.Peers[0])
	}
	for i := range topos {
		own := topos[i].Peers[0]
		topos[i].Peers = append([]Peer{own}, slices.DeleteFunc(slices.Clone(peers), func(p Peer) bool { return p.Site == own.Site })...)
	}
	return topos, nil
}

// Topologies describes every site of the deployment (ForDeployment).
func (d Deployment) Topologies() ([]Topology, error) { return ForDeployment(d.Sites, d.Table) }

// Queue returns the queue with the given ID.
func (t Topology) Queue(id string) (Queue, bool) {
	for _, q := range t.Queues {
		if q.ID == id {
			return q, true
		}
	}
	return Queue{}, false
}

// DeadLetterQueues are the IDs of the queues that hold what failed for good: the queues'
// redrive targets and the stream mappings' on-failure destinations. Operators watch them.
func (t Topology) DeadLetterQueues() map[string]bool {
	dlq := map[string]bool{}
	for _, q := range t.Queues {
		if q.DLQ != "" {
			dlq[q.DLQ] = true
		}
	}
	for _, f := range t.Functions {
		if f.Stream != nil && f.Stream.OnFailure != "" {
			dlq[f.Stream.OnFailure] = true
		}
	}
	return dlq
}

// Topic returns the topic with the given ID.
func (t Topology) Topic(id string) (Topic, bool) {
	for _, tp := range t.Topics {
		if tp.ID == id {
			return tp, true
		}
	}
	return Topic{}, false
}

// Function returns the function with the given ID.
func (t Topology) Function(id string) (Function, bool) {
	for _, f := range t.Functions {
		if f.ID == id {
			return f, true
		}
	}
	return Function{}, false
}
