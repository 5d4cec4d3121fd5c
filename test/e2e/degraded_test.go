package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/edge"
)

// TestDegradedMode cuts the bus (SNS, at the edge) off in the middle of traffic and
// restores it: the store must switch to ModeDegraded, go on serving every session from
// memory (reads of its own writes included), keep every change (saves, creates and
// destroys), switch back to ModeFailover once the bus answers, and then have every
// session's last saved state, or its destroy, in the table. Two faults: the bus refusing
// at once (503), and the bus holding requests unanswered (PublishTimeout bounds each
// Save then); the second with scope modified-attribute, whose recovery sends whole
// sessions all the same.
func TestDegradedMode(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault edge.Fault
		scope client.Scope
	}{
		{"refuse", edge.FaultRefuse, client.ScopeSession},
		{"blackhole", edge.FaultBlackhole, client.ScopeModifiedAttribute},
	} {
		t.Run(c.name, func(t *testing.T) { outage(t, c.fault, c.scope) })
	}
}

// final is what a session must end as in the table.
type final struct {
	attrs     map[string]string
	destroyed bool
}

// modeSample is the store's mode at an instant.
type modeSample struct {
	at   time.Time
	mode client.Mode
}

func outage(t *testing.T, fault edge.Fault, scope client.Scope) {
	logs := &lines{}
	store := openHA(t, "degraded-"+randomSuffix(), func(c *client.Config) {
		c.Scope = scope
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })
	publishTimeout := 2 * time.Second // the default

	var (
		mu       sync.Mutex
		model    = map[string]*final{}
		touched  = map[string]bool{} // sessions changed while degraded
		ops      atomic.Int64        // calls that succeeded
		degraded atomic.Int64        // of which made while degraded (mode degraded before and after)
		slowest  atomic.Int64        // longest call while the bus was cut, ns
		cut      atomic.Bool
	)
	// Traffic stops between calls, never in one: a call cut short would leave the model
	// unsure whether its change was kept (it is: a Save whose context ends is still sent).
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	call := context.Background()
	var wg sync.WaitGroup

	// The mode, sampled throughout.
	var samples []modeSample
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				m := store.Mode()
				mu.Lock()
				samples = append(samples, modeSample{now, m})
				mu.Unlock()
			}
		}
	})

	// Traffic: each worker owns its sessions, as a user sticks to an instance: it loads
	// one (as a request would), checks it reads what it last saved, changes and saves
	// it; now and then it logs a user in or out.
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var live []string
			counter := 0
			pace := time.NewTicker(10 * time.Millisecond)
			defer pace.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-pace.C:
				}
				counter++
				fail := func(format string, args ...any) {
					t.Errorf("worker %d: "+format, append([]any{w}, args...)...)
				}
				before := store.Mode()
				start := time.Now()
				var id string
				var f *final
				switch r := rng.IntN(25); {
				case len(live) < 3 || r == 0:
					attrs := map[string]string{"worker": strconv.Itoa(w), "n": "0"}
					s, err := store.Create(call, client.NewSession{Principal: "user" + strconv.Itoa(w), Attrs: bytesOf(attrs)})
					if err != nil {
						fail("Create: %v", err)
						return
					}
					id, f = s.ID(), &final{attrs: attrs}
					live = append(live, id)
				case r == 1:
					id, live = live[0], live[1:]
					if err := store.Destroy(call, id); err != nil {
						fail("Destroy: %v", err)
						return
					}
					f = &final{destroyed: true}
				default:
					id = live[rng.IntN(len(live))]
					s, err := store.Load(call, id)
					if err != nil {
						fail("Load of a live session (mode %s): %v", store.Mode(), err)
						return
					}
					mu.Lock()
					want := maps.Clone(model[id].attrs)
					mu.Unlock()
					if got := stringsOf(s); !maps.Equal(got, want) {
						fail("Load (mode %s) returned %v, its last Save was %v", store.Mode(), got, want)
						return
					}
					s.Set("n", []byte(strconv.Itoa(counter)))
					want["n"] = strconv.Itoa(counter)
					if counter%3 == 0 {
						s.Delete("x")
						delete(want, "x")
					} else {
						s.Set("x", []byte("x"+strconv.Itoa(counter)))
						want["x"] = "x" + strconv.Itoa(counter)
					}
					if err := store.Save(call, s); err != nil {
						fail("Save (mode %s): %v", store.Mode(), err)
						return
					}
					f = &final{attrs: want}
				}
				took := time.Since(start)
				if cut.Load() && took > time.Duration(slowest.Load()) {
					slowest.Store(int64(took))
				}
				mu.Lock()
				model[id] = f
				if before == client.ModeDegraded && store.Mode() == client.ModeDegraded {
					touched[id] = true
					degraded.Add(1)
				}
				mu.Unlock()
				ops.Add(1)
			}
		})
	}
	stopTraffic := func() { stop(); wg.Wait() }
	defer stopTraffic()

	waitFor := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if t.Failed() {
				t.FailNow()
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s (mode %s, stats %+v)", what, within, store.Mode(), store.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitFor("traffic in failover mode", 20*time.Second, func() bool { return ops.Load() >= 60 })
	if m := store.Mode(); m != client.ModeFailover {
		t.Fatalf("mode %s before the fault", m)
	}

	tCut := time.Now()
	cut.Store(true)
	theSite.Edge.SetFault("sns", fault)
	waitFor("the store degrades", 20*time.Second, func() bool { return store.Mode() == client.ModeDegraded })
	detect := time.Since(tCut)
	tDegraded := time.Now()
	// Long enough for several failed probes, with plenty of changes meanwhile.
	waitFor("traffic while degraded", 30*time.Second, func() bool {
		return time.Since(tDegraded) >= 2*time.Second && degraded.Load() >= 60
	})

	tClear := time.Now()
	theSite.Edge.SetFault("sns", edge.FaultNone)
	waitFor("the store returns to failover mode", 30*time.Second, func() bool { return store.Mode() == client.ModeFailover })
	recovery := time.Since(tClear)
	cut.Store(false)
	after := ops.Load()
	waitFor("traffic after the recovery", 20*time.Second, func() bool { return ops.Load() >= after+60 })
	stopTraffic()
	if t.Failed() {
		t.FailNow()
	}

	// The mode was visible throughout: failover until the cut, degraded from the switch
	// until the bus was back, failover from the switch back on.
	tRecovered := tClear.Add(recovery)
	for _, s := range samples {
		var want client.Mode
		switch {
		case s.at.Before(tCut):
			want = client.ModeFailover
		case s.at.After(tDegraded) && s.at.Before(tClear):
			want = client.ModeDegraded
		case s.at.After(tRecovered.Add(10 * time.Millisecond)):
			want = client.ModeFailover
		default:
			continue // a switch is under way
		}
		if s.mode != want {
			t.Errorf("at %s after the cut the mode was %s, want %s", s.at.Sub(tCut).Round(time.Millisecond), s.mode, want)
			break
		}
	}

	st := store.Stats()
	if st.ModeSwitches != 2 || st.PublishFailures < 1 {
		t.Errorf("stats: %d mode switches (want 2: there and back), %d publish failures (want some)", st.ModeSwitches, st.PublishFailures)
	}
	if max := publishTimeout + 1500*time.Millisecond; time.Duration(slowest.Load()) > max {
		t.Errorf("a call took %s while the bus was cut; PublishTimeout should bound it near %s", time.Duration(slowest.Load()), publishTimeout)
	}

	// Zero changes lost: every session's last saved attributes, or its destroy, in the table.
	var found, foundTouched, destroyed int
	var last string
	deadline := time.Now().Add(45 * time.Second)
	for {
		found, foundTouched, destroyed, last = 0, 0, 0, ""
		for id, f := range model {
			it := tableItem(t, id)
			ok := false
			switch {
			case f.destroyed:
				ok = it != nil && it.State == record.Destroyed
				if ok {
					destroyed++
				}
			case it != nil && it.State == record.Active:
				got := map[string]string{}
				for k, v := range it.Attrs {
					got[k] = string(v)
				}
				ok = maps.Equal(got, f.attrs)
				if !ok {
					last = fmt.Sprintf("table has %v, last saved %v", got, f.attrs)
				}
			}
			if ok {
				found++
				if touched[id] {
					foundTouched++
				}
			} else if last == "" {
				last = fmt.Sprintf("a session (destroyed %v) not in the table as last saved: item %+v", f.destroyed, it)
			}
		}
		if found == len(model) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions in the table as last saved after 45s; %s", found, len(model), last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := store.Stats(); st.Pending != 0 {
		t.Errorf("%d changes still pending after the recovery", st.Pending)
	}

	// Each switch is logged once, with the mode, and no log line carries a session id.
	switches := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l struct{ Msg, Mode string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if l.Mode != "" {
			switches[l.Mode]++
		}
		for id := range model {
			if strings.Contains(line, id) {
				t.Fatalf("a log line carries a session id: %s", line)
			}
		}
	}
	if switches["degraded"] != 1 || switches["failover"] != 1 {
		t.Errorf("mode switches logged: %v, want one each way", switches)
	}

	t.Logf("outage (%s, scope %s): %d changes made while degraded, to %d sessions; all %d found in the table as last saved after recovery (of %d sessions in all, %d destroyed); degraded %s after the cut; back in failover %s after the fault was cleared; slowest call during the outage %s; %d publish failures",
		fault, scope, degraded.Load(), len(touched), foundTouched, len(model), destroyed,
		detect.Round(time.Millisecond), recovery.Round(time.Millisecond), time.Duration(slowest.Load()).Round(time.Millisecond), st.PublishFailures)
	if foundTouched != len(touched) {
		t.Errorf("%d of %d sessions changed while degraded are in the table as last saved", foundTouched, len(touched))
	}
}

