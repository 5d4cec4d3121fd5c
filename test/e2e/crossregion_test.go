package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

// twoRegions starts a stack of two sites in two regions, as cdk.json's example deploys
// them (eu in eu-west-1, primary; us in us-east-1), with a replica of the table in each
// region replicated by the stand-in for global tables at its default lag, and the short
// function timeouts of localtest.Site. It stops when the test ends.
func twoRegions(t *testing.T) *site.Stack {
	t.Helper()
	settings := topology.Settings{FunctionTimeout: 2 * time.Second, RetryBase: time.Second, RetryMax: 2 * time.Second}
	fnOut := &lines{}
	st, err := site.StartStack(context.Background(), site.StackOptions{
		Sites: []topology.Site{
			{Name: "eu", Region: "eu-west-1", Primary: true, Settings: settings},
			{Name: "us", Region: "us-east-1", Settings: settings},
		},
		EdgePort: -1, RunDir: t.TempDir(), FunctionOutput: fnOut,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out := strings.Split(strings.TrimRight(fnOut.String(), "\n"), "\n")
			t.Logf("last lines the functions printed:\n%s", strings.Join(out[max(0, len(out)-30):], "\n"))
		}
		st.Stop()
	})
	return st
}

// openAt opens an instance of site s, configured as the site's env file says (every
// site's notice topic included), then edited, and, unless its notices are off, waits
// until its queue is subscribed to every site's notice topic.
func openAt(t *testing.T, st *site.Stack, s *site.Site, name string, edit func(*client.Config)) *client.Store {
	t.Helper()
	cfg := client.Config{
		Site: s.Topology.Site.Name, Table: s.Outputs.Table, OpsTopicARN: s.Outputs.TopicARNs[topology.TopicOps],
		NoticeTopicARN: s.Outputs.TopicARNs[topology.TopicNotice], NoticeTopicARNs: s.NoticeTopicARNs(),
		InstanceID: name + "-" + randomSuffix(), AWS: &s.AWS, Logger: slog.New(slog.DiscardHandler), JournalDir: t.TempDir(),
	}
	if edit != nil {
		edit(&cfg)
	}
	store, err := client.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s on site %s: %v", name, s.Topology.Site.Name, err)
	}
	t.Cleanup(func() { store.Close() })
	if cfg.NoticeScope != client.NoticeOff {
		subscribedEverywhere(t, st, s, cfg.InstanceID)
	}
	return store
}

// subscribedEverywhere waits until instance id of site s has its queue subscribed to every
// site's notice topic, asking each topic's region.
func subscribedEverywhere(t *testing.T, st *site.Stack, s *site.Site, id string) {
	t.Helper()
	queue := ":" + client.InstanceQueueName(s.Topology.Site.Name, id)
	for _, topic := range s.NoticeTopicARNs() {
		region := strings.Split(topic, ":")[3]
		sn := sns.NewFromConfig(st.Site(regionSite(st, region)).AWS)
		localtest.Eventually(t, "the queue of "+id+" subscribed to "+topic, func() (bool, string) {
			l, err := sn.ListSubscriptionsByTopic(context.Background(), &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topic)})
			if err != nil {
				return false, err.Error()
			}
			for _, sub := range l.Subscriptions {
				if strings.HasSuffix(aws.ToString(sub.Endpoint), queue) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d subscriptions, none of it", len(l.Subscriptions))
		})
	}
}

func regionSite(st *site.Stack, region string) string {
	for _, s := range st.Sites {
		if s.AWS.Region == region {
			return s.Topology.Site.Name
		}
	}
	return ""
}

