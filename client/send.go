package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// How the bus is probed while degraded: the first probe soon (a blip should cost
// little), then doubling waits, capped so that recovery is noticed within seconds of
// the bus coming back, and jittered so that a site's instances do not probe in step.
const (
	probeMin = 250 * time.Millisecond
	probeMax = 4 * time.Second
)

// Batches: SNS takes at most 10 messages and 256 KiB per PublishBatch; a few batches at
// once keep a flush of many sessions short without flooding the bus after an outage.
const (
	batchMessages = 10
	batchBytes    = 240 << 10
	batchParallel = 4
)

// registerBudget bounds the bytes of attribute registers a session's deltas may leave in
// its item before this instance sends the whole session instead: the table keeps a
// versioned register for every name a delta set or removed until a newer whole session
// replaces them (internal/record), so without a bound a session whose attribute names
// keep changing grows past DynamoDB's 400 KB. Each instance writing deltas may leave this
// much at most, far below the limit.
const registerBudget = 16 << 10

// registerBytes is about what a delta's register of name takes in the item: the name,
// the version (16 hex digits, "/", the writer) and DynamoDB's framing.
func (s *Store) registerBytes(name string) int { return len(name) + len(s.cfg.InstanceID) + 24 }

// outOp is one op on its way to the persistence: a session's create, save or delta, or a
// destroy.
type outOp struct {
	key     string
	hashed  string
	kind    events.OpKind
	body    []byte
	msg     *events.SessionOp // to encode into body, if nil
	e       *entry            // session ops
	seq     uint64            // e.seq when the op was built
	ver     string
	whole   bool            // a create or the whole session: it drops the older registers
	expires time.Time       // the session's deadline (file: the file's mtime)
	d       *pendingDestroy // destroys
}

// refusedError is an op the bus refused as invalid: sending it again cannot help.
type refusedError struct{ err error }

func (r *refusedError) Error() string { return "refused by the bus: " + r.err.Error() }

// sendNowLocked builds the op a web-method call sends before it returns, or nil when the
// change waits: time-based frequency, or the bus unreachable (it goes with the recovery).
// urgent sends a time-based change at once too: the next flush could come too late.
func (s *Store) sendNowLocked(e *entry, urgent bool) *outOp {
	if (s.cfg.Frequency != FrequencyWebMethod && !urgent) || (s.bus != nil && s.Mode() != ModeFailover) {
		return nil
	}
	return s.buildLocked(e, false)
}

// buildLocked takes what e has not yet persisted: a create, the whole session, or
// (modified-attribute) a delta; whole whenever full is set. Versions are taken here,
// under mu, so that of two ops on one session the later built is the newer and carries
// the newer state. The op is encoded later, by deliver, outside mu: it may refer to the
// entry's attribute map because those maps are replaced, never changed in place.
func (s *Store) buildLocked(e *entry, full bool) *outOp {
	hlc := e.jver // journaled as it is: send the very op the journal holds
	if e.jseq == 0 || e.jseq != e.seq {
		hlc = s.clock.next()
	}
	msg := s.wholeLocked(e, hlc)
	meta := msg.Session
	whole := true
	switch {
	case e.create:
	case full || e.full != 0 || s.files != nil || s.cfg.Scope != ScopeModifiedAttribute ||
		len(e.changed) > events.MaxAttributes || // more changes than a delta may carry: the whole session says it all
		s.overBudgetLocked(e): // the whole session drops the registers older than it
	default:
		msg.Op, meta.Attrs, whole = events.OpDelta, nil, false
		if e.regs == nil {
			e.regs = map[string]uint64{}
		}
		for name := range e.changed {
			e.regs[name] = e.seq
			if v, ok := e.sess.attrs[name]; ok {
				if msg.Set == nil {
					msg.Set = map[string][]byte{}
				}
				msg.Set[name] = v
			} else {
				msg.Remove = append(msg.Remove, name)
			}
		}
		slices.Sort(msg.Remove)
	}
	e.ver, e.owned = record.Version(hlc, s.cfg.InstanceID), true // the newest version this instance knows of is its own
	e.inflight++
	return &outOp{
		key: e.key, hashed: msg.ID, kind: msg.Op, msg: msg, e: e, seq: e.seq, ver: e.ver, whole: whole,
		expires: e.sess.expiresAt(),
	}
}