func bytesOf(m map[string]string) map[string][]byte {
	b := make(map[string][]byte, len(m))
	for k, v := range m {
		b[k] = []byte(v)
	}
	return b
}

func stringsOf(s *client.Session) map[string]string {
	m := map[string]string{}
	for _, n := range s.Names() {
		v, _ := s.Get(n)
		m[n] = string(v)
	}
	return m
}

// TestCloseWhileDegraded: Close sends what changed while degraded if the bus is back by
// then (before any probe noticed), and says what it could not send if it is not.
func TestCloseWhileDegraded(t *testing.T) {
	ctx := context.Background()
	t.Cleanup(func() { theSite.Edge.SetFault("sns", edge.FaultNone) })
	cutAndSave := func(store *client.Store) *client.Session {
		t.Helper()
		s, err := store.Create(ctx, client.NewSession{Principal: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		theSite.Edge.SetFault("sns", edge.FaultRefuse)
		s.Set("k", []byte("while degraded"))
		if err := store.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		if m := store.Mode(); m != client.ModeDegraded {
			t.Fatalf("mode %s", m)
		}
		return s
	}

	quick := func(c *client.Config) { c.PublishTimeout = 500 * time.Millisecond }
	back := openHA(t, "close-back-"+randomSuffix(), quick)
	s := cutAndSave(back)
	theSite.Edge.SetFault("sns", edge.FaultNone)
	if err := back.Close(); err != nil {
		t.Fatalf("Close with the bus back: %v", err)
	}
	eventually(t, "the change Close sent is in the table", func() (bool, string) {
		it := tableItem(t, s.ID())
		return it != nil && string(it.Attrs["k"]) == "while degraded", "not yet"
	})

	down := openHA(t, "close-down-"+randomSuffix(), quick)
	cutAndSave(down)
	err := down.Close()
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "not sent before Close: 1 ") {
		t.Fatalf("Close with the bus down: %v, want ErrUnavailable counting 1 unsent change", err)
	}
}