// TestLogoutReachesAnotherRegionByNotice: with notice scope all, a logout in eu reaches
// the instances in us that hold the session (one owning it, serving it from memory with
// Reads owner; one reading the table every time with Reads always) through their
// subscriptions to eu's notice topic, while replication between the regions is cut, so
// that the table of us still holds the session active: they refuse it all the same. An
// instance in us with scope site takes no notice from eu (a witness with scope all in
// the same region shows that the notice has arrived there), and keeps serving the session
// from its region's table until replication brings the logout. A takeover in us tells the
// old owner in eu that its copy is stale, through eu's subscription to us's notice topic.
func TestLogoutReachesAnotherRegionByNotice(t *testing.T) {
	st := twoRegions(t)
	eu, us := st.Site("eu"), st.Site("us")
	ctx := context.Background()
	all := func(c *client.Config) { c.NoticeScope = client.NoticeAll }
	a := openAt(t, st, eu, "eu-a", all) // Reads owner: the default with notices
	owner := openAt(t, st, us, "us-owner", all)
	reader := openAt(t, st, us, "us-reader", func(c *client.Config) { all(c); c.Reads = client.ReadsAlways })
	siteOnly := openAt(t, st, us, "us-site", func(c *client.Config) { c.NoticeScope = client.NoticeSite; c.Reads = client.ReadsAlways })
	witness := openAt(t, st, us, "us-witness", func(c *client.Config) { all(c); c.Reads = client.ReadsAlways })

	// A session created in eu reaches us by replication; us's owner takes it over (a
	// write in us: it owns the session), which tells a, the owner in eu, by a superseded
	// notice that crosses from us's notice topic to a's queue.
	sess, err := a.Create(ctx, client.NewSession{Principal: "alice", MaxIdle: time.Hour, MaxLife: 8 * time.Hour,
		Attrs: map[string][]byte{"cart": []byte("eu")}})
	if err != nil {
		t.Fatal(err)
	}
	id := sess.ID()
	var onUS *client.Session
	localtest.Eventually(t, "the session replicated to us", func() (bool, string) {
		onUS, err = owner.Load(ctx, id)
		return err == nil, fmt.Sprint(err)
	})
	before := a.Stats().Superseded
	onUS.Set("cart", []byte("us"))
	if err := owner.SaveApplied(ctx, onUS); err != nil {
		t.Fatal(err)
	}
	localtest.Eventually(t, "eu's old owner told of the takeover in us", func() (bool, string) {
		return a.Stats().Superseded > before, fmt.Sprintf("superseded notices taken by a: %d", a.Stats().Superseded)
	})
	for name, s := range map[string]*client.Store{"reader": reader, "site-only": siteOnly, "witness": witness} {
		if got, err := s.Load(ctx, id); err != nil || string(must(got.Get("cart"))) != "us" {
			t.Fatalf("%s in us before the logout: %v", name, err)
		}
	}
	localtest.Eventually(t, "the takeover replicated to eu", func() (bool, string) {
		got, err := a.Load(ctx, id)
		if err != nil {
			return false, err.Error()
		}
		v, _ := got.Get("cart")
		return string(v) == "us", "cart " + string(v)
	})

	// Replication cut: only a notice can tell us of the logout.
	if err := st.Replicator.Partition("eu-west-1", "us-east-1"); err != nil {
		t.Fatal(err)
	}
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if err := st.Replicator.Heal("eu-west-1", "us-east-1"); err != nil {
				t.Error(err)
			}
		}
	}
	defer heal()
	if err := a.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*client.Store{"owner (Reads owner)": owner, "reader (Reads always)": reader, "witness": witness} {
		localtest.Eventually(t, "us's "+name+" refuses the session logged out in eu", func() (bool, string) {
			_, err := s.Load(ctx, id)
			return errors.Is(err, client.ErrNotFound), fmt.Sprintf("Load: %v; notices taken: %d", err, s.Stats().Notices)
		})
		if s.Stats().Notices == 0 {
			t.Errorf("us's %s refused the session without a notice", name)
		}
	}
	// Not by replication: us's table still holds the session active.
	if got, err := siteOnly.Load(ctx, id); err != nil || string(must(got.Get("cart"))) != "us" {
		t.Fatalf("with replication cut, an instance of us reading its table got %v: the logout came by replication, not by notice", err)
	}
	if n := siteOnly.Stats().Notices; n != 0 {
		t.Errorf("an instance with scope site took %d notices from another site", n)
	}

	// Once replication brings the logout, us's scope-site instance refuses it too.
	heal()
	localtest.Eventually(t, "the logout replicated to us", func() (bool, string) {
		_, err := siteOnly.Load(ctx, id)
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
}

func must(v []byte, _ bool) []byte { return v }
