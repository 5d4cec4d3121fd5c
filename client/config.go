package client

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Persistence is where sessions are kept, as Sun ONE's persistence types.
type Persistence string

const (
	PersistenceMemory Persistence = "memory" // in process: no failover
	PersistenceFile   Persistence = "file"   // a directory: survives a restart on the same host
	PersistenceHA     Persistence = "ha"     // the bus and the table: failover to any instance
)

// Frequency is when changes are sent.
type Frequency string

const (
	FrequencyWebMethod Frequency = "web-method" // every Save is published before it returns
	FrequencyTimeBased Frequency = "time-based" // dirty sessions are sent every FlushInterval
)

// Scope is what a Save sends.
type Scope string

const (
	ScopeSession           Scope = "session"            // the whole session, every time
	ScopeModifiedSession   Scope = "modified-session"   // the whole session, only if it changed
	ScopeModifiedAttribute Scope = "modified-attribute" // only changed and removed attributes
)

// ReadPath is how an instance reads a session it does not hold.
type ReadPath string

const (
	ReadDirect ReadPath = "direct" // a strongly consistent read of the table (session and logout items)
	ReadBus    ReadPath = "bus"    // a query on the query topic, answered on the reply topic
)

// NoticeScope is which destroy notices an instance takes, as OpenAM's logout broadcast.
type NoticeScope string

const (
	NoticeOff  NoticeScope = "off"  // no notices: a logout elsewhere is seen in the table
	NoticeSite NoticeScope = "site" // this site's notices
	NoticeAll  NoticeScope = "all"  // every site's notices, from every site's notice topic (Config.NoticeTopicARNs)
)

// Reads is when Load reads the table (or asks over the bus) rather than serving this
// instance's own copy.
type Reads string

const (
	// ReadsOwner: an instance serves the sessions it owns from memory, with no AWS call;
	// it reads the others.
	ReadsOwner Reads = "owner"
	// ReadsAlways: every Load reads, for a load balancer that is not sticky.
	ReadsAlways Reads = "always"
)

// SaveWait is what Create and Save wait for before they return (web-method frequency).
type SaveWait string

const (
	SavePublished SaveWait = "published" // the bus took the change
	SaveApplied   SaveWait = "applied"   // the change is in the table
)

// DefaultMaxSessionLife is Config.MaxSessionLife's default.
const DefaultMaxSessionLife = 90 * 24 * time.Hour