// overBudgetLocked reports whether a delta of e's changes would take the registers of
// e's item past registerBudget: those it held when this instance read it, and those this
// instance's deltas added since its last whole session.
func (s *Store) overBudgetLocked(e *entry) bool {
	n := e.regBase
	for name := range e.regs {
		n += s.registerBytes(name)
	}
	for name := range e.changed {
		if _, counted := e.regs[name]; !counted {
			n += s.registerBytes(name)
		}
	}
	return n > registerBudget
}

// wholeLocked is the op that stores e whole at version hlc: its create, or a save.
func (s *Store) wholeLocked(e *entry, hlc string) *events.SessionOp {
	meta := &events.Session{
		Principal: e.sess.principal, Group: e.sess.group,
		Created: e.sess.created.UnixMilli(), LastAccess: max(e.sess.lastAccess.UnixMilli(), e.sess.created.UnixMilli()),
		MaxIdle: int64(e.sess.maxIdle / time.Second), MaxLife: int64(e.sess.maxLife / time.Second),
		Attrs: e.sess.attrs,
	}
	msg := &events.SessionOp{
		V: events.SchemaVersion, Op: events.OpSave, Cluster: s.cfg.Cluster, ID: e.key[len(s.cfg.Cluster)+1:],
		Version: hlc, Writer: s.cfg.InstanceID, Site: s.cfg.Site, At: time.Now().UnixMilli(), Session: meta,
	}
	if e.create {
		msg.Op = events.OpCreate
	}
	return msg
}

// sendNow sends one op on behalf of a call and says what the caller should learn.
func (s *Store) sendNow(ctx context.Context, op *outOp) error {
	err := s.deliver(ctx, []*outOp{op})[0]
	s.finish([]*outOp{op}, []error{err})
	var refused *refusedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &refused):
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	case s.files != nil:
		return fmt.Errorf("%w: write session file: %v", ErrUnavailable, err)
	case ctx.Err() != nil:
		// The caller gave up, not the bus: the change stays pending for the next flush.
		return fmt.Errorf("client: publish %s: %w (the change is kept and sent later)", op.kind, ctx.Err())
	}
	s.degrade(err)
	// Acknowledged in degraded mode: journaled first. degrade journals what is pending,
	// but when another call switched, its append may still be under way.
	s.mu.Lock()
	var keep []jrec
	switch {
	case op.d != nil && s.destroys[op.key] == op.d:
		keep = s.keepDestroyLocked(op.d)
	case op.e != nil && s.cache.get(op.key) == op.e && op.e.unsent():
		keep = s.keepLocked(op.e)
	}
	s.mu.Unlock()
	return s.keep(keep...)
}

// deliver encodes and persists ops, and returns each one's error.
func (s *Store) deliver(ctx context.Context, ops []*outOp) []error {
	errs := make([]error, len(ops))
	ready := make([]*outOp, 0, len(ops))
	at := make([]int, 0, len(ops))
	for i, op := range ops {
		if op.body == nil {
			msg, err := s.sealOp(op.msg) // sealstore.go
			if err != nil {
				errs[i] = &refusedError{fmt.Errorf("cannot seal: %w", err)}
				continue
			}
			b, err := events.EncodeSessionOp(msg)
			if err != nil {
				// checkSession admitted every change, so this is a bug; sending the op
				// again would fail the same way forever.
				errs[i] = &refusedError{fmt.Errorf("cannot encode: %w", err)}
				continue
			}
			op.body = b
		}
		ready, at = append(ready, op), append(at, i)
	}
	var res []error
	switch {
	case len(ready) == 0:
		return errs
	case s.files != nil:
		res = s.writeFiles(ready)
	case len(ready) == 1:
		res = []error{s.publishOne(ctx, ready[0])}
	default:
		res = s.publishBatches(ctx, ready)
	}
	for j, i := range at {
		errs[i] = res[j]
	}
	return errs
}

func opAttributes(kind events.OpKind) map[string]snstypes.MessageAttributeValue {
	return map[string]snstypes.MessageAttributeValue{
		"op": {DataType: aws.String("String"), StringValue: aws.String(string(kind))},
	}
}

