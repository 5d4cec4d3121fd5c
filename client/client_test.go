package client

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestConfigFromEnvNamesTheVariable(t *testing.T) {
	cases := map[string]string{
		"SESSIONHA_PERSISTENCE":        "disk",
		"SESSIONHA_FREQUENCY":          "hourly",
		"SESSIONHA_SCOPE":              "everything",
		"SESSIONHA_READ_PATH":          "carrier-pigeon",
		"SESSIONHA_MAX_WAIT":           "five seconds",
		"SESSIONHA_CLUSTER":            "no spaces allowed",
		"SESSIONHA_INSTANCE_ID":        strings.Repeat("x", 65),
		"SESSIONHA_FLUSH_INTERVAL":     "-1s",
		"SESSIONHA_PUBLISH_TIMEOUT":    "0",
		"SESSIONHA_MAX_SESSIONS":       "lots",
		"SESSIONHA_FILE_DIR":           "relative/dir",
		"SESSIONHA_JOURNAL_DIR":        "journal",
		"SESSIONHA_SWEEP_QUEUES_EVERY": "never",
		"SESSIONHA_ORPHAN_QUEUE_AGE":   "1m", // below the least
		"SESSIONHA_READS":              "sometimes",
		"SESSIONHA_SAVE_WAIT":          "forever",
		"SESSIONHA_MAX_SESSION_LIFE":   "forever",
		"SESSIONHA_NOTICE_TOPIC_ARNS":  "arn:aws:sns:eu-west-1:123456789012:sessionha-eu-notice,sessionha-us-notice",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			_, err := ConfigFromEnv()
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: got %v, want an error naming %s", name, value, err, name)
			}
		})
	}
	t.Setenv("SESSIONHA_PERSISTENCE", "disk")
	_, err := ConfigFromEnv()
	if !strings.Contains(err.Error(), "memory, file, ha") {
		t.Errorf("error %q does not list the accepted values", err)
	}
}

func TestConfigFromEnvReadsEverything(t *testing.T) {
	env := map[string]string{
		"SESSIONHA_SITE": "eu", "SESSIONHA_CLUSTER": "c1", "SESSIONHA_INSTANCE_ID": "auth-1",
		"SESSIONHA_TABLE": "t", "SESSIONHA_OPS_TOPIC_ARN": "arn:ops", "SESSIONHA_QUERY_TOPIC_ARN": "arn:q",
		"SESSIONHA_REPLY_TOPIC_ARN": "arn:r", "SESSIONHA_NOTICE_TOPIC_ARN": "arn:n", "SESSIONHA_LIFECYCLE_TOPIC_ARN": "arn:l",
		"SESSIONHA_PERSISTENCE": "memory", "SESSIONHA_FREQUENCY": "time-based", "SESSIONHA_SCOPE": "modified-session",
		"SESSIONHA_READ_PATH": "bus", "SESSIONHA_MAX_WAIT": "250ms", "SESSIONHA_FLUSH_INTERVAL": "3s",
		"SESSIONHA_MAX_SESSIONS": "42", "SESSIONHA_FILE_DIR": "/var/lib/sessions", "SESSIONHA_PUBLISH_TIMEOUT": "750ms",
		"SESSIONHA_JOURNAL_DIR": "/var/lib/sessionha", "SESSIONHA_SWEEP_QUEUES_EVERY": "off", "SESSIONHA_ORPHAN_QUEUE_AGE": "2h",
		"SESSIONHA_READS": "always", "SESSIONHA_SAVE_WAIT": "applied", "SESSIONHA_MAX_SESSION_LIFE": "720h",
		"SESSIONHA_NOTICE_TOPIC_ARNS": "arn:aws:sns:eu-west-1:123456789012:sessionha-eu-notice, arn:aws:sns:us-east-1:123456789012:sessionha-us-notice",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Site: "eu", Cluster: "c1", InstanceID: "auth-1", Table: "t", OpsTopicARN: "arn:ops",
		QueryTopicARN: "arn:q", ReplyTopicARN: "arn:r", NoticeTopicARN: "arn:n", LifecycleTopicARN: "arn:l", Persistence: PersistenceMemory,
		Frequency: FrequencyTimeBased, Scope: ScopeModifiedSession, ReadPath: ReadBus, MaxWait: 250 * time.Millisecond,
		FlushInterval: 3 * time.Second, MaxSessions: 42, Dir: "/var/lib/sessions", PublishTimeout: 750 * time.Millisecond,
		JournalDir: "/var/lib/sessionha", SweepQueuesEvery: -1, OrphanQueueAge: 2 * time.Hour,
		Reads: ReadsAlways, SaveWait: SaveApplied, MaxSessionLife: 720 * time.Hour,
		NoticeTopicARNs: []string{"arn:aws:sns:eu-west-1:123456789012:sessionha-eu-notice", "arn:aws:sns:us-east-1:123456789012:sessionha-us-notice"}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
}

func TestOpenRequiresTheResourcesOfHA(t *testing.T) {
	_, err := Open(context.Background(), Config{OpsTopicARN: "arn:x"})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_TABLE") {
		t.Fatalf("got %v, want an error naming SESSIONHA_TABLE", err)
	}
	_, err = Open(context.Background(), Config{Table: "t"})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_OPS_TOPIC_ARN") {
		t.Fatalf("got %v, want an error naming SESSIONHA_OPS_TOPIC_ARN", err)
	}
}