// Config configures a Store. The zero value of every field means the default named in its
// comment; ConfigFromEnv fills it from SESSIONHA_* variables. Open validates it.
type Config struct {
	// Site is the site this instance belongs to (SESSIONHA_SITE). Default "local".
	Site string
	// Cluster namespaces sessions: clusters share a table and clear apart
	// (SESSIONHA_CLUSTER). Default "default".
	Cluster string
	// InstanceID names this auth server instance, unique in the site
	// (SESSIONHA_INSTANCE_ID). Default: the host name and a random suffix.
	InstanceID string
	// Table is the session table (SESSIONHA_TABLE). Required for ha.
	Table string
	// OpsTopicARN is where session operations are published (SESSIONHA_OPS_TOPIC_ARN).
	// Required for ha.
	OpsTopicARN string
	// QueryTopicARN, ReplyTopicARN and NoticeTopicARN are the failover query, its
	// replies, and destroy notices (SESSIONHA_QUERY_TOPIC_ARN, SESSIONHA_REPLY_TOPIC_ARN,
	// SESSIONHA_NOTICE_TOPIC_ARN): this site's topics, where the instance publishes.
	// Default "": not used.
	QueryTopicARN, ReplyTopicARN, NoticeTopicARN string
	// NoticeTopicARNs are the notice topics of every site of the deployment, which this
	// instance's queue is subscribed to, each in its own region (SESSIONHA_NOTICE_TOPIC_ARNS,
	// comma-separated; the CDK stacks output it, and the local stack's env files carry
	// it): a destroy notice with NoticeScope all, and a superseded notice for this
	// instance from any site (a takeover in another region), reach the instance this way.
	// It must list NoticeTopicARN. Default: NoticeTopicARN alone (this site's notices only,
	// whatever NoticeScope says).
	NoticeTopicARNs []string
	// LifecycleTopicARN is the site's lifecycle topic (SESSIONHA_LIFECYCLE_TOPIC_ARN):
	// with it, persistence ha, this instance's queue takes the lifecycle events of its own
	// sessions (destroyed, expired, moved) for OnLifecycle's listeners. Default "": none.
	LifecycleTopicARN string
	// Persistence is memory, file or ha (SESSIONHA_PERSISTENCE). Default ha.
	Persistence Persistence
	// Frequency is web-method or time-based (SESSIONHA_FREQUENCY). Default web-method.
	Frequency Frequency
	// FlushInterval is the time-based frequency's interval (SESSIONHA_FLUSH_INTERVAL).
	// Default 10 s.
	FlushInterval time.Duration
	// Scope is session, modified-session or modified-attribute (SESSIONHA_SCOPE).
	// Default session.
	Scope Scope
	// ReadPath is direct or bus (SESSIONHA_READ_PATH). Default direct.
	ReadPath ReadPath
	// MaxWait bounds a read over the bus (SESSIONHA_MAX_WAIT, a Go duration). Default 5 s,
	// the old products' Maximum Wait Time.
	MaxWait time.Duration
	// Reads is owner or always (SESSIONHA_READS). With owner, an instance that owns a
	// session (it wrote the newest version it knows of, and no superseded notice says
	// another instance wrote since) serves Load from memory with no AWS call; it reads
	// the table (or asks over the bus) for the sessions it does not own, and while it
	// cannot hear notices (degraded, or its queue unreachable). With always, every Load
	// reads, as a load balancer that is not sticky needs (see the package doc). Default
	// owner when notices are on (NoticeScope site or all), else always: ownership moves
	// by notices, so Open refuses owner without them.
	Reads Reads
	// SaveWait is published or applied (SESSIONHA_SAVE_WAIT): whether Create, Save and
	// SaveAs return once the change is published, or once it is in the table, so that
	// a failover right after cannot miss it (SaveApplied waits for one call whatever
	// this says). Waiting reads the table (ReadPath direct) or asks over the bus (bus)
	// until the stored version is the change's or newer, for at most MaxWait, then fails
	// with ErrTimeout. Web-method frequency only. Default published.
	SaveWait SaveWait
	// MaxSessions bounds the sessions held in memory, least recently used going first
	// (SESSIONHA_MAX_SESSIONS), like Sun ONE's maxSessions and amsessiondb's cache size.
	// With persistence memory an evicted session is gone; with file and ha it is read
	// back on its next Load. Sessions with changes not yet sent are never evicted, so
	// that nothing is lost while the bus is down: they may hold the cache above the
	// bound until they are sent. Default 10000.
	MaxSessions int
	// Dir is where persistence file keeps sessions, one file per session in Dir/<Cluster>
	// (SESSIONHA_FILE_DIR, an absolute path). Files are named by the hash of the session
	// id, written atomically, readable by this user only. Default: the user's cache
	// directory (os.UserCacheDir) + "/sessionha".
	Dir string
	// JournalDir is where degraded mode journals what it acknowledged while the bus was
	// unreachable, so that a crash loses none of it (SESSIONHA_JOURNAL_DIR, an absolute
	// path): one directory per instance, JournalDir/<Cluster>/<InstanceID>, readable by
	// this user only, locked while the instance is open (a second process with the same
	// instance id is refused), replayed by the next Open of the instance, emptied once
	// everything was sent and removed by Close. Ids are kept hashed, as in the table.
	// Persistence ha only. Default: the user's cache directory (os.UserCacheDir) +
	// "/sessionha".
	JournalDir string
	// PublishTimeout bounds each publish to the bus, the SDK's retries included
	// (SESSIONHA_PUBLISH_TIMEOUT, a Go duration). It is the longest a Save or Destroy
	// waits for an unreachable bus before the store degrades and answers from memory.
	// Default 2 s: SNS answers in tens of milliseconds, so 2 s leaves room for the SDK's
	// first retries of a transient error, yet a partition holds a request up for no
	// longer than a user tolerates, once; later calls do not wait while degraded.
	PublishTimeout time.Duration
	// NoticeScope is which destroy notices this instance publishes and takes: off, site
	// (its own site's) or all (every site's, from the topics of NoticeTopicARNs)
	// (SESSIONHA_NOTICE_SCOPE). Default site when NoticeTopicARN is set, else off.
	NoticeScope NoticeScope
	// PurgeDelay is how long an instance keeps refusing a destroyed session's id in
	// memory, after its own destroy or a notice (SESSIONHA_PURGE_DELAY, a Go duration);
	// after it, the table's tombstone answers. Default 10 min (OpenAM: 1 min).
	PurgeDelay time.Duration
	// MaxSessionLife is the longest MaxLife a session may have (SESSIONHA_MAX_SESSION_LIFE,
	// a Go duration): Create and SaveAs refuse a longer one with ErrInvalid. It bounds how
	// long a logout's tombstone must last when the instance that logs out cannot see the
	// session (its create may still be on its way): now + MaxSessionLife, so that the
	// create, however late it comes, cannot bring the session back. Default 90 days
	// (DefaultMaxSessionLife). Give every instance of a site the same value.
	MaxSessionLife time.Duration
	// MaxSessionsPerPrincipal caps a user's sessions: creating one more destroys the
	// oldest (SESSIONHA_MAX_SESSIONS_PER_PRINCIPAL). Default 0: no cap. The count comes
	// from the per-user index, which lags a second or so behind creates.
	MaxSessionsPerPrincipal int
	// SweepQueuesEvery is how often, on average, this instance deletes its site's orphan
	// instance queues: those whose instance has not been seen alive for OrphanQueueAge
	// (SESSIONHA_SWEEP_QUEUES_EVERY, a Go duration, or "off"). Each wait is drawn at
	// random from half to one and a half times it, so that a fleet does not sweep at
	// once. Only instances with a queue (ReadPath bus, or notices) sweep. Default 1 h;
	// negative (or "off"): never, as when `sessionctl sweep-queues` runs on a schedule.
	SweepQueuesEvery time.Duration
	// OrphanQueueAge is how long an instance queue may go without being seen alive
	// before a sweep deletes it (SESSIONHA_ORPHAN_QUEUE_AGE, a Go duration). An open
	// instance marks its queue alive every 5 minutes. Default 1 h; at least 15 min.
	OrphanQueueAge time.Duration
	// Keyring seals every attribute value before it leaves this process and opens what
	// comes back (see Keyring and the README's "Sealed attributes"): SESSIONHA_SEAL_KEYS
	// ("id:base64key,...", the first sealing) or SESSIONHA_SEAL_KEY_FILE (a file of such
	// lines), or KMS-wrapped keys, SESSIONHA_SEAL_KMS_KEYS, through KeyringSource. Give
	// every instance of every site the same keys. Default nil: values go in clear, clear
	// values open, and sealed ones fail to with ErrSealed.
	Keyring *Keyring
	// KeyringSource makes the Keyring at Open when Keyring is nil, for keys a service
	// holds (client/kmskeys: ConfigFromEnv sets it from SESSIONHA_SEAL_KMS_KEYS and
	// SESSIONHA_SEAL_KMS_KEY_ARN once that package is imported). Default nil.
	KeyringSource KeyringSource
	// SealWith is the id of the Keyring's key that seals, or "none": none seals, values
	// go in clear, and every key still opens (SESSIONHA_SEAL_WITH). "none" is the first
	// step of turning sealing on across running instances, and the way to turn it off.
	// Default "": the keyring's own (the first of SESSIONHA_SEAL_KEYS).
	SealWith string
	// AWS is the SDK configuration (no variable). Default: the SDK's default chain
	// (environment, shared files, instance role), endpoints from AWS_ENDPOINT_URL[_<SERVICE>].
	AWS *aws.Config
	// Logger receives mode switches and failures, never a session id (no variable).
	// Default slog.Default().
	Logger *slog.Logger

	// generatedID says that InstanceID was made up by withDefaults: no later process
	// will have it, so nothing of this instance needs to outlive it.
	generatedID bool
}