// publishOne publishes one op, waiting at most PublishTimeout, the SDK's retries included.
func (s *Store) publishOne(ctx context.Context, op *outOp) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	_, err := s.bus.Publish(ctx, &sns.PublishInput{
		TopicArn:          aws.String(s.cfg.OpsTopicARN),
		Message:           aws.String(string(op.body)),
		MessageAttributes: opAttributes(op.kind),
	})
	if err != nil {
		s.stats.publishFailures.Add(1)
		return classify(err)
	}
	s.stats.sent.Add(1)
	return nil
}

// classify marks the errors that say the message itself is wrong; every other error
// (refused, throttled, unreachable, not authorized) may pass once the bus is back.
func classify(err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "InvalidParameter", "InvalidParameterValue", "ValidationError":
			return &refusedError{err}
		}
	}
	return err
}

// publishBatches publishes ops in PublishBatch calls, a few at once.
func (s *Store) publishBatches(ctx context.Context, ops []*outOp) []error {
	errs := make([]error, len(ops))
	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, batchParallel)
	)
	for start := 0; start < len(ops); {
		end, size := start, 0
		for end < len(ops) && end-start < batchMessages && (end == start || size+len(ops[end].body)+512 <= batchBytes) {
			size += len(ops[end].body) + 512 // 512: the attributes and the entry's framing
			end++
		}
		chunk, chunkErrs := ops[start:end], errs[start:end]
		start = end
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s.publishBatch(ctx, chunk, chunkErrs)
		})
	}
	wg.Wait()
	return errs
}

func (s *Store) publishBatch(ctx context.Context, ops []*outOp, errs []error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	in := &sns.PublishBatchInput{TopicArn: aws.String(s.cfg.OpsTopicARN)}
	for i, op := range ops {
		in.PublishBatchRequestEntries = append(in.PublishBatchRequestEntries, snstypes.PublishBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), Message: aws.String(string(op.body)), MessageAttributes: opAttributes(op.kind),
		})
	}
	out, err := s.bus.PublishBatch(ctx, in)
	if err != nil {
		s.stats.publishFailures.Add(1)
		err = classify(err)
		for i := range errs {
			errs[i] = err
		}
		return
	}
	failed := false
	for _, f := range out.Failed {
		i, perr := strconv.Atoi(aws.ToString(f.Id))
		if perr != nil || i < 0 || i >= len(ops) {
			continue
		}
		e := fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		if f.SenderFault {
			errs[i] = &refusedError{e}
		} else {
			errs[i], failed = e, true
		}
	}
	if failed {
		s.stats.publishFailures.Add(1)
	}
	for i := range ops {
		if errs[i] == nil {
			s.stats.sent.Add(1)
		}
	}
}

// finish records the outcome of sent ops: what went out is no longer pending, unless it
// changed again meanwhile; what failed stays, to go with the next flush or the recovery.
func (s *Store) finish(ops []*outOp, errs []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, op := range ops {
		var refused *refusedError
		if errors.As(errs[i], &refused) {
			s.log.Error("a session op was refused as invalid; it is dropped", "op", string(op.kind), "reason", refused.err.Error())
		}
		ok := errs[i] == nil || refused != nil
		if op.d != nil {
			op.d.inflight = false
			if ok && s.destroys[op.key] == op.d {
				op.d.sent = true
				if !op.d.notice || refused != nil {
					delete(s.destroys, op.key)
				}
			}
			continue
		}
		e := op.e
		e.inflight--
		if ok {
			if e.jseq <= op.seq {
				e.jseq = 0 // the journaled change went out
			}
			e.create = false
			if e.full <= op.seq {
				e.full = 0
			}
			if op.whole {
				// The whole session replaces the registers of the deltas before it.
				e.regBase = 0
				for name, seq := range e.regs {
					if seq <= op.seq {
						delete(e.regs, name)
					}
				}
			}
			if e.touch <= op.seq {
				e.touch = 0
			}
			for name, seq := range e.changed {
				if seq <= op.seq {
					delete(e.changed, name)
				}
			}
		}
		s.cache.settle(e)
	}
}

