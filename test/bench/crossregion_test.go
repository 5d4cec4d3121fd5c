package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/replication"
	"github.com/sessionha/sessionha/local/site"
)

// Across regions: a stack of its own with two sites in two regions (eu in eu-west-1, us
// in us-east-1, as cdk.json's example), a replica of the table in each, replicated by
// the stand-in for global tables (local/replication) at its default lag, 500 ms ± 250
// ms. It starts after the single-region figures are taken, so that it does not slow them.

var (
	crossN       = flag.Int("sessionha.xn", 200, "logouts and creates timed across regions")
	crossWriters = flag.Int("sessionha.xwriters", 8, "writers in region A while it is killed")
	crossTraffic = flag.Duration("sessionha.xtraffic", 10*time.Second, "how long A's writers run before A is killed")
	onlyCross    = flag.Bool("sessionha.only-cross", false, "measure across regions only, log the figures and write nothing")
)

// crossResult is what the cross-region part measured.
type crossResult struct {
	N, Conc int
	// Configured is the replication stand-in's lag and jitter; Repl what it measured
	// (source write → applied in the other region) over the logout and create runs.
	Configured, Jitter time.Duration
	Repl               replication.Lag
	// Logout in A → refused by an instance in B: one that owns the session (took it
	// over: Reads owner, serving it from memory), one that reads it (Reads always), both
	// with notice scope all; and one with scope site, which learns of it from the table
	// once replication brings the tombstone (the baseline).
	OwnerRefused, ReaderRefused, SiteRefused latencies
	// Visible: Create in A → a direct Load in B (which never held the session) succeeds.
	Visible latencies
	Loss    lossResult
}

// lossResult is what a region loses when it dies.
type lossResult struct {
	Writers int
	Traffic time.Duration // how long the writers ran before the kill
	// Acked are the changes of A acknowledged (a Create or Save with SaveWait applied
	// that returned nil: in A's table), Sessions the sessions they were made on.
	Acked, Sessions int
	Rate            float64 // acknowledged changes per second, over the last 2 s before the kill
	// Missing are the acknowledged changes never in B's table, on MissingSessions
	// sessions (of which Unseen never reached B at all).
	Missing, MissingSessions, Unseen int
	// Expected is Rate × the configured lag: the changes in flight when A dies.
	Expected float64
	// Lost is what the replication stand-in counts lost: A's writes to the table (the
	// functions' too) that never left it.
	Lost int64
}

// crossRegion starts the two-region stack, measures, kills region A last, and stops it.
func crossRegion(t *testing.T, conc int) crossResult {
	ctx := context.Background()
	tmp := t.TempDir()
	st, err := site.StartStack(ctx, site.StackOptions{
		Sites: []topology.Site{{Name: "eu", Region: "eu-west-1", Primary: true}, {Name: "us", Region: "us-east-1"}},
		// The replication stand-in's defaults: 500 ms ± 250 ms.
		EdgePort: -1, RunDir: tmp, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start the two-region stack: %v", err)
	}
	defer st.Stop()
	a, b := st.Site("eu"), st.Site("us")
	open := func(s *site.Site, name string, edit func(*client.Config)) *client.Store {
		cfg := client.Config{
			Site: s.Topology.Site.Name, Table: s.Outputs.Table, OpsTopicARN: s.Outputs.TopicARNs[topology.TopicOps],
			NoticeTopicARN: s.Outputs.TopicARNs[topology.TopicNotice], NoticeTopicARNs: s.NoticeTopicARNs(),
			InstanceID: name, AWS: &s.AWS, Logger: slog.New(slog.DiscardHandler), MaxSessions: 100000, JournalDir: t.TempDir(),
			NoticeScope: client.NoticeAll,
		}
		if edit != nil {
			edit(&cfg)
		}
		c, err := client.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	always := func(c *client.Config) { c.Reads = client.ReadsAlways }
	onA := open(a, "x-eu-a", nil)
	owner := open(b, "x-us-owner", nil)
	reader := open(b, "x-us-reader", always)
	siteOnly := open(b, "x-us-site", func(c *client.Config) { always(c); c.NoticeScope = client.NoticeSite })
	fresh := open(b, "x-us-fresh", func(c *client.Config) { always(c); c.NoticeScope = client.NoticeOff; c.NoticeTopicARN = "" })

	res := crossResult{N: *crossN, Conc: conc, Configured: 500 * time.Millisecond, Jitter: 250 * time.Millisecond}
	x := &crossBench{t: t, ctx: ctx, st: st}
	res.Visible = x.visibility(onA, fresh, *crossN, conc)
	res.OwnerRefused, res.ReaderRefused, res.SiteRefused = x.logouts(onA, owner, reader, siteOnly, *crossN, conc)
	res.Repl = st.Replicator.Stats().Lag
	res.Loss = x.loss(a, b, *crossWriters, *crossTraffic, res.Configured)
	return res
}

type crossBench struct {
	t   *testing.T
	ctx context.Context
	st  *site.Stack
}

// poll is how often the pollers below ask: fine enough for figures of tens to hundreds
// of milliseconds, coarse enough not to load the machine.
const poll = 2 * time.Millisecond

// until calls f every poll until it says done, and returns when, from t0; it fails after
// 30 s (the queues' visibility timeout is 60 s: a redelivery shows, up to there, in the
// tail).
func (x *crossBench) until(t0 time.Time, what string, f func() (bool, error)) (time.Duration, error) {
	deadline := t0.Add(30 * time.Second)
	for {
		ok, err := f()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: not within 30 s", what)
		}
		time.Sleep(poll)
	}
}

// run calls op(i) for i in [0, n) from conc goroutines.
func (x *crossBench) run(conc, n int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		x.t.Fatal(err)
	}
}

