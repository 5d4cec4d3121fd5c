package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/infra/topology"
)

func busReader(c *client.Config) {
	c.ReadPath = client.ReadBus
	c.QueryTopicARN = theSite.Outputs.TopicARNs[topology.TopicQuery]
	c.ReplyTopicARN = theSite.Outputs.TopicARNs[topology.TopicReply]
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestBusRead: three instances, one reading over the bus as the old products' failover
// did. It gets what the others wrote, shares one query among concurrent loads, and gives
// ErrTimeout when no answer comes within MaxWait.
func TestBusRead(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "bus-a-"+randomSuffix(), nil)
	b := openHA(t, "bus-b-"+randomSuffix(), nil)
	c := openHA(t, "bus-c-"+randomSuffix(), busReader)

	const n = 60
	ids := make([]string, n)
	for i := range ids {
		s, err := a.Create(ctx, client.NewSession{Principal: "erin", Attrs: map[string][]byte{"n": []byte(fmt.Sprint(i))}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = s.ID()
	}
	for _, id := range ids {
		eventually(t, "B (direct) sees A's session", func() (bool, string) {
			_, err := b.Load(ctx, id)
			return err == nil, fmt.Sprint(err)
		})
	}
	// Bus reads, one at a time, to measure them.
	var lat []time.Duration
	for i, id := range ids {
		start := time.Now()
		s, err := c.Load(ctx, id)
		lat = append(lat, time.Since(start))
		if err != nil {
			t.Fatalf("bus load %d: %v", i, err)
		}
		if v, _ := s.Get("n"); string(v) != fmt.Sprint(i) || s.Principal() != "erin" {
			t.Fatalf("bus load %d: principal %q n=%q", i, s.Principal(), v)
		}
	}
	if got := c.Stats().BusQueries; got != n {
		t.Errorf("%d bus queries for %d loads of distinct sessions", got, n)
	}
	t.Logf("bus read latency over %d loads: p50 %s, p99 %s (the old products waited at most 5s)",
		n, percentile(lat, .5).Round(time.Millisecond), percentile(lat, .99).Round(time.Millisecond))

	// Concurrent loads of one id share one query.
	fresh := openHA(t, "bus-d-"+randomSuffix(), busReader)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := fresh.Load(ctx, ids[0])
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent bus load: %v", err)
		}
	}
	if q := fresh.Stats().BusQueries; q != 1 {
		t.Errorf("10 concurrent loads of one id sent %d queries, want 1", q)
	}

	// Unknown and destroyed ids are not found over the bus either.
	if _, err := c.Load(ctx, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown id over the bus: %v", err)
	}
	if err := a.Destroy(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	slow := openHA(t, "bus-e-"+randomSuffix(), busReader)
	eventually(t, "a destroyed session is not found over the bus", func() (bool, string) {
		_, err := slow.Load(ctx, ids[1])
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})

	// No answer within MaxWait: the bus holds the query back longer than MaxWait.
	impatient := openHA(t, "bus-f-"+randomSuffix(), func(c *client.Config) { busReader(c); c.MaxWait = 300 * time.Millisecond })
	theSite.Edge.SetDelay("sns", time.Second)
	start := time.Now()
	_, err := impatient.Load(ctx, ids[2])
	theSite.Edge.SetDelay("sns", 0)
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("load with the bus slower than MaxWait: %v, want ErrTimeout", err)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("gave up after %s, before MaxWait", waited)
	}
}

// TestBusInstanceQueueLifecycle: an instance's queue is made at its first Open, tagged
// with its site, its id and when it was last seen alive, and outlives the process: it
// stays, with its subscriptions, after a crash and after a clean Close alike, and the
// next Open of that id takes it over as it is, without a second subscription, and reads
// over the bus at once.
func TestBusInstanceQueueLifecycle(t *testing.T) {
	ctx := context.Background()
	replyTopic := theSite.Outputs.TopicARNs[topology.TopicReply]
	name := "lifecycle-" + randomSuffix()
	queue := client.InstanceQueueName("local", name)
	subs := func() int {
		out, err := sns.NewFromConfig(theSite.AWS).ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(replyTopic)})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range out.Subscriptions {
			if containsQueueName(aws.ToString(s.Endpoint), queue) {
				n++
			}
		}
		return n
	}
	q := sqs.NewFromConfig(theSite.AWS)
	tags := func() map[string]string {
		t.Helper()
		u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
		if err != nil {
			t.Fatalf("the instance's queue %s: %v", queue, err)
		}
		tg, err := q.ListQueueTags(ctx, &sqs.ListQueueTagsInput{QueueUrl: u.QueueUrl})
		if err != nil {
			t.Fatal(err)
		}
		return tg.Tags
	}
	s, err := openHA(t, "writer-"+randomSuffix(), nil).Create(ctx, client.NewSession{Principal: "frank"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the session is in the table", func() (bool, string) { return tableItem(t, s.ID()) != nil, "not yet" })

	crashed := startInstanceWith(t, name, "SESSIONHA_READ_PATH=bus")
	if n := subs(); n != 1 {
		t.Fatalf("%d subscriptions for an open instance, want 1", n)
	}
	tg := tags()
	seen, err := time.Parse(time.RFC3339, tg["sessionha:last-seen"])
	if tg["sessionha:site"] != "local" || tg["sessionha:instance"] != name || err != nil || time.Since(seen) > time.Minute {
		t.Fatalf("tags of an open instance's queue: %v, want its site, its id and a last-seen time of now", tg)
	}
	u, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	checkInstanceQueuePolicy(t, a.Attributes)
	crashed.kill()
	for i, how := range []string{"after a crash", "after a clean Close"} {
		again := openHA(t, name, busReader) // the instance restarted with its id
		if n := subs(); n != 1 {
			t.Fatalf("%s: %d subscriptions after the restart, want 1 (the predecessor's, kept)", how, n)
		}
		if _, err := again.Load(ctx, s.ID()); err != nil {
			t.Fatalf("%s: the restarted instance's first bus read: %v", how, err)
		}
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}
		if n := subs(); n != 1 {
			t.Errorf("%s: %d subscriptions after Close, want 1: the queue stays, subscribed, for the next Open", how, n)
		}
		if tg := tags(); tg["sessionha:instance"] != name {
			t.Errorf("%s (round %d): the queue's tags after Close: %v", how, i, tg)
		}
	}
}

