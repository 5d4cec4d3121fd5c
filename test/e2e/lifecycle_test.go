package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/site"
)

// The lifecycle events' test runs on a stack of its own, two sites in two regions (eu,
// the primary, and us), whose tombstone grace and TTL sweep are short enough for a
// session to expire and be swept within seconds, as DynamoDB's TTL would days later.

func startLifecycleStack(t *testing.T) *site.Stack {
	t.Helper()
	settings := topology.Settings{FunctionTimeout: 2 * time.Second, RetryBase: time.Second, RetryMax: 2 * time.Second,
		TombstoneGrace: time.Second}
	st, err := site.StartStack(context.Background(), site.StackOptions{
		Sites: []topology.Site{{Name: "eu", Region: "eu-west-1", Primary: true, Settings: settings},
			{Name: "us", Region: "us-east-1", Settings: settings}},
		EdgePort: -1, RunDir: t.TempDir(), FunctionOutput: fnLog,
		TTLDelay: time.Millisecond, TTLPeriod: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Stop)
	return st
}

// openOn opens a store of instance name on a site, as its env file configures one.
func openOn(t *testing.T, s *site.Site, name string, edit func(*client.Config)) *client.Store {
	t.Helper()
	cfg := client.Config{
		Site: s.Topology.Site.Name, Table: s.Outputs.Table, InstanceID: name, AWS: &s.AWS,
		OpsTopicARN:       s.Outputs.TopicARNs[topology.TopicOps],
		NoticeTopicARN:    s.Outputs.TopicARNs[topology.TopicNotice],
		LifecycleTopicARN: s.Outputs.TopicARNs[topology.TopicLifecycle],
		Logger:            slog.New(slog.DiscardHandler), JournalDir: t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	st, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// lifecycleTap is a queue of the test's own on a site's lifecycle topic, with no filter
// (an auditor's), raw delivery: it keeps every message as it came.
type lifecycleTap struct {
	t    *testing.T
	site string
	q    *sqs.Client
	url  string
	msgs []sqstypes.Message
}

func newLifecycleTap(t *testing.T, s *site.Site) *lifecycleTap {
	t.Helper()
	ctx := context.Background()
	q := sqs.NewFromConfig(s.AWS)
	made, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("e2e-lifecycle-" + s.Topology.Site.Name + "-" + randomSuffix())})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: made.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sns.NewFromConfig(s.AWS).Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(s.Outputs.TopicARNs[topology.TopicLifecycle]), Protocol: aws.String("sqs"),
		Endpoint:   aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
		Attributes: map[string]string{"RawMessageDelivery": "true"},
	}); err != nil {
		t.Fatal(err)
	}
	return &lifecycleTap{t: t, site: s.Topology.Site.Name, q: q, url: aws.ToString(made.QueueUrl)}
}

// poll takes what has arrived.
func (p *lifecycleTap) poll() {
	p.t.Helper()
	for {
		out, err := p.q.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(p.url),
			MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"}})
		if err != nil {
			p.t.Fatalf("receive from the %s lifecycle tap: %v", p.site, err)
		}
		for _, m := range out.Messages {
			_, _ = p.q.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(p.url), ReceiptHandle: m.ReceiptHandle})
			p.msgs = append(p.msgs, m)
		}
		if len(out.Messages) == 0 {
			return
		}
	}
}

// events decodes what the tap holds; an undecodable message fails the test.
func (p *lifecycleTap) events() []*events.Lifecycle {
	p.t.Helper()
	var out []*events.Lifecycle
	for _, m := range p.msgs {
		e, err := events.DecodeLifecycle([]byte(aws.ToString(m.Body)))
		if err != nil {
			p.t.Fatalf("the %s lifecycle topic carried a message that does not decode: %v", p.site, err)
		}
		out = append(out, e)
	}
	return out
}

