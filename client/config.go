package client

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
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
	ReadDirect ReadPath = "direct" // strongly consistent GetItem on the table
	ReadBus    ReadPath = "bus"    // a query on the query topic, answered on the reply topic
)

// NoticeScope is which destroy notices an instance takes, as OpenAM's logout broadcast.
type NoticeScope string

const (
	NoticeOff  NoticeScope = "off"  // no notices: a logout elsewhere is seen in the table
	NoticeSite NoticeScope = "site" // this site's notices
	NoticeAll  NoticeScope = "all"  // every site's notices (sites that share the notice topic)
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
	// SESSIONHA_NOTICE_TOPIC_ARN). Default "": not used.
	QueryTopicARN, ReplyTopicARN, NoticeTopicARN string
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
	// PublishTimeout bounds each publish to the bus, the SDK's retries included
	// (SESSIONHA_PUBLISH_TIMEOUT, a Go duration). It is the longest a Save or Destroy
	// waits for an unreachable bus before the store degrades and answers from memory.
	// Default 2 s: SNS answers in tens of milliseconds, so 2 s leaves room for the SDK's
	// first retries of a transient error, yet a partition holds a request up for no
	// longer than a user tolerates, once; later calls do not wait while degraded.
	PublishTimeout time.Duration
	// NoticeScope is which destroy notices this instance publishes and takes: off, site
	// or all (SESSIONHA_NOTICE_SCOPE). Default site when NoticeTopicARN is set, else off.
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
	// AWS is the SDK configuration (no variable). Default: the SDK's default chain
	// (environment, shared files, instance role), endpoints from AWS_ENDPOINT_URL[_<SERVICE>].
	AWS *aws.Config
	// Logger receives mode switches and failures, never a session id (no variable).
	// Default slog.Default().
	Logger *slog.Logger
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
	{"SESSIONHA_PERSISTENCE", func(c *Config, v string) error { c.Persistence = Persistence(v); return nil }},
	{"SESSIONHA_FREQUENCY", func(c *Config, v string) error { c.Frequency = Frequency(v); return nil }},
	{"SESSIONHA_FLUSH_INTERVAL", func(c *Config, v string) (err error) { c.FlushInterval, err = parseDuration(v); return }},
	{"SESSIONHA_SCOPE", func(c *Config, v string) error { c.Scope = Scope(v); return nil }},
	{"SESSIONHA_READ_PATH", func(c *Config, v string) error { c.ReadPath = ReadPath(v); return nil }},
	{"SESSIONHA_MAX_WAIT", func(c *Config, v string) (err error) { c.MaxWait, err = parseDuration(v); return }},
	{"SESSIONHA_MAX_SESSIONS", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive whole number such as 10000")
		}
		c.MaxSessions = n
		return nil
	}},
	{"SESSIONHA_FILE_DIR", func(c *Config, v string) error { c.Dir = v; return nil }},
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
		c.InstanceID = defaultInstanceID()
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
	if c.NoticeScope == "" {
		c.NoticeScope = NoticeOff
		if c.NoticeTopicARN != "" {
			c.NoticeScope = NoticeSite
		}
	}
	if c.PurgeDelay == 0 {
		c.PurgeDelay = 10 * time.Minute
	}
	if c.MaxSessionLife == 0 {
		c.MaxSessionLife = DefaultMaxSessionLife
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
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
	if c.MaxSessionsPerPrincipal < 0 {
		return fmt.Errorf("client: MaxSessionsPerPrincipal (SESSIONHA_MAX_SESSIONS_PER_PRINCIPAL) %d: want 0 (no cap) or more", c.MaxSessionsPerPrincipal)
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("client: MaxSessions (SESSIONHA_MAX_SESSIONS) %d: want a positive number, or 0 for the default", c.MaxSessions)
	}
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("client: Dir (SESSIONHA_FILE_DIR) %q: want an absolute path", c.Dir)
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
	return nil
}