// collectLocked builds an op for everything pending that no call is sending right now:
// destroys first (a logout matters most), then sessions, whole if full.
func (s *Store) collectLocked(full bool, limit int) []*outOp {
	var ops []*outOp
	for key, d := range s.destroys {
		if len(ops) == limit {
			return ops
		}
		if !d.inflight && !d.sent {
			d.inflight = true
			ops = append(ops, &outOp{key: key, kind: events.OpDestroy, body: d.body, d: d})
		}
	}
	for _, e := range s.cache.pending {
		if len(ops) == limit {
			return ops
		}
		if e.inflight == 0 {
			ops = append(ops, s.buildLocked(e, full))
			s.cache.settle(e)
		}
	}
	return ops
}

// flush sends everything pending; full sends whole sessions whatever the scope. It
// returns how many ops went out and the first error.
func (s *Store) flush(ctx context.Context, full bool) (int, error) {
	s.mu.Lock()
	ops := s.collectLocked(full, -1)
	s.mu.Unlock()
	if len(ops) == 0 {
		return 0, nil
	}
	errs := s.deliver(ctx, ops)
	s.finish(ops, errs)
	s.sendNotices(ctx)
	n := 0
	var first error
	for _, err := range errs {
		var refused *refusedError
		switch {
		case err == nil:
			n++
		case errors.As(err, &refused):
		case first == nil:
			first = err
		}
	}
	return n, first
}

// Flush sends the changes that time-based frequency holds (and, while degraded, tries
// the bus) now, rather than at the next interval. Close flushes too.
func (s *Store) Flush(ctx context.Context) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	if s.bus == nil && s.files == nil {
		return nil
	}
	if s.Mode() == ModeDegraded {
		if !s.recoverBus(ctx) {
			return fmt.Errorf("%w: the bus is still unreachable", ErrUnavailable)
		}
		return nil
	}
	_, err := s.flush(ctx, false)
	switch {
	case err == nil:
		return nil
	case s.files != nil:
		return fmt.Errorf("%w: write session files: %v", ErrUnavailable, err)
	case ctx.Err() != nil:
		return fmt.Errorf("client: flush: %w", ctx.Err())
	}
	s.degrade(err)
	return nil
}

// degrade switches to ModeDegraded after a publish failed (the SDK's retries and
// PublishTimeout spent), and has the loop probe the bus.
func (s *Store) degrade(cause error) {
	if s.bus == nil {
		return
	}
	s.mu.Lock()
	if s.Mode() != ModeFailover {
		s.mu.Unlock()
		return
	}
	s.mode.Store(int32(ModeDegraded))
	s.degradedAt = time.Now()
	s.disownAllLocked() // owner.go: notices may be lost meanwhile; what recovery sends is owned again
	pending := len(s.cache.pending) + len(s.destroys)
	// What was acknowledged before the switch and is not yet sent (time-based changes,
	// sends under way) is journaled too: from now on it waits for the bus.
	keep := s.keepPendingLocked()
	s.mu.Unlock()
	s.stats.modeSwitches.Add(1)
	s.log.Warn("session store degraded: cannot publish to the bus; serving from memory, journaling every change to send when it is back",
		"mode", ModeDegraded.String(), "reason", cause.Error(), "pending", pending)
	s.wakeLoop()
	if err := s.keep(keep...); err != nil {
		s.log.Error("changes pending when the store degraded could not be journaled; they are kept in memory", "reason", err.Error())
	}
}

func (s *Store) wakeLoop() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// recoverBus probes the bus with one pending op; if it goes through, it sends a whole
// snapshot of every session changed meanwhile and the pending destroys, and returns to
// ModeFailover. It reports whether the store is back in failover mode.
func (s *Store) recoverBus(ctx context.Context) bool {
	if s.inbox != nil {
		if err := s.inbox.resubscribe(ctx); err != nil {
			s.log.Debug("the bus is still unreachable", "reason", err.Error())
			return false
		}
	}
	s.mu.Lock()
	probe := s.collectLocked(true, 1)
	s.mu.Unlock()
	sent := 0
	if len(probe) > 0 {
		errs := s.deliver(ctx, probe)
		s.finish(probe, errs)
		var refused *refusedError
		if errs[0] != nil && !errors.As(errs[0], &refused) {
			s.log.Debug("the bus is still unreachable", "reason", errs[0].Error())
			return false
		}
		n, err := s.flush(ctx, true)
		if err != nil {
			s.log.Debug("the bus failed during recovery", "reason", err.Error())
			return false
		}
		sent = n + 1
	}
	// With nothing pending (every change expired meanwhile) there is nothing to probe
	// with; the next publish tells whether the bus is back, and degrades again if not.
	s.mu.Lock()
	if s.Mode() != ModeDegraded {
		s.mu.Unlock()
		return true
	}
	s.mode.Store(int32(ModeFailover))
	degradedFor := time.Since(s.degradedAt)
	s.stats.degraded.Add(int64(degradedFor))
	s.mu.Unlock()
	s.stats.modeSwitches.Add(1)
	s.log.Info("session store back in failover mode: the bus answers again",
		"mode", ModeFailover.String(), "degradedFor", degradedFor.Round(time.Millisecond).String(), "sent", sent)
	// Changes recorded while the recovery ran went in as whole sessions to send; calls
	// made since the switch send their own.
	if _, err := s.flush(ctx, false); err != nil && ctx.Err() == nil {
		s.degrade(err)
	}
	s.compactJournal()
	return true
}

