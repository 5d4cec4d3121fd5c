package bench

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// ownershipResult is how fast ownership moves: for each takeover, when another
// instance's write was applied and when the old owner stopped serving its copy, both
// from the start of that write's Save.
type ownershipResult struct {
	Applied  latencies // Save on B → the change readable in the table
	Dropped  latencies // Save on B → A's Load returns B's change
	AfterApp latencies // Dropped − Applied: the bound (negative: before the write landed)
}

// ownership makes n sessions on A (A owns them) and has B take each over, conc at a time:
// B loads it and saves a change (publish only); one goroutine reads the table until the
// change is there, another calls A's Load until A returns it.
func (b *bencher) ownership(conc, n int) ownershipResult {
	a, bb := b.writer, b.reader
	ids := make([]string, n)
	for i := range ids {
		s, err := a.Create(b.ctx, client.NewSession{Principal: "owner", Attrs: refAttributes()})
		if err != nil {
			b.t.Fatal(err)
		}
		ids[i] = s.ID()
	}
	b.settle(300 * time.Millisecond)
	tbl := &record.Table{DB: b.db, Name: b.table}
	var res ownershipResult
	var mu sync.Mutex
	b.measure(conc, n, func(i int) error {
		onB, err := bb.Load(b.ctx, ids[i])
		if err != nil {
			return err
		}
		want := fmt.Sprint("taken-over-", i)
		onB.Set("attr01", []byte(want))
		key := record.Key("default", events.HashID(ids[i]))
		start := time.Now()
		if err := bb.Save(b.ctx, onB); err != nil {
			return err
		}
		var applied, dropped time.Duration
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		deadline := start.Add(30 * time.Second)
		wg.Go(func() {
			for {
				it, err := tbl.Get(b.ctx, key)
				if err == nil && it != nil && string(it.Attrs["attr01"]) == want {
					applied = time.Since(start)
					return
				}
				if err != nil || time.Now().After(deadline) {
					errs <- fmt.Errorf("the takeover's write not in the table within 30 s: %v", err)
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		})
		wg.Go(func() {
			for {
				s, err := a.Load(b.ctx, ids[i])
				if err == nil {
					if v, _ := s.Get("attr01"); string(v) == want {
						dropped = time.Since(start)
						return
					}
				}
				if err != nil || time.Now().After(deadline) {
					errs <- fmt.Errorf("the old owner still served its copy 30 s after the takeover: %v", err)
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
		})
		wg.Wait()
		close(errs)
		if err := errors.Join(<-errs, <-errs); err != nil {
			return err
		}
		mu.Lock()
		res.Applied = append(res.Applied, applied)
		res.Dropped = append(res.Dropped, dropped)
		res.AfterApp = append(res.AfterApp, dropped-applied)
		mu.Unlock()
		return nil
	})
	b.t.Logf("ownership moves: applied p50 %s p99 %s; old owner stops serving its copy p50 %s p99 %s after the Save, %s / %s after the apply",
		res.Applied.pct(50), res.Applied.pct(99), res.Dropped.pct(50), res.Dropped.pct(99), res.AfterApp.pct(50), res.AfterApp.pct(99))
	return res
}

// appliedSaves times, interleaved, the publish-only Save and SaveApplied on sessions A
// owns, n of each by conc goroutines.
func (b *bencher) appliedSaves(conc, n int) (published, applied run) {
	a := b.writer
	sess := make([]*client.Session, n)
	for i := range sess {
		s, err := a.Create(b.ctx, client.NewSession{Principal: "saver", Attrs: refAttributes()})
		if err != nil {
			b.t.Fatal(err)
		}
		sess[i] = s
	}
	b.settle(300 * time.Millisecond)
	// The two ops of a sample use its session one after the other.
	runs := b.interleaved(conc, n, []int{1, 1},
		func(i int) error {
			sess[i].Set("attr01", []byte(fmt.Sprint("p", i)))
			return a.Save(b.ctx, sess[i])
		},
		func(i int) error {
			sess[i].Set("attr02", []byte(fmt.Sprint("a", i)))
			return a.SaveApplied(b.ctx, sess[i])
		})
	b.t.Logf("Save (publish only) p50 %s p99 %s; SaveApplied p50 %s p99 %s; %d by %d",
		runs[0].Lat.pct(50), runs[0].Lat.pct(99), runs[1].Lat.pct(50), runs[1].Lat.pct(99), n, conc)
	return runs[0], runs[1]
}