// TestOpenSupportsEveryPersistenceFrequencyAndScope: only the bus read path is refused,
// and its error says which variable and what to use instead.
func TestOpenSupportsEveryPersistenceFrequencyAndScope(t *testing.T) {
	for _, f := range []Frequency{FrequencyWebMethod, FrequencyTimeBased} {
		for _, sc := range []Scope{ScopeSession, ScopeModifiedSession, ScopeModifiedAttribute} {
			for _, p := range []Persistence{PersistenceMemory, PersistenceFile} {
				s, err := Open(context.Background(), Config{Persistence: p, Frequency: f, Scope: sc, Dir: t.TempDir()})
				if err != nil {
					t.Fatalf("%s %s %s: %v", p, f, sc, err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
			// ha needs no AWS to open: clients are built, nothing is called.
			s, err := Open(context.Background(), Config{Frequency: f, Scope: sc, Table: "t", OpsTopicARN: "arn:aws:sns:us-east-1:000000000000:ops",
				AWS: &aws.Config{Region: "us-east-1"}, JournalDir: t.TempDir()})
			if err != nil {
				t.Fatalf("ha %s %s: %v", f, sc, err)
			}
			if s.Mode() != ModeFailover {
				t.Errorf("ha opens in mode %s", s.Mode())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, err := Open(context.Background(), Config{Table: "t", OpsTopicARN: "arn:x", ReadPath: ReadBus, AWS: &aws.Config{Region: "us-east-1"}})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_READ_PATH") || !strings.Contains(err.Error(), "SESSIONHA_REPLY_TOPIC_ARN") {
		t.Fatalf("read path bus without its topics: got %v, want an error naming SESSIONHA_READ_PATH and the topics it needs", err)
	}
	_, err = Open(context.Background(), Config{Table: "t", OpsTopicARN: "arn:x", NoticeScope: NoticeAll, AWS: &aws.Config{Region: "us-east-1"}})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_NOTICE_TOPIC_ARN") {
		t.Fatalf("notices without their topic: got %v, want an error naming SESSIONHA_NOTICE_TOPIC_ARN", err)
	}
	// A queue's name is made of the site: an instance with a queue needs a site that fits.
	for _, site := range []string{"eu.west", strings.Repeat("s", 33)} {
		_, err = Open(context.Background(), Config{Site: site, Table: "t", OpsTopicARN: "arn:x", NoticeTopicARN: "arn:n", AWS: &aws.Config{Region: "us-east-1"}})
		if err == nil || !strings.Contains(err.Error(), "SESSIONHA_SITE") {
			t.Fatalf("site %q with notices: got %v, want an error naming SESSIONHA_SITE", site, err)
		}
	}
}

// TestMemoryStore exercises the Store API with persistence memory (no AWS at all).
func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	store, err := Open(ctx, Config{Persistence: PersistenceMemory, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if store.Mode() != ModeLocal {
		t.Errorf("mode %v, want local", store.Mode())
	}
	s, err := store.Create(ctx, NewSession{Principal: "alice", Attrs: map[string][]byte{"a": []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	if !validID(s.ID()) {
		t.Fatalf("id %q is not 256 bits of base64url", s.ID())
	}
	s.Set("b", []byte("2"))
	s.Delete("a")
	if err := store.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := store.Load(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Get("a"); ok || got.Principal() != "alice" {
		t.Errorf("loaded %v", got.Names())
	}
	if v, _ := got.Get("b"); string(v) != "2" {
		t.Errorf("b = %q", v)
	}
	got.Set("b", []byte("changed without Save"))
	if again, _ := store.Load(ctx, s.ID()); string(must(again.Get("b"))) != "2" {
		t.Error("a loaded copy's unsaved change leaked into the store")
	}
	if err := store.Destroy(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(ctx, s.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("after destroy: %v", err)
	}
	if err := store.Save(ctx, got); !errors.Is(err, ErrNotFound) {
		t.Errorf("save after destroy: %v", err)
	}
	// MaxSessions: the least recently used goes first.
	var ids []string
	for range 3 {
		s, _ := store.Create(ctx, NewSession{Principal: "bob"})
		ids = append(ids, s.ID())
	}
	if _, err := store.Load(ctx, ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("the oldest of 3 sessions survived MaxSessions 2: %v", err)
	}
	if _, err := store.Load(ctx, ids[2]); err != nil {
		t.Errorf("the newest session was evicted: %v", err)
	}
	store.Close()
	if _, err := store.Load(ctx, ids[2]); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func must(v []byte, _ bool) []byte { return v }

func TestClockIsMonotonicAndObserves(t *testing.T) {
	wall := time.UnixMilli(1_800_000_000_000)
	c := clock{now: func() time.Time { return wall }}
	a, b := c.next(), c.next()
	if !(b > a) || len(a) != 16 {
		t.Fatalf("%s then %s", a, b)
	}
	wall = wall.Add(-time.Hour) // the wall clock steps back
	if d := c.next(); !(d > b) {
		t.Fatalf("went back: %s after %s", d, b)
	}
	far := "7fffffffffff0000"
	c.observe(far)
	if e := c.next(); !(e > far) {
		t.Fatalf("next %s is not past observed %s", e, far)
	}
}
