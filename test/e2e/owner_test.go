package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/local/edge"
)

// calls counts the AWS calls made through one SDK configuration, by service and
// operation ("DynamoDB.BatchGetItem"), with an SDK middleware.
type calls struct {
	mu sync.Mutex
	m  map[string]int
}

// counted is theSite.AWS with a call counter.
func counted() (*aws.Config, *calls) {
	c := &calls{m: map[string]int{}}
	cfg := theSite.AWS.Copy()
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("sessionha-count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.m[awsmiddleware.GetServiceID(ctx)+"."+awsmiddleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	})
	return &cfg, c
}

// take returns the calls since the last take, but the instance's own queue's receive
// loop (long polls and deletes, which run whatever the caller does).
func (c *calls) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.m {
		if k != "SQS.ReceiveMessage" && k != "SQS.DeleteMessageBatch" {
			out[k] = v
		}
	}
	c.m = map[string]int{}
	return out
}

func (c *calls) String() string {
	m := c.take()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// TestOwnerServesFromMemory: the instance that wrote a session serves it from memory,
// with no AWS call (counted by an SDK middleware), once its change is applied as well as
// before; a Load on another instance reads the table.
func TestOwnerServesFromMemory(t *testing.T) {
	ctx := context.Background()
	cfg, n := counted()
	a := openHA(t, "own-a-"+randomSuffix(), func(c *client.Config) { c.AWS = cfg })
	b := openHA(t, "own-b-"+randomSuffix(), nil)
	s, err := a.Create(ctx, client.NewSession{Principal: "olga", Attrs: map[string][]byte{"cart": []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	s.Set("cart", []byte("2"))
	if err := a.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the save applied", func() (bool, string) {
		it := tableItem(t, s.ID())
		return it != nil && string(it.Attrs["cart"]) == "2", fmt.Sprint(it)
	})
	if got := n.take(); got["SNS.Publish"] != 2 {
		t.Fatalf("create and save made calls %v, want two publishes", got)
	}
	const loads = 200
	before := a.Stats()
	for range loads {
		got, err := a.Load(ctx, s.ID())
		if err != nil || string(mustGet(t, got, "cart")) != "2" {
			t.Fatalf("owner's Load: %v", err)
		}
	}
	if got := n.String(); got != "" {
		t.Fatalf("%d Loads by the owner made AWS calls: %s, want none", loads, got)
	}
	if st := a.Stats(); st.OwnedLoads-before.OwnedLoads != loads {
		t.Fatalf("OwnedLoads grew by %d, want %d", st.OwnedLoads-before.OwnedLoads, loads)
	}
	// Another instance has no copy of its own: it reads, and reading makes it no owner.
	for range 2 {
		if _, err := b.Load(ctx, s.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.OwnedLoads != 0 {
		t.Fatalf("an instance that only read served %d Loads as the owner", st.OwnedLoads)
	}
}

func mustGet(t *testing.T, s *client.Session, name string) []byte {
	t.Helper()
	v, ok := s.Get(name)
	if !ok {
		t.Fatalf("the session has no %q", name)
	}
	return v
}

// TestOwnershipMovesOnFailover: A owns a session; B takes it over (loads and saves it).
// Once B's write is applied, A learns it from the superseded notice and reads B's copy
// (A served its own meanwhile, from memory); when A writes again, B does the same.
func TestOwnershipMovesOnFailover(t *testing.T) {
	ctx := context.Background()
	cfgA, callsA := counted()
	a := openHA(t, "move-a-"+randomSuffix(), func(c *client.Config) { c.AWS = cfgA })
	b := openHA(t, "move-b-"+randomSuffix(), nil)
	s, err := a.Create(ctx, client.NewSession{Principal: "piet", Attrs: map[string][]byte{"step": []byte("a1")}})
	if err != nil {
		t.Fatal(err)
	}
	var onB *client.Session
	eventually(t, "B reads A's session", func() (bool, string) {
		onB, err = b.Load(ctx, s.ID())
		return err == nil, fmt.Sprint(err)
	})
	callsA.take()
	onB.Set("step", []byte("b1"))
	if err := b.SaveApplied(ctx, onB); err != nil { // in the table when it returns
		t.Fatal(err)
	}
	eventually(t, "A drops its copy and reads B's", func() (bool, string) {
		got, err := a.Load(ctx, s.ID())
		if err != nil {
			return false, err.Error()
		}
		v, _ := got.Get("step")
		return string(v) == "b1", string(v)
	})
	if st := a.Stats(); st.Superseded == 0 {
		t.Fatalf("A read B's copy without a superseded notice: %+v", st)
	}
	if got := callsA.take(); got["DynamoDB.BatchGetItem"] == 0 {
		t.Fatalf("A's Loads after the takeover made no read: %v", got)
	}
	// A no longer owns it: every Load reads.
	if _, err := a.Load(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	// One read: the session item and its logout item in one BatchGetItem.
	if got := callsA.take(); got["DynamoDB.BatchGetItem"] != 1 {
		t.Fatalf("a Load of a session A no longer owns made calls %v, want one BatchGetItem", got)
	}

	// A takes it back: B learns it the same way.
	onA, err := a.Load(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	onA.Set("step", []byte("a2"))
	if err := a.SaveApplied(ctx, onA); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B drops its copy and reads A's", func() (bool, string) {
		got, err := b.Load(ctx, s.ID())
		if err != nil {
			return false, err.Error()
		}
		v, _ := got.Get("step")
		return string(v) == "a2", string(v)
	})
	callsA.take()
	if _, err := a.Load(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if got := callsA.String(); got != "" {
		t.Fatalf("A owns the session again, yet its Load made calls: %s", got)
	}
}

// TestOwnerLearnsOfALogoutElsewhere: a destroy by another instance reaches the owner, by
// the destroy notice and, were that lost, by the superseded notice sessionop sends.
func TestOwnerLearnsOfALogoutElsewhere(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "out-a-"+randomSuffix(), nil)
	// B takes no destroy notices (scope off, reading always): only the superseded
	// notice tells A, not B's own notice to the site.
	b := openHA(t, "out-b-"+randomSuffix(), func(c *client.Config) { c.NoticeScope = client.NoticeOff; c.NoticeTopicARN = "" })
	s, err := a.Create(ctx, client.NewSession{Principal: "quinn"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "B reads A's session", func() (bool, string) {
		_, err := b.Load(ctx, s.ID())
		return err == nil, fmt.Sprint(err)
	})
	if err := b.Destroy(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A refuses the session", func() (bool, string) {
		_, err := a.Load(ctx, s.ID())
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
	if st := a.Stats(); st.Superseded == 0 {
		t.Fatalf("A learnt of the logout without a superseded notice: %+v", st)
	}
}

// TestSaveApplied: with SaveWait applied, what Save returned is readable on another
// instance at once, without waiting; SaveApplied does the same for one call of a store
// that only publishes, and for a time-based store, which it makes send at once.
func TestSaveApplied(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "applied-a-"+randomSuffix(), func(c *client.Config) { c.SaveWait = client.SaveApplied })
	pub := openHA(t, "applied-p-"+randomSuffix(), nil)
	tb := openHA(t, "applied-t-"+randomSuffix(), func(c *client.Config) { c.Frequency = client.FrequencyTimeBased })
	readers := 0
	readElsewhere := func(id, want string) {
		t.Helper()
		readers++
		other := openHA(t, fmt.Sprintf("applied-r%d-%s", readers, randomSuffix()), nil) // never held it
		got, err := other.Load(ctx, id)
		if err != nil {
			t.Fatalf("another instance, right after the applied save: %v", err)
		}
		if v, _ := got.Get("k"); string(v) != want {
			t.Fatalf("another instance read %q right after the applied save, want %q", v, want)
		}
	}
	for _, x := range []struct {
		name  string
		store *client.Store
		save  func(context.Context, *client.Session) error
	}{
		{"SaveWait applied", a, a.Save},
		{"SaveApplied on a store that publishes", pub, pub.SaveApplied},
		{"SaveApplied on a time-based store", tb, tb.SaveApplied},
	} {
		s, err := x.store.Create(ctx, client.NewSession{Principal: "rosa"})
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		if x.store == a {
			readElsewhere(s.ID(), "") // Create waited too
		}
		for i := range 3 {
			v := fmt.Sprintf("%s %d", x.name, i)
			s.Set("k", []byte(v))
			if err := x.save(ctx, s); err != nil {
				t.Fatalf("%s: %v", x.name, err)
			}
			readElsewhere(s.ID(), v)
		}
	}
	// A SaveApplied that changes nothing more sends what a time-based store still holds.
	tm := openHA(t, "applied-m-"+randomSuffix(), func(c *client.Config) {
		c.Frequency, c.Scope = client.FrequencyTimeBased, client.ScopeModifiedSession
	})
	held, err := tm.Create(ctx, client.NewSession{Principal: "rosa"})
	if err != nil {
		t.Fatal(err)
	}
	held.Set("k", []byte("held"))
	if err := tm.Save(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := tm.SaveApplied(ctx, held); err != nil {
		t.Fatalf("SaveApplied with nothing new, on a time-based store holding changes: %v", err)
	}
	readElsewhere(held.ID(), "held")
	if st := a.Stats(); st.AppliedWaits != 4 || st.AppliedTimeouts != 0 {
		t.Fatalf("the applied store waited %d times (%d timeouts), want 4 and 0", st.AppliedWaits, st.AppliedTimeouts)
	}
}

// TestOwnerReadsStopWhileDegraded: with the bus cut, the instance degrades and every Load
// reads the table, since no superseded notice could reach it.
func TestOwnerReadsStopWhileDegraded(t *testing.T) {
	ctx := context.Background()
	cfg, n := counted()
	a := openHA(t, "deg-own-a-"+randomSuffix(), func(c *client.Config) { c.AWS = cfg })
	s, err := a.Create(ctx, client.NewSession{Principal: "sven"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the create applied", func() (bool, string) { return tableItem(t, s.ID()) != nil, "" })
	theSite.Edge.SetFault("sns", edge.FaultRefuse)
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })
	if err := a.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if a.Mode() != client.ModeDegraded {
		t.Fatalf("mode %s with the bus cut, want degraded", a.Mode())
	}
	n.take()
	if _, err := a.Load(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if got := n.take(); got["DynamoDB.BatchGetItem"] != 1 {
		t.Fatalf("a degraded owner's Load made calls %v, want one BatchGetItem", got)
	}
}

// TestOwnerReadsStopWhileItsQueueIsOutOfReach: while receives from the instance's queue
// fail, notices cannot reach it, so every Load reads; once they work again it owns
// nothing (notices may have been lost meanwhile) until it writes the session again.
func TestOwnerReadsStopWhileItsQueueIsOutOfReach(t *testing.T) {
	ctx := context.Background()
	cfg, n := counted()
	a := openHA(t, "q-own-a-"+randomSuffix(), func(c *client.Config) { c.AWS = cfg })
	s, err := a.Create(ctx, client.NewSession{Principal: "tove"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the create applied", func() (bool, string) { return tableItem(t, s.ID()) != nil, "" })
	loadReads := func() (bool, string) {
		n.take()
		if _, err := a.Load(ctx, s.ID()); err != nil {
			return false, err.Error()
		}
		got := n.take()
		return got["DynamoDB.BatchGetItem"] == 1, fmt.Sprint(got)
	}
	if ok, got := loadReads(); ok {
		t.Fatalf("the owner read the table with its queue in reach: %s", got)
	}
	theSite.Edge.SetFault("sqs", edge.FaultRefuse)
	t.Cleanup(func() { theSite.Edge.SetFault("sqs", edge.FaultNone) })
	eventually(t, "A reads the table while its queue is out of reach", loadReads) // once its long poll ends
	theSite.Edge.SetFault("sqs", edge.FaultNone)
	// A logout elsewhere: its notice reaching A shows that A receives again.
	b := openHA(t, "q-own-b-"+randomSuffix(), nil)
	other, err := b.Create(ctx, client.NewSession{Principal: "ulla"})
	if err != nil {
		t.Fatal(err)
	}
	notices := a.Stats().Notices
	if err := b.Destroy(ctx, other.ID()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A receives again", func() (bool, string) {
		st := a.Stats()
		return st.Notices > notices, fmt.Sprint(st.Notices)
	})
	// Receiving again, it still reads: the copy may have been superseded meanwhile.
	if ok, got := loadReads(); !ok {
		t.Fatalf("after the gap A served its copy without reading: %s", got)
	}
	s.Set("k", []byte("v"))
	if err := a.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if ok, got := loadReads(); ok {
		t.Fatalf("A wrote the session again, yet reads it: %s", got)
	}
}

// TestOwnerOnTheBusPathAsksNothing: an instance that reads over the bus sends no query
// for a session it owns; for one another instance wrote, it asks.
func TestOwnerOnTheBusPathAsksNothing(t *testing.T) {
	ctx := context.Background()
	cfg, n := counted()
	c := openHA(t, "bus-own-c-"+randomSuffix(), func(c *client.Config) { busReader(c); c.AWS = cfg })
	a := openHA(t, "bus-own-a-"+randomSuffix(), nil)
	mine, err := c.Create(ctx, client.NewSession{Principal: "vera"})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := a.Create(ctx, client.NewSession{Principal: "walt"})
	if err != nil {
		t.Fatal(err)
	}
	n.take()
	for range 20 {
		if _, err := c.Load(ctx, mine.ID()); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.String(); got != "" {
		t.Fatalf("Loads of its own session over the bus made calls: %s, want none", got)
	}
	eventually(t, "C reads A's session over the bus", func() (bool, string) {
		_, err := c.Load(ctx, theirs.ID())
		return err == nil, fmt.Sprint(err)
	})
	if got := n.take(); got["SNS.Publish"] == 0 {
		t.Fatalf("a Load of another instance's session over the bus made calls %v, want a query", got)
	}
}
