package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionha/sessionha/internal/record"
)

// Save that waits until applied (SaveWait applied, SaveApplied): after the publish, the
// stored item is read until its version is the change's or newer. The apply takes tens of
// milliseconds (SNS, SQS, the function's read-merge-put), so the first read waits a
// little, and later ones back off to appliedMaxPoll: each read is a strongly consistent
// BatchGetItem of the session item and its logout item (direct, two read units) or a
// query over the bus.
const (
	appliedFirstPoll = 5 * time.Millisecond
	appliedMaxPoll   = 50 * time.Millisecond
)

// errNotApplied: the change was acknowledged in degraded mode (journaled, sent when the
// bus is back), so it cannot be in the table yet.
var errNotApplied = fmt.Errorf("%w: the bus is unreachable: the change is journaled and sent when it is back, but is not in the table yet", ErrUnavailable)

// waitApplied returns once the table holds key at version ver or newer, for at most
// MaxWait (ErrTimeout); ErrNotFound if the session was destroyed meanwhile.
func (s *Store) waitApplied(ctx context.Context, key, ver string) error {
	s.stats.appliedWaits.Add(1)
	wctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
	defer cancel()
	hashed := key[len(s.cfg.Cluster)+1:]
	want := ver
	if s.cfg.ReadPath == ReadBus {
		want = ver[:min(16, len(ver))] // a reply names the clock only
	}
	var last error
	for delay := appliedFirstPoll; ; delay = min(2*delay, appliedMaxPoll) {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-wctx.Done():
			t.Stop()
			return s.notApplied(ctx, last)
		}
		var (
			it  *record.Item
			err error
		)
		if s.cfg.ReadPath == ReadBus {
			it, err = s.ask(wctx, key, hashed)
		} else {
			it, err = s.table.Get(wctx, key)
		}
		switch {
		case err != nil:
			last = err // the table or the bus failing: try again until MaxWait
		case it == nil:
		case it.State == record.Destroyed:
			s.revoke(key)
			return ErrNotFound
		case it.Version >= want:
			if it.Version > ver && writerOf(it.Version) != s.cfg.InstanceID && s.cfg.ReadPath != ReadBus {
				s.disown(key, it.Version) // newer from another instance: ours may have lost to it
			}
			return nil
		}
	}
}

// notApplied is waitApplied's error once MaxWait (or the caller's context) ran out.
func (s *Store) notApplied(ctx context.Context, last error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("client: wait until applied: %w (the change is published, and is applied later)", ctx.Err())
	}
	s.stats.appliedTimeouts.Add(1)
	if last != nil && !errors.Is(last, ErrTimeout) && !errors.Is(last, context.DeadlineExceeded) {
		return fmt.Errorf("%w: the change is published but could not be read back: %v", ErrUnavailable, last)
	}
	return fmt.Errorf("%w (%s): the change is published but not yet in the table; it is applied later", ErrTimeout, s.cfg.MaxWait)
}

// disown marks this instance's copy of key not owned if it is older than newer.
func (s *Store) disown(key, newer string) {
	s.mu.Lock()
	if e := s.cache.get(key); e != nil && e.ver < newer {
		e.owned = false
	}
	s.mu.Unlock()
}