// TestLogoutEverywhere: a logout on A is refused by B at once, B's cached copy
// included; measured over 100 logouts. Notices follow their scope.
func TestLogoutEverywhere(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "logout-a-"+randomSuffix(), nil)
	b := openHA(t, "logout-b-"+randomSuffix(), nil)
	otherSite := openHA(t, "logout-x-"+randomSuffix(), func(c *client.Config) { c.Site = "elsewhere" })
	allSites := openHA(t, "logout-y-"+randomSuffix(), func(c *client.Config) { c.Site = "elsewhere"; c.NoticeScope = client.NoticeAll })

	const n = 100
	ids := make([]string, n)
	for i := range ids {
		s, err := a.Create(ctx, client.NewSession{Principal: "gina"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = s.ID()
	}
	for _, id := range ids { // B holds every session, as after a failover
		eventually(t, "B loads the session", func() (bool, string) {
			_, err := b.Load(ctx, id)
			return err == nil, fmt.Sprint(err)
		})
	}
	noticesBefore := b.Stats().Notices
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			if err := a.Destroy(ctx, id); err != nil {
				t.Error(err)
				return
			}
			for {
				if _, err := b.Load(ctx, id); errors.Is(err, client.ErrNotFound) {
					lat[i] = time.Since(start)
					return
				}
				if time.Since(start) > 30*time.Second {
					t.Errorf("B still serves a session 30s after its logout on A")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	t.Logf("logout propagation A -> B over %d logouts: p50 %s, p99 %s", n,
		percentile(lat, .5).Round(time.Millisecond), percentile(lat, .99).Round(time.Millisecond))
	eventually(t, "B took a notice for every logout", func() (bool, string) {
		got := b.Stats().Notices - noticesBefore
		return got >= n, fmt.Sprintf("%d notices", got)
	})
	eventually(t, "an instance of another site with scope all takes them too", func() (bool, string) {
		return allSites.Stats().Notices >= n, fmt.Sprintf("%d notices", allSites.Stats().Notices)
	})
	if got := otherSite.Stats().Notices; got != 0 {
		t.Errorf("an instance of another site with scope site took %d notices of this site", got)
	}
}

// checkInstanceQueuePolicy checks an instance queue's attributes: a short retention, and
// a policy that lets only the site's topics deliver and refuses every request not made
// over TLS.
func checkInstanceQueuePolicy(t *testing.T, attrs map[string]string) {
	t.Helper()
	arn := attrs["QueueArn"]
	var doc struct {
		Statement []struct {
			Effect    string
			Principal any
			Action    any
			Resource  string
			Condition map[string]map[string]any
		}
	}
	if err := json.Unmarshal([]byte(attrs["Policy"]), &doc); err != nil {
		t.Fatalf("the instance queue's policy %q: %v", attrs["Policy"], err)
	}
	tls, deliver := false, false
	for _, st := range doc.Statement {
		switch {
		case st.Effect == "Deny" && fmt.Sprint(st.Action) == "sqs:*" && st.Resource == arn && fmt.Sprint(st.Condition["Bool"]["aws:SecureTransport"]) == "false":
			tls = true
		case st.Effect == "Allow" && fmt.Sprint(st.Action) == "sqs:SendMessage" && st.Resource == arn && st.Condition["ArnEquals"]["aws:SourceArn"] != nil:
			deliver = true
		default:
			t.Errorf("the instance queue's policy has an unexpected statement: %+v", st)
		}
	}
	if !tls || !deliver {
		t.Errorf("the instance queue's policy %s: want a TLS-only Deny and the topics' delivery on %s", attrs["Policy"], arn)
	}
	if attrs["MessageRetentionPeriod"] != "300" {
		t.Errorf("the instance queue keeps messages for %ss, want 300", attrs["MessageRetentionPeriod"])
	}
}

func containsQueueName(arn, name string) bool {
	return len(arn) >= len(name) && arn[len(arn)-len(name):] == name
}