// loop runs while the store is open: time-based flushes (and, with web-method, the
// changes a caller's cancelled context left behind), probes while degraded, file sweeps.
func (s *Store) loop(ctx context.Context) {
	defer close(s.done)
	flushes := time.NewTicker(s.cfg.FlushInterval)
	defer flushes.Stop()
	var sweeps <-chan time.Time
	if s.files != nil {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		sweeps = t.C
	}
	s.replayTombstones(ctx)
	var (
		probe  *time.Timer
		probes <-chan time.Time
		wait   = probeMin
	)
	defer func() {
		if probe != nil {
			probe.Stop()
		}
	}()
	next := func() {
		probe = time.NewTimer(wait/2 + rand.N(wait/2+1))
		probes = probe.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-flushes.C:
			if s.Mode() == ModeDegraded {
				continue // the probes send it all when the bus is back
			}
			if _, err := s.flush(ctx, false); err != nil && ctx.Err() == nil {
				if s.files != nil {
					s.log.Warn("cannot write session files; trying again at the next flush", "reason", err.Error())
				} else {
					s.degrade(err)
				}
			}
			s.compactJournal()
		case <-sweeps:
			s.sweepFiles()
		case <-s.wake:
			if probes == nil {
				wait = probeMin
				next()
			}
		case <-probes:
			probes = nil
			if s.Mode() != ModeDegraded || s.recoverBus(ctx) {
				continue
			}
			wait = min(2*wait, probeMax)
			next()
		}
	}
}

// finalFlush sends what is pending when the store closes; it tries the bus once if
// degraded.
func (s *Store) finalFlush() error {
	if s.bus == nil && s.files == nil {
		return nil
	}
	ctx := context.Background()
	if s.Mode() == ModeDegraded {
		s.recoverBus(ctx)
	} else if _, err := s.flush(ctx, false); err != nil {
		s.log.Warn("flush at Close failed", "reason", err.Error())
	}
	s.stopDegradedClock()
	s.mu.Lock()
	n := len(s.cache.pending) + len(s.destroys)
	keep := s.keepPendingLocked()
	s.mu.Unlock()
	if s.journal == nil {
		if n == 0 {
			return nil
		}
		s.log.Error("session store closed with changes not sent", "pending", n)
		return fmt.Errorf("%w: changes not sent before Close: %d (changed sessions and destroys)", ErrUnavailable, n)
	}
	if n == 0 {
		if err := s.journal.close(true); err != nil {
			s.log.Warn("journal: cannot remove it; the next Open of this instance finds it empty", "reason", err.Error())
		}
		return nil
	}
	// The next Open of this instance sends them.
	err := s.keep(keep...)
	if err == nil {
		err = s.journal.rewrite()
	}
	s.journal.close(false)
	if err != nil {
		s.log.Error("session store closed with changes neither sent nor journaled", "pending", n, "reason", err.Error())
		return fmt.Errorf("%w: changes not sent before Close: %d (changed sessions and destroys), and not journaled: %v", ErrUnavailable, n, err)
	}
	s.log.Error("session store closed with changes not sent; they are journaled and sent by the next Open of this instance", "pending", n)
	return fmt.Errorf("%w: changes not sent before Close: %d (changed sessions and destroys); journaled in %s for the next Open of instance %s",
		ErrUnavailable, n, s.journal.dir, s.cfg.InstanceID)
}