// envVars maps each variable to the field it sets.
var envVars = []struct {
	name string
	set  func(*Config, string) error
}{
	{"SESSIONHA_SITE", func(c *Config, v string) error { c.Site = v; return nil }},
	{"SESSIONHA_CLUSTER", func(c *Config, v string) error { c.Cluster = v; return nil }},
	{"SESSIONHA_INSTANCE_ID", func(c *Config, v string) error { c.InstanceID = v; return nil }},
	{"SESSIONHA_TABLE", func(c *Config, v string) error { c.Table = v; return nil }},
	{"SESSIONHA_OPS_TOPIC_ARN", func(c *Config, v string) error { c.OpsTopicARN = v; return nil }},
	{"SESSIONHA_QUERY_TOPIC_ARN", func(c *Config, v string) error { c.QueryTopicARN = v; return nil }},
	{"SESSIONHA_REPLY_TOPIC_ARN", func(c *Config, v string) error { c.ReplyTopicARN = v; return nil }},
	{"SESSIONHA_NOTICE_TOPIC_ARN", func(c *Config, v string) error { c.NoticeTopicARN = v; return nil }},
	{"SESSIONHA_NOTICE_TOPIC_ARNS", func(c *Config, v string) error {
		c.NoticeTopicARNs = nil
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			if !snsTopicARN(part) {
				return fmt.Errorf("%q is not an SNS topic ARN: want a comma-separated list of topic ARNs such as arn:aws:sns:eu-west-1:123456789012:sessionha-eu-notice", part)
			}
			c.NoticeTopicARNs = append(c.NoticeTopicARNs, part)
		}
		return nil
	}},
	{"SESSIONHA_LIFECYCLE_TOPIC_ARN", func(c *Config, v string) error { c.LifecycleTopicARN = v; return nil }},
	{"SESSIONHA_PERSISTENCE", func(c *Config, v string) error { c.Persistence = Persistence(v); return nil }},
	{"SESSIONHA_FREQUENCY", func(c *Config, v string) error { c.Frequency = Frequency(v); return nil }},
	{"SESSIONHA_FLUSH_INTERVAL", func(c *Config, v string) (err error) { c.FlushInterval, err = parseDuration(v); return }},
	{"SESSIONHA_SCOPE", func(c *Config, v string) error { c.Scope = Scope(v); return nil }},
	{"SESSIONHA_READ_PATH", func(c *Config, v string) error { c.ReadPath = ReadPath(v); return nil }},
	{"SESSIONHA_MAX_WAIT", func(c *Config, v string) (err error) { c.MaxWait, err = parseDuration(v); return }},
	{"SESSIONHA_READS", func(c *Config, v string) error { c.Reads = Reads(v); return nil }},
	{"SESSIONHA_SAVE_WAIT", func(c *Config, v string) error { c.SaveWait = SaveWait(v); return nil }},
	{"SESSIONHA_MAX_SESSIONS", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive whole number such as 10000")
		}
		c.MaxSessions = n
		return nil
	}},
	{"SESSIONHA_FILE_DIR", func(c *Config, v string) error { c.Dir = v; return nil }},
	{"SESSIONHA_JOURNAL_DIR", func(c *Config, v string) error { c.JournalDir = v; return nil }},
	{"SESSIONHA_NOTICE_SCOPE", func(c *Config, v string) error { c.NoticeScope = NoticeScope(v); return nil }},
	{"SESSIONHA_PURGE_DELAY", func(c *Config, v string) (err error) { c.PurgeDelay, err = parseDuration(v); return }},
	{"SESSIONHA_MAX_SESSIONS_PER_PRINCIPAL", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("want a whole number, 0 for no cap")
		}
		c.MaxSessionsPerPrincipal = n
		return nil
	}},
	{"SESSIONHA_PUBLISH_TIMEOUT", func(c *Config, v string) (err error) { c.PublishTimeout, err = parseDuration(v); return }},
	{"SESSIONHA_MAX_SESSION_LIFE", func(c *Config, v string) (err error) { c.MaxSessionLife, err = parseDuration(v); return }},
	{"SESSIONHA_SWEEP_QUEUES_EVERY", func(c *Config, v string) (err error) {
		if v == "off" {
			c.SweepQueuesEvery = -1
			return nil
		}
		if c.SweepQueuesEvery, err = parseDuration(v); err != nil {
			return fmt.Errorf("want a positive Go duration such as 1h, or off")
		}
		return nil
	}},
	{"SESSIONHA_ORPHAN_QUEUE_AGE", func(c *Config, v string) (err error) { c.OrphanQueueAge, err = parseDuration(v); return }},
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a positive Go duration such as 5s or 250ms")
	}
	return d, nil
}