// want waits until the tap holds an event of kind for the session handle and returns
// it, after checking that every copy of it (same key) is the same event.
func (p *lifecycleTap) want(kind events.LifecycleKind, handle, what string) *events.Lifecycle {
	p.t.Helper()
	var found *events.Lifecycle
	eventually(p.t, what+" on the "+p.site+" lifecycle topic", func() (bool, string) {
		p.poll()
		var kinds []string
		for _, e := range p.events() {
			if e.ID == handle {
				kinds = append(kinds, string(e.Kind))
				if e.Kind == kind {
					found = e
				}
			}
		}
		return found != nil, fmt.Sprintf("events of the session: %v", kinds)
	})
	copies := 0
	for _, e := range p.events() {
		if e.Key == found.Key {
			copies++
			if !reflect.DeepEqual(e, found) {
				p.t.Errorf("%s: two deliveries of key %s differ:\n %+v\n %+v", what, found.Key, e, found)
			}
		}
	}
	if kind != events.LifecycleMoved {
		if want := events.LifecycleKey(kind, "default", handle, ""); found.Key != want {
			p.t.Errorf("%s: key %s, want %s", what, found.Key, want)
		}
	}
	p.t.Logf("%s: %s %s (reason %q, by %s of %s), %d deliveries", what, found.Kind, found.Key, found.Reason, found.By, found.BySite, copies)
	return found
}

