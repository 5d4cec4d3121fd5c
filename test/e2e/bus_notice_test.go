package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"

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

// TestBusInstanceQueueLifecycle: an instance's queue exists while it is open, is removed
// at Close, and an orphan left by a crash is taken over by the next Open of that id
// without a second subscription.
func TestBusInstanceQueueLifecycle(t *testing.T) {
	ctx := context.Background()
	replyTopic := theSite.Outputs.TopicARNs[topology.TopicReply]
	subsOf := func(instance string) int {
		out, err := sns.NewFromConfig(theSite.AWS).ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(replyTopic)})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range out.Subscriptions {
			if containsQueueName(aws.ToString(s.Endpoint), "sessionha-local-reply-"+instance) {
				n++
			}
		}
		return n
	}
	name := "orphan-" + randomSuffix()
	// An auth server process reading over the bus, SIGKILLed: its queue is an orphan.
	// (One process holds an instance id once: a second Store of it is refused.)
	crashed := startInstanceWith(t, name, "SESSIONHA_READ_PATH=bus")
	if n := subsOf(name); n != 1 {
		t.Fatalf("%d subscriptions for an open instance, want 1", n)
	}
	crashed.kill()
	again := openHA(t, name, busReader) // the instance restarted with its id
	if n := subsOf(name); n != 1 {
		t.Fatalf("%d subscriptions after the restart, want 1 (the orphan's replaced)", n)
	}
	s, err := openHA(t, "writer-"+randomSuffix(), nil).Create(ctx, client.NewSession{Principal: "frank"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the restarted instance reads over the bus", func() (bool, string) {
		_, err := again.Load(ctx, s.ID())
		return err == nil, fmt.Sprint(err)
	})
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
	if n := subsOf(name); n != 0 {
		t.Errorf("%d subscriptions after Close, want 0", n)
	}
}

func containsQueueName(arn, name string) bool {
	return len(arn) >= len(name) && arn[len(arn)-len(name):] == name
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