// ConfigFromEnv reads the SESSIONHA_* variables (unset ones keep their defaults) and
// validates the result, naming the variable of any bad value.
func ConfigFromEnv() (Config, error) {
	var c Config
	for _, e := range envVars {
		v, ok := os.LookupEnv(e.name)
		if !ok || v == "" {
			continue
		}
		if err := e.set(&c, v); err != nil {
			return c, fmt.Errorf("client: %s=%q: %w", e.name, v, err)
		}
	}
	if err := sealFromEnv(&c); err != nil { // sealconfig.go: errors never show a key
		return c, err
	}
	return c, c.validate()
}

var name = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Site == "" {
		c.Site = "local"
	}
	if c.Cluster == "" {
		c.Cluster = "default"
	}
	if c.InstanceID == "" {
		c.InstanceID, c.generatedID = defaultInstanceID(), true
	}
	if c.Persistence == "" {
		c.Persistence = PersistenceHA
	}
	if c.Frequency == "" {
		c.Frequency = FrequencyWebMethod
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 10 * time.Second
	}
	if c.Scope == "" {
		c.Scope = ScopeSession
	}
	if c.ReadPath == "" {
		c.ReadPath = ReadDirect
	}
	if c.MaxWait == 0 {
		c.MaxWait = 5 * time.Second
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 10000
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 2 * time.Second
	}
	c.NoticeTopicARNs = noticeTopics(c.NoticeTopicARN, c.NoticeTopicARNs)
	if c.NoticeScope == "" {
		c.NoticeScope = NoticeOff
		if c.NoticeTopicARN != "" {
			c.NoticeScope = NoticeSite
		}
	}
	if c.Reads == "" {
		c.Reads = ReadsAlways
		if c.NoticeScope != NoticeOff {
			c.Reads = ReadsOwner
		}
	}
	if c.SaveWait == "" {
		c.SaveWait = SavePublished
	}
	if c.PurgeDelay == 0 {
		c.PurgeDelay = 10 * time.Minute
	}
	if c.MaxSessionLife == 0 {
		c.MaxSessionLife = DefaultMaxSessionLife
	}
	if c.SweepQueuesEvery == 0 {
		c.SweepQueuesEvery = time.Hour
	}
	if c.OrphanQueueAge == 0 {
		c.OrphanQueueAge = DefaultOrphanQueueAge
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// noticeTopics is the notice topics an instance listens to: list without repeats (a
// topic listed twice would be subscribed once anyway), or own alone if list is empty.
func noticeTopics(own string, list []string) []string {
	if len(list) == 0 {
		if own == "" {
			return nil
		}
		return []string{own}
	}
	var out []string
	for _, t := range list {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func defaultInstanceID() string {
	host, _ := os.Hostname()
	host = regexp.MustCompile(`[^A-Za-z0-9._-]`).ReplaceAllString(host, "-")
	if len(host) > 48 {
		host = host[:48]
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strings.TrimPrefix(host+"-"+hex.EncodeToString(b[:]), "-")
}

func oneOf[T ~string](field, env string, v T, ok ...T) error {
	if v == "" {
		return nil
	}
	for _, o := range ok {
		if v == o {
			return nil
		}
	}
	var names []string
	for _, o := range ok {
		names = append(names, string(o))
	}
	return fmt.Errorf("client: %s (%s) %q: want one of %s", field, env, v, strings.Join(names, ", "))
}

// validate checks the values that are set; defaults are valid.
func (c Config) validate() error {
	checks := []error{
		oneOf("Persistence", "SESSIONHA_PERSISTENCE", c.Persistence, PersistenceMemory, PersistenceFile, PersistenceHA),
		oneOf("Frequency", "SESSIONHA_FREQUENCY", c.Frequency, FrequencyWebMethod, FrequencyTimeBased),
		oneOf("Scope", "SESSIONHA_SCOPE", c.Scope, ScopeSession, ScopeModifiedSession, ScopeModifiedAttribute),
		oneOf("ReadPath", "SESSIONHA_READ_PATH", c.ReadPath, ReadDirect, ReadBus),
		oneOf("NoticeScope", "SESSIONHA_NOTICE_SCOPE", c.NoticeScope, NoticeOff, NoticeSite, NoticeAll),
		oneOf("Reads", "SESSIONHA_READS", c.Reads, ReadsOwner, ReadsAlways),
		oneOf("SaveWait", "SESSIONHA_SAVE_WAIT", c.SaveWait, SavePublished, SaveApplied),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	for _, f := range []struct{ field, env, v string }{
		{"Site", "SESSIONHA_SITE", c.Site}, {"Cluster", "SESSIONHA_CLUSTER", c.Cluster},
		{"InstanceID", "SESSIONHA_INSTANCE_ID", c.InstanceID},
	} {
		if f.v != "" && !name.MatchString(f.v) {
			return fmt.Errorf("client: %s (%s) %q: want 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'", f.field, f.env, f.v)
		}
	}
	for _, f := range []struct {
		field, env string
		v          time.Duration
	}{
		{"FlushInterval", "SESSIONHA_FLUSH_INTERVAL", c.FlushInterval},
		{"MaxWait", "SESSIONHA_MAX_WAIT", c.MaxWait},
		{"PublishTimeout", "SESSIONHA_PUBLISH_TIMEOUT", c.PublishTimeout},
		{"PurgeDelay", "SESSIONHA_PURGE_DELAY", c.PurgeDelay},
		{"MaxSessionLife", "SESSIONHA_MAX_SESSION_LIFE", c.MaxSessionLife},
	} {
		if f.v < 0 {
			return fmt.Errorf("client: %s (%s) %s: want a positive duration, or 0 for the default", f.field, f.env, f.v)
		}
	}
	for _, t := range c.NoticeTopicARNs {
		if t != c.NoticeTopicARN && !snsTopicARN(t) {
			return fmt.Errorf("client: NoticeTopicARNs (SESSIONHA_NOTICE_TOPIC_ARNS) %q: not an SNS topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:NAME)", t)
		}
	}
	if c.OrphanQueueAge != 0 && c.OrphanQueueAge < MinOrphanQueueAge {
		return fmt.Errorf("client: OrphanQueueAge (SESSIONHA_ORPHAN_QUEUE_AGE) %s: want at least %s, so that no live instance is taken for dead, or 0 for the default", c.OrphanQueueAge, MinOrphanQueueAge)
	}
	if c.SealWith != "" && c.SealWith != "none" && !keyIDPattern.MatchString(c.SealWith) {
		return fmt.Errorf("client: SealWith (SESSIONHA_SEAL_WITH) %.40q: want a key id of the keyring, or none", c.SealWith)
	}
	if c.MaxSessionsPerPrincipal < 0 {
		return fmt.Errorf("client: MaxSessionsPerPrincipal (SESSIONHA_MAX_SESSIONS_PER_PRINCIPAL) %d: want 0 (no cap) or more", c.MaxSessionsPerPrincipal)
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("client: MaxSessions (SESSIONHA_MAX_SESSIONS) %d: want a positive number, or 0 for the default", c.MaxSessions)
	}
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("client: Dir (SESSIONHA_FILE_DIR) %q: want an absolute path", c.Dir)
	}
	if c.JournalDir != "" && !filepath.IsAbs(c.JournalDir) {
		return fmt.Errorf("client: JournalDir (SESSIONHA_JOURNAL_DIR) %q: want an absolute path", c.JournalDir)
	}
	return nil
}

// validateOpen checks what Open needs beyond validate: the resources of the chosen
// persistence, and the options this version supports.
func (c Config) validateOpen() error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Persistence == PersistenceHA {
		if c.Table == "" {
			return fmt.Errorf("client: Table (SESSIONHA_TABLE) is required with persistence ha")
		}
		if c.OpsTopicARN == "" {
			return fmt.Errorf("client: OpsTopicARN (SESSIONHA_OPS_TOPIC_ARN) is required with persistence ha")
		}
	}
	if c.Persistence == PersistenceHA && c.ReadPath == ReadBus {
		if c.QueryTopicARN == "" || c.ReplyTopicARN == "" {
			return fmt.Errorf(`client: ReadPath (SESSIONHA_READ_PATH) "bus" needs QueryTopicARN (SESSIONHA_QUERY_TOPIC_ARN) and ReplyTopicARN (SESSIONHA_REPLY_TOPIC_ARN)`)
		}
	}
	if c.Persistence == PersistenceHA && c.NoticeScope != NoticeOff && c.NoticeTopicARN == "" {
		return fmt.Errorf("client: NoticeScope (SESSIONHA_NOTICE_SCOPE) %q needs NoticeTopicARN (SESSIONHA_NOTICE_TOPIC_ARN)", c.NoticeScope)
	}
	if c.Persistence == PersistenceHA && c.NoticeScope != NoticeOff && !slices.Contains(c.NoticeTopicARNs, c.NoticeTopicARN) {
		return fmt.Errorf("client: NoticeTopicARNs (SESSIONHA_NOTICE_TOPIC_ARNS) %s does not list NoticeTopicARN (SESSIONHA_NOTICE_TOPIC_ARN) %q: an instance must hear its own site's notices; list every site's notice topic, this site's included",
			strings.Join(c.NoticeTopicARNs, ","), c.NoticeTopicARN)
	}
	if c.Persistence == PersistenceHA && (c.ReadPath == ReadBus || c.NoticeScope != NoticeOff) && !queueSite.MatchString(c.Site) {
		return fmt.Errorf("client: Site (SESSIONHA_SITE) %q: an instance with a queue of its own (ReadPath bus, or notices) needs a site of 1-%d characters of A-Z, a-z, 0-9, '_' and '-', which its queue's name is made of", c.Site, maxQueueSite)
	}
	if c.Persistence == PersistenceHA && c.Reads == ReadsOwner && c.NoticeScope == NoticeOff {
		return fmt.Errorf(`client: Reads (SESSIONHA_READS) "owner" needs notices (NoticeScope, SESSIONHA_NOTICE_SCOPE, site or all, and NoticeTopicARN, SESSIONHA_NOTICE_TOPIC_ARN): without them an instance cannot learn that another took a session over, and would serve its old copy; set Reads to "always", or turn notices on`)
	}
	if c.Persistence == PersistenceHA && c.SaveWait == SaveApplied && c.Frequency == FrequencyTimeBased {
		return fmt.Errorf(`client: SaveWait (SESSIONHA_SAVE_WAIT) "applied" needs Frequency (SESSIONHA_FREQUENCY) "web-method": with time-based frequency a Save sends nothing before it returns (SaveApplied still sends and waits for one call)`)
	}
	return nil
}