// TestLifecycleEvents: each kind of lifecycle event, for a session of each way of ending
// (logout, revoke, revoke-all, the per-user cap, an SSO group's logout, a renewal, idle
// expiry swept by TTL) and of moving (a failover write by another instance, in the same
// site and from another region), arrives on the lifecycle topic of the session's site,
// once or more with one idempotency key, and on no other site's; no message carries a
// session id or an attribute value; and an instance's listener hears its own sessions'
// ends and moves.
func TestLifecycleEvents(t *testing.T) {
	ctx := context.Background()
	st := startLifecycleStack(t)
	eu, us := st.Site("eu"), st.Site("us")
	euTap, usTap := newLifecycleTap(t, eu), newLifecycleTap(t, us)
	sfx := randomSuffix()
	a := openOn(t, eu, "lc-a-"+sfx, func(c *client.Config) { c.MaxSessionsPerPrincipal = 2 })
	b := openOn(t, eu, "lc-b-"+sfx, nil)
	c := openOn(t, us, "lc-c-"+sfx, nil)
	var (
		mu    sync.Mutex
		heard = map[string][]client.LifecycleEvent{} // a's listener, by handle
	)
	a.OnLifecycle(func(e client.LifecycleEvent) {
		mu.Lock()
		defer mu.Unlock()
		heard[e.Handle] = append(heard[e.Handle], e)
	})
	const secret = "a-secret-attribute-value"
	var ids []string // every session id made: none may appear on the topics
	create := func(s *client.Store, principal, group string, idle time.Duration) *client.Session {
		t.Helper()
		sess, err := s.Create(ctx, client.NewSession{Principal: principal + "-" + sfx, Group: group, MaxIdle: idle})
		if err != nil {
			t.Fatal(err)
		}
		sess.Set("token", []byte(secret))
		if err := s.Save(ctx, sess); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID())
		return sess
	}
	h := func(s *client.Session) string { return client.Handle(s.ID()) }
	ended := func(e *events.Lifecycle, kind events.LifecycleKind, reason, by string) {
		t.Helper()
		if e.Kind != kind || e.Reason != reason || e.By != by || e.Instance != "lc-a-"+sfx || e.Site != "eu" || e.Created == 0 {
			t.Errorf("end %+v: want %s, reason %q, by %q, of instance lc-a-%s of eu", e, kind, reason, by, sfx)
		}
	}

	// Logout.
	s1 := create(a, "alice", "", 0)
	if e := euTap.want(events.LifecycleCreated, h(s1), "created"); e.Instance != "lc-a-"+sfx || e.Site != "eu" || e.Principal != "alice-"+sfx {
		t.Errorf("created %+v", e)
	}
	if err := a.Destroy(ctx, s1.ID()); err != nil {
		t.Fatal(err)
	}
	ended(euTap.want(events.LifecycleDestroyed, h(s1), "logout"), events.LifecycleDestroyed, events.ReasonLogout, "lc-a-"+sfx)

	// Revoked by another instance; revoke-all.
	s2 := create(a, "bob", "", 0)
	listed(t, b, "bob-"+sfx, 1)
	if err := b.Revoke(ctx, "bob-"+sfx, h(s2)); err != nil {
		t.Fatal(err)
	}
	ended(euTap.want(events.LifecycleDestroyed, h(s2), "revoke"), events.LifecycleDestroyed, events.ReasonRevoked, "lc-b-"+sfx)
	s3, s4 := create(a, "erin", "", 0), create(a, "erin", "", 0)
	listed(t, b, "erin-"+sfx, 2)
	if n, err := b.DestroyAll(ctx, "erin-"+sfx); err != nil || n != 2 {
		t.Fatalf("DestroyAll: %d %v", n, err)
	}
	for _, s := range []*client.Session{s3, s4} {
		ended(euTap.want(events.LifecycleDestroyed, h(s), "revoke-all"), events.LifecycleDestroyed, events.ReasonRevokeAll, "lc-b-"+sfx)
	}

	// The per-user cap (2 for instance a): the third session ends the first.
	var carol []*client.Session
	for i := range 3 {
		carol = append(carol, create(a, "carol", "", 0))
		listed(t, a, "carol-"+sfx, min(i+1, 2))
	}
	ended(euTap.want(events.LifecycleDestroyed, h(carol[0]), "session cap"), events.LifecycleDestroyed, events.ReasonSessionCap, "lc-a-"+sfx)

	// An SSO group: logging out of one ends the other.
	d1, d2 := create(a, "dave", "g1", 0), create(a, "dave", "g1", 0)
	listed(t, a, "dave-"+sfx, 2)
	if err := a.Destroy(ctx, d1.ID()); err != nil {
		t.Fatal(err)
	}
	ended(euTap.want(events.LifecycleDestroyed, h(d1), "the group member logged out of"), events.LifecycleDestroyed, events.ReasonLogout, "lc-a-"+sfx)
	if e := euTap.want(events.LifecycleDestroyed, h(d2), "sso group"); e.Reason != events.ReasonSSOGroup || e.Group != "g1" {
		t.Errorf("sso group end %+v", e)
	}

	// A renewal ends the old id and creates the new one.
	r1 := create(a, "frank", "", 0)
	r2, err := a.Renew(ctx, r1.ID(), client.NewSession{Principal: "frank-" + sfx})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, r2.ID())
	ended(euTap.want(events.LifecycleDestroyed, h(r1), "renew"), events.LifecycleDestroyed, events.ReasonRenew, "lc-a-"+sfx)
	euTap.want(events.LifecycleCreated, h(r2), "created by a renewal")

	// Idle expiry: the TTL sweep deletes the item, and the event says when the session
	// ended (its deadline), not when it was swept.
	x := create(a, "gina", "", 2*time.Second)
	xc := euTap.want(events.LifecycleCreated, h(x), "created, short-lived")
	ex := euTap.want(events.LifecycleExpired, h(x), "idle expiry")
	ended(ex, events.LifecycleExpired, events.ExpiredIdle, "")
	if ex.At < xc.At+2000 || ex.At > xc.At+5000 {
		t.Errorf("expired at %d, created at %d: want the deadline, about 2 s after its creation (its last save)", ex.At, xc.At)
	}

	// Moved: another instance of the site writes the session (a failover).
	m := create(a, "hal", "", 0)
	euTap.want(events.LifecycleCreated, h(m), "created, to move")
	got, err := b.Load(ctx, m.ID())
	if err != nil {
		t.Fatal(err)
	}
	got.Set("step", []byte("2"))
	if err := b.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	if e := euTap.want(events.LifecycleMoved, h(m), "moved within the site"); e.Instance != "lc-a-"+sfx || e.By != "lc-b-"+sfx || e.BySite != "eu" {
		t.Errorf("moved %+v", e)
	}

	// Moved from another region: an instance of us takes over a session of eu once it is
	// replicated; the event is eu's, whose instance owned it.
	n := create(a, "ian", "", 0)
	var taken *client.Session
	eventually(t, "the session replicated to us", func() (bool, string) {
		var err error
		taken, err = c.Load(ctx, n.ID())
		return err == nil, fmt.Sprint(err)
	})
	taken.Set("step", []byte("2"))
	if err := c.Save(ctx, taken); err != nil {
		t.Fatal(err)
	}
	if e := euTap.want(events.LifecycleMoved, h(n), "moved to another region"); e.Instance != "lc-a-"+sfx || e.Site != "eu" || e.By != "lc-c-"+sfx || e.BySite != "us" {
		t.Errorf("moved across regions %+v", e)
	}

	// A session of us: its events are us's.
	u := create(c, "judy", "", 0)
	usTap.want(events.LifecycleCreated, h(u), "created in us")
	if err := c.Destroy(ctx, u.ID()); err != nil {
		t.Fatal(err)
	}
	usTap.want(events.LifecycleDestroyed, h(u), "logout in us")

	// Each session's events come from its own site's region only, though every region's
	// stream carries every change: after replication settles, nothing of eu's sessions on
	// us's topic, nor of us's on eu's.
	if err := st.Replicator.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the streams' last records through the functions
	euTap.poll()
	usTap.poll()
	for _, e := range usTap.events() {
		if e.ID != h(u) {
			t.Errorf("us's lifecycle topic carried an event of an eu session: %+v", e)
		}
	}
	for _, e := range euTap.events() {
		if e.ID == h(u) {
			t.Errorf("eu's lifecycle topic carried an event of a us session: %+v", e)
		}
	}

	// Nothing identifying in clear: no session id, no attribute value, in any message's
	// body or attributes.
	for _, p := range []*lifecycleTap{euTap, usTap} {
		for _, msg := range p.msgs {
			raw := aws.ToString(msg.Body)
			for k, v := range msg.MessageAttributes {
				raw += " " + k + "=" + aws.ToString(v.StringValue)
			}
			for _, id := range ids {
				if strings.Contains(raw, id) {
					t.Errorf("a lifecycle message carries a session id: %s", strings.ReplaceAll(raw, id, "<id>"))
				}
			}
			if strings.Contains(raw, secret) || strings.Contains(raw, base64.StdEncoding.EncodeToString([]byte(secret))) {
				t.Errorf("a lifecycle message carries an attribute value: %s", raw)
			}
			if aws.ToString(msg.MessageAttributes[events.LifecycleAttrKind].StringValue) == "" {
				t.Errorf("a lifecycle message without its kind attribute: %s", raw)
			}
		}
	}

	// The instance's listener heard its sessions' ends and moves: what another instance
	// did to them included, and the expiry.
	eventually(t, "instance a's listener hears its sessions' ends and moves", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		var missing []string
		for what, w := range map[string]struct {
			handle string
			kind   client.LifecycleKind
			reason string
		}{
			"revoked by b": {h(s2), client.LifecycleDestroyed, events.ReasonRevoked},
			"session cap":  {h(carol[0]), client.LifecycleDestroyed, events.ReasonSessionCap},
			"idle expiry":  {h(x), client.LifecycleExpired, events.ExpiredIdle},
			"moved to b":   {h(m), client.LifecycleMoved, ""},
			"moved to us":  {h(n), client.LifecycleMoved, ""},
		} {
			if !hasEvent(heard[w.handle], w.kind, w.reason) {
				missing = append(missing, what)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v", missing)
	})
	mu.Lock()
	for handle, es := range heard {
		for _, e := range es {
			if e.Kind == client.LifecycleCreated || e.Instance != "lc-a-"+sfx {
				t.Errorf("a's listener heard an event not about its own sessions' ends or moves: %+v (%s)", e, handle)
			}
		}
	}
	mu.Unlock()
	if _, err := a.Load(ctx, s2.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("a revoked session still loads: %v", err)
	}
}

func hasEvent(es []client.LifecycleEvent, kind client.LifecycleKind, reason string) bool {
	for _, e := range es {
		if e.Kind == kind && e.Reason == reason && e.Key != "" && !e.At.IsZero() {
			return true
		}
	}
	return false
}