// visibility times Create in A → a direct Load in B succeeds, n times by conc.
func (x *crossBench) visibility(onA, onB *client.Store, n, conc int) latencies {
	lat := make(latencies, n)
	x.run(conc, n, func(i int) error {
		t0 := time.Now()
		s, err := onA.Create(x.ctx, client.NewSession{Principal: "visible", Attrs: refAttributes()})
		if err != nil {
			return err
		}
		lat[i], err = x.until(t0, "a create in A, loaded in B", func() (bool, error) {
			_, err := onB.Load(x.ctx, s.ID())
			if errors.Is(err, client.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		})
		return err
	})
	x.t.Logf("across regions: create in A → direct Load in B succeeds: p50 %s p99 %s; %d by %d", lat.pct(50), lat.pct(99), n, conc)
	return lat
}

// logouts makes n sessions in A that B's instances hold (owner took each over, so it
// serves it from memory; reader and siteOnly read it once), then times, conc at a time,
// a Destroy in A until each of B's instances refuses the session.
func (x *crossBench) logouts(onA, owner, reader, siteOnly *client.Store, n, conc int) (byOwner, byReader, bySite latencies) {
	ids := make([]string, n)
	x.run(conc, n, func(i int) error {
		s, err := onA.Create(x.ctx, client.NewSession{Principal: "logout", Attrs: refAttributes()})
		if err != nil {
			return err
		}
		ids[i] = s.ID()
		var onB *client.Session
		if _, err := x.until(time.Now(), "a create in A, loaded in B", func() (bool, error) {
			onB, err = owner.Load(x.ctx, ids[i])
			if errors.Is(err, client.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		}); err != nil {
			return err
		}
		onB.Set("attr01", []byte("taken over in B"))
		if err := owner.SaveApplied(x.ctx, onB); err != nil { // B's owner owns it now
			return err
		}
		for _, s := range []*client.Store{reader, siteOnly} {
			if _, err := s.Load(x.ctx, ids[i]); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(x.ctx, time.Minute)
	defer cancel()
	if err := x.st.Replicator.Quiesce(ctx); err != nil { // the takeovers are in A too
		x.t.Fatal(err)
	}
	owned0 := owner.Stats().OwnedLoads
	for _, id := range ids {
		if _, err := owner.Load(x.ctx, id); err != nil {
			x.t.Fatal(err)
		}
	}
	if owned := owner.Stats().OwnedLoads - owned0; owned != int64(n) {
		x.t.Fatalf("B's owner served %d of %d sessions from memory before the logouts: the figure would not be of owned copies", owned, n)
	}
	byOwner, byReader, bySite = make(latencies, n), make(latencies, n), make(latencies, n)
	x.run(conc, n, func(i int) error {
		t0 := time.Now()
		if err := onA.Destroy(x.ctx, ids[i]); err != nil {
			return err
		}
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for k, s := range []*client.Store{owner, reader, siteOnly} {
			wg.Go(func() {
				d, err := x.until(t0, "a logout in A, refused in B", func() (bool, error) {
					_, err := s.Load(x.ctx, ids[i])
					if errors.Is(err, client.ErrNotFound) {
						return true, nil
					}
					return false, err
				})
				errs[k] = err
				[]latencies{byOwner, byReader, bySite}[k][i] = d
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	x.t.Logf("across regions: logout in A → refused in B: owner copy (notice) p50 %s p99 %s; reading instance (notice) p50 %s p99 %s; scope site (replication) p50 %s p99 %s; %d by %d",
		byOwner.pct(50), byOwner.pct(99), byReader.pct(50), byReader.pct(99), bySite.pct(50), bySite.pct(99), n, conc)
	return byOwner, byReader, bySite
}

// ack is one acknowledged change: the session's seq attribute was n when Create or Save
// (SaveWait applied) returned nil, at the time.
type ack struct {
	id string
	n  int
	at time.Time
}

// loss runs writers in A, each on a session of its own (a Create, then Saves, each waiting
// until applied in A's table), kills region A after traffic, and counts the acknowledged
// changes that never reach B's table.
func (x *crossBench) loss(a, b *site.Site, writers int, traffic, lag time.Duration) lossResult {
	cfg := client.Config{
		Site: a.Topology.Site.Name, Table: a.Outputs.Table, OpsTopicARN: a.Outputs.TopicARNs[topology.TopicOps],
		SaveWait: client.SaveApplied, Reads: client.ReadsAlways, AWS: &a.AWS, Logger: slog.New(slog.DiscardHandler),
		JournalDir: x.t.TempDir(), InstanceID: "x-eu-writer",
	}
	w, err := client.Open(x.ctx, cfg)
	if err != nil {
		x.t.Fatal(err)
	}
	defer w.Close()
	var (
		mu     sync.Mutex
		acks   []ack
		killed atomic.Bool
		wg     sync.WaitGroup
	)
	for k := range writers {
		wg.Go(func() {
			seq := func(n int) map[string][]byte { return map[string][]byte{"seq": []byte(strconv.Itoa(n))} }
			s, err := w.Create(x.ctx, client.NewSession{Principal: fmt.Sprint("writer", k), Attrs: seq(0)})
			if err != nil {
				x.t.Errorf("writer %d: create: %v", k, err)
				return
			}
			for n := 0; ; n++ {
				if n > 0 {
					s.Set("seq", []byte(strconv.Itoa(n)))
					if err := w.Save(x.ctx, s); err != nil {
						if !killed.Load() {
							x.t.Errorf("writer %d: save before the kill: %v", k, err)
						}
						return
					}
				}
				mu.Lock()
				acks = append(acks, ack{id: s.ID(), n: n, at: time.Now()})
				mu.Unlock()
				if killed.Load() {
					return // one more at most: A refuses every request now
				}
			}
		})
	}
	start := time.Now()
	time.Sleep(traffic)
	killAt := time.Now()
	killed.Store(true)
	if err := x.st.KillRegion(a.AWS.Region); err != nil {
		x.t.Fatal(err)
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(x.ctx, time.Minute)
	defer cancel()
	if err := x.st.Replicator.Quiesce(ctx); err != nil { // whatever else was on its way to B is there
		x.t.Fatal(err)
	}
	res := lossResult{Writers: writers, Traffic: killAt.Sub(start), Acked: len(acks), Expected: 0, Lost: x.st.Replicator.Stats().Lost}
	last := map[string]int{} // session -> highest acknowledged seq
	recent := 0
	for _, ak := range acks {
		last[ak.id] = max(last[ak.id], ak.n)
		if !ak.at.Before(killAt.Add(-2*time.Second)) && !ak.at.After(killAt) {
			recent++
		}
	}
	res.Sessions = len(last)
	res.Rate = float64(recent) / 2
	res.Expected = res.Rate * lag.Seconds()
	tbl := &record.Table{DB: b.DynamoDBClient(), Name: b.Outputs.Table}
	for id, n := range last {
		it, err := tbl.Get(x.ctx, record.Key("default", events.HashID(id)))
		if err != nil {
			x.t.Fatal(err)
		}
		inB := -1 // the session's changes up to this seq are in B
		if it != nil {
			if v, err := strconv.Atoi(string(it.Attrs["seq"])); err == nil {
				inB = v
			}
		} else {
			res.Unseen++
		}
		if inB < n {
			res.Missing += n - inB
			res.MissingSessions++
		}
	}
	x.t.Logf("what a region loses: %d writers for %s, %d changes acknowledged on %d sessions (%.0f/s before the kill); %d acknowledged changes never in B (%d sessions, %d never seen there); rate × lag = %.0f; the stand-in lost %d of A's table writes",
		writers, res.Traffic.Round(time.Millisecond), res.Acked, res.Sessions, res.Rate, res.Missing, res.MissingSessions, res.Unseen, res.Expected, res.Lost)
	return res
}

// crossRows are the report's rows for the cross-region figures.
func (r *report) crossRows() []row {
	c := r.Cross
	if c.N == 0 {
		return nil
	}
	limit := c.Configured * 3 / 2
	lagNote := fmt.Sprintf("replication lag p50 %s p99 %s (stand-in: %s ± %s)", ms(c.Repl.P50), ms(c.Repl.P99), c.Configured, c.Jitter)
	l := c.Loss
	lossRatio := "-"
	if l.Expected > 0 {
		lossRatio = ratio(float64(l.Missing), l.Expected)
	}
	return []row{
		{fmt.Sprintf("across regions: logout in A → refused by an instance in B that owns the session (Reads owner, from memory; notice scope all) p99, by %d", c.Conc),
			ms(c.OwnerRefused.pct(99)), lagNote, ratio(float64(c.OwnerRefused.pct(99)), float64(c.Configured)),
			fmt.Sprintf("≤ 1.5 × the replication lag (%s)", limit), verdict(c.OwnerRefused.pct(99) <= limit)},
		{"… p50", ms(c.OwnerRefused.pct(50)), "scope site (told by replication only) p50 " + ms(c.SiteRefused.pct(50)),
			ratio(float64(c.OwnerRefused.pct(50)), float64(c.SiteRefused.pct(50))), "-", "-"},
		{fmt.Sprintf("… refused by an instance in B that reads it (Reads always, cached; scope all) p99, by %d", c.Conc),
			ms(c.ReaderRefused.pct(99)), "scope site (told by replication only) p99 " + ms(c.SiteRefused.pct(99)),
			ratio(float64(c.ReaderRefused.pct(99)), float64(c.SiteRefused.pct(99))), fmt.Sprintf("≤ 1.5 × the replication lag (%s)", limit),
			verdict(c.ReaderRefused.pct(99) <= limit)},
		{fmt.Sprintf("across regions: visibility of a create (Create in A → a direct Load in B succeeds) p50 / p99, by %d", c.Conc),
			ms(c.Visible.pct(50)) + " / " + ms(c.Visible.pct(99)), lagNote, ratio(float64(c.Visible.pct(99)), float64(c.Repl.P99)),
			"bounded below by replication", "-"},
		{fmt.Sprintf("what a region loses: A killed after %s of %d writers (SaveApplied in A, %.0f changes/s): acknowledged changes never in B", l.Traffic.Round(time.Second), l.Writers, l.Rate),
			fmt.Sprintf("%d of %d (%d sessions)", l.Missing, l.Acked, l.MissingSessions), fmt.Sprintf("rate × lag = %.0f", l.Expected), lossRatio,
			"reported: the writes of the last replication lag", "-"},
	}
}

// crossMarkdown is the report's section on the figures across regions.
func (r *report) crossMarkdown() string {
	c := r.Cross
	if c.N == 0 {
		return ""
	}
	l := c.Loss
	var b []byte
	b = fmt.Appendf(b, `## Across regions

A stack of its own, started after the single-region figures: two sites in two regions
(eu in eu-west-1 as A, us in us-east-1 as B, as cdk.json's example), a table replica in
each, replicated by local/replication, the stand-in for DynamoDB global tables (multi-region
eventual consistency: per-item last-writer-wins by source write time), at its default lag
of %s ± %s per change and destination. It measured %d deliveries of this part's writes at
p50 %s, p90 %s, p99 %s, max %s. Every instance is subscribed to both sites' notice topics
(SESSIONHA_NOTICE_TOPIC_ARNS): the topic in one region delivers to queues in the other.
Pollers ask every %s.

- **Logout across regions**: %d sessions created in A, loaded in B by an instance that
  takes each over (a SaveApplied in B: it owns the session and serves it from memory,
  Reads owner), and read once by two instances of B with Reads always, one with notice
  scope all, one with scope site; replication settled. Then, %d at a time, A's instance
  destroys a session and B's three instances call Load every %s until each refuses it:
  the time from the start of Destroy. The owner and the scope-all reader learn it from
  the destroy notice (eu's notice topic → their queues in us-east-1; the owner also from
  the superseded notice that eu's sessionop sends it); the scope-site instance learns it
  only from its region's table, once replication brings the tombstone: the baseline.
- **Visibility of a create**: %d times, %d at once, A's instance creates a session (publish
  only) and an instance of B that never held it calls Load (a consistent GetItem of B's
  replica) until it succeeds: sessionop's apply in A, then replication.
- **What a region loses**: %d writers on A, each on a session of its own, Create then Save
  in a loop with SaveWait applied (each returns once the change is in A's table: the
  acknowledged changes), for %s; then region A is killed (Stack.KillRegion: the
  replication stand-in loses A's changes not yet delivered, and the edge refuses every
  request to A's services). Once the rest of replication settled, B's replica is read: a
  session's acknowledged changes above the seq attribute B holds never reached B. %d
  changes were acknowledged on %d sessions, %.0f per second over the two seconds before
  the kill; **%d never reached B** (on %d sessions, %d of them never seen in B at all),
  against rate × lag = %.0f: %.2f s of acknowledged changes. The stand-in counted %d of
  A's table writes lost (the functions' writes of changes not acknowledged yet
  included). So a region that dies takes with it the changes of about its last
  replication lag (half a second here, typically under a second on AWS), somewhat fewer
  of the acknowledged ones: a change is acknowledged a little after it is written, when
  it has begun to replicate. Sessions created or changed then are gone, or older, in the
  other regions; a logout made then holds there only through its notice, for the purge
  delay (SESSIONHA_PURGE_DELAY) on the instances that took it.

`, c.Configured, c.Jitter, c.Repl.Samples, ms(c.Repl.P50), ms(c.Repl.P90), ms(c.Repl.P99), ms(c.Repl.Max), poll,
		c.N, c.Conc, poll, c.N, c.Conc,
		l.Writers, l.Traffic.Round(time.Millisecond), l.Acked, l.Sessions, l.Rate, l.Missing, l.MissingSessions, l.Unseen, l.Expected,
		float64(l.Missing)/max(l.Rate, 1), l.Lost)
	b = append(b, "| run | n | concurrency | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n"...)
	for _, d := range []struct {
		name string
		l    latencies
	}{
		{"logout in A → refused by B's owner (notice)", c.OwnerRefused},
		{"logout in A → refused by B's reader (notice)", c.ReaderRefused},
		{"logout in A → refused by B's scope-site reader (replication)", c.SiteRefused},
		{"create in A → loaded in B", c.Visible},
	} {
		b = fmt.Appendf(b, "| %s | %d | %d | %s | %s | %s | %s |\n", d.name, len(d.l), c.Conc, ms(d.l.pct(50)), ms(d.l.pct(90)), ms(d.l.pct(99)), ms(d.l.pct(100)))
	}
	return string(append(b, '\n'))
}

// The README's deploy section says what a region loses between these markers.
const (
	lossBegin = "<!-- loss:begin -->"
	lossEnd   = "<!-- loss:end -->"
)

// lossSentence is what the README says a killed region lost, in this run.
func (r *report) lossSentence() string {
	l := r.Cross.Loss
	secs := 0.0
	if l.Rate > 0 {
		secs = float64(l.Missing) / l.Rate
	}
	return fmt.Sprintf("killing a region under %d writers (about %.0f\nacknowledged changes per second) lost %d acknowledged changes, %.2f s of them,\nagainst rate × lag = %.0f", l.Writers, l.Rate, l.Missing, secs, l.Expected)
}

// replaceBetween replaces the text between the markers begin and end in the file at path.
func replaceBetween(path, begin, end, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q markers: the text was not copied there", path, begin, end)
	}
	return os.WriteFile(path, []byte(s[:i+len(begin)]+text+s[j:]), 0o644)
}
