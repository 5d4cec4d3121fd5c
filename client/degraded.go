package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// What degraded mode keeps: every change and logout it acknowledges is journaled
// (journal.go) before the call returns, replayed by the next Open of the instance after
// a crash, and sent when the bus is back, logouts with their notices. A logout is also
// written to the table at once where this instance reads it directly, so that the other
// instances refuse the session before the bus is back: its logout item (tombstone).

// journalDir is where this instance's journal lives.
func (c Config) journalDir() (string, error) {
	base := c.JournalDir
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("client: JournalDir (SESSIONHA_JOURNAL_DIR) is not set and there is no user cache directory to default to (%v): set it to an absolute path", err)
		}
		base = filepath.Join(cache, "sessionha")
	}
	return filepath.Join(base, c.Cluster, c.InstanceID), nil
}

// openJournal takes this instance's journal and puts back into memory what it holds:
// what a predecessor with this instance id acknowledged in degraded mode and had not
// sent when it stopped. It returns how many sessions and logouts it put back.
func (s *Store) openJournal() (int, error) {
	dir, err := s.cfg.journalDir()
	if err != nil {
		return 0, err
	}
	j, err := openJournal(dir, s.log)
	if errors.Is(err, errInstanceInUse) {
		return 0, fmt.Errorf("client: InstanceID (SESSIONHA_INSTANCE_ID) %q is open in another process (%v): give each process an instance id of its own", s.cfg.InstanceID, err)
	}
	if err != nil {
		return 0, fmt.Errorf("client: JournalDir (SESSIONHA_JOURNAL_DIR) %s: %v", dir, err)
	}
	recs, skipped, err := readJournal(j.path())
	if err != nil {
		j.close(false)
		return 0, fmt.Errorf("client: JournalDir (SESSIONHA_JOURNAL_DIR): %v", err)
	}
	if skipped > 0 {
		s.log.Warn("journal: damaged records skipped, the rest replayed (a crash during an append tears the last record, which was never acknowledged)", "bytes", skipped)
	}
	if err := s.openJournaled(recs); err != nil { // sealstore.go
		j.close(false)
		return 0, err
	}
	n := s.replay(recs)
	j.live, j.seal = s.journalLive, s.sealOp
	// Rewritten at once: it holds exactly what is unsent, and no damaged tail that later
	// appends would follow.
	if err := j.rewrite(); err != nil {
		j.close(false)
		return 0, fmt.Errorf("client: JournalDir (SESSIONHA_JOURNAL_DIR) %s: %v", dir, err)
	}
	s.journal = j
	return n, nil
}

// replay puts journaled records back into memory, as they were when journaled: sessions
// as changed and unsent (sent again with the version they were journaled with), logouts
// as refused and unsent.
func (s *Store) replay(recs []journaled) int {
	best := map[string]journaled{}
	foreign := 0
	for _, r := range recs {
		if r.op.Cluster != s.cfg.Cluster || (r.op.Op != events.OpDestroy && r.op.Session == nil) {
			foreign++
			continue
		}
		key := record.Key(r.op.Cluster, r.op.ID)
		cur, seen := best[key]
		switch {
		case !seen:
			best[key] = r
		case cur.op.Op == events.OpDestroy:
			cur.notice = cur.notice || r.notice
			best[key] = cur
		case r.op.Op == events.OpDestroy,
			record.Version(r.op.Version, r.op.Writer) > record.Version(cur.op.Version, cur.op.Writer):
			best[key] = r
		}
	}
	if foreign > 0 {
		s.log.Warn("journal: records of another cluster or of no session skipped", "records", foreign)
	}
	now := time.Now()
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, r := range best {
		op := r.op
		s.clock.observe(op.Version)
		if op.Op == events.OpDestroy {
			s.revoked[key] = now.Add(s.cfg.PurgeDelay)
			s.destroys[key] = &pendingDestroy{body: r.body, hashed: op.ID, reason: op.Reason, until: op.Until,
				ver: record.Version(op.Version, op.Writer), notice: r.notice && s.cfg.NoticeScope != NoticeOff}
			n++
			continue
		}
		if !now.Before(op.Expires()) {
			continue // over: nothing a read could return
		}
		m := op.Session
		e := &entry{key: key, ver: record.Version(op.Version, op.Writer), seq: 1, full: 1,
			create: op.Op == events.OpCreate, jseq: 1, jver: op.Version,
			sess: &Session{
				key: key, principal: m.Principal, group: m.Group,
				created: time.UnixMilli(m.Created), lastAccess: time.UnixMilli(m.LastAccess),
				maxIdle: time.Duration(m.MaxIdle) * time.Second, maxLife: time.Duration(m.MaxLife) * time.Second,
				attrs: cloneAttrs(m.Attrs),
			}}
		s.cache.add(e)
		n++
	}
	return n
}

// startDegraded opens the store in degraded mode, to send what was replayed once the
// bus answers (at once if it does).
func (s *Store) startDegraded(replayed int) {
	s.mu.Lock()
	s.mode.Store(int32(ModeDegraded))
	s.degradedAt = time.Now()
	s.mu.Unlock()
	s.stats.modeSwitches.Add(1)
	s.log.Warn("session store starts degraded: sending what this instance journaled before it stopped once the bus answers",
		"mode", ModeDegraded.String(), "replayed", replayed)
	s.wakeLoop()
}

// keepLocked is e's record for the journal: its whole session as changed last, with the
// version it is sent with.
func (s *Store) keepLocked(e *entry) []jrec {
	if e.jseq != e.seq {
		e.jseq, e.jver = e.seq, s.clock.next()
	}
	return []jrec{{msg: s.wholeLocked(e, e.jver)}}
}

// keepIfDegradedLocked is keepLocked for a change just recorded, if degraded mode
// acknowledges it.
func (s *Store) keepIfDegradedLocked(e *entry) []jrec {
	if s.journal == nil || s.Mode() != ModeDegraded {
		return nil
	}
	return s.keepLocked(e)
}

func (s *Store) keepDestroyLocked(d *pendingDestroy) []jrec {
	if s.journal == nil {
		return nil
	}
	return []jrec{{body: d.body, notice: d.notice}}
}

// keepPendingLocked is the records of everything pending: unsent changes and destroys.
func (s *Store) keepPendingLocked() []jrec {
	if s.journal == nil {
		return nil
	}
	var recs []jrec
	for _, d := range s.destroys {
		recs = append(recs, s.keepDestroyLocked(d)...)
	}
	for _, e := range s.cache.pending {
		recs = append(recs, s.keepLocked(e)...)
	}
	return recs
}

// journalLive is what the journal must hold: every change journaled and not yet sent
// (as the session is now), and every destroy not yet sent or whose notice is owed.
func (s *Store) journalLive() []jrec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []jrec
	for _, d := range s.destroys {
		recs = append(recs, s.keepDestroyLocked(d)...)
	}
	for _, e := range s.cache.pending {
		if e.jseq != 0 {
			recs = append(recs, s.keepLocked(e)...)
		}
	}
	return recs
}

// keep journals recs and returns once they are on disk.
func (s *Store) keep(recs ...jrec) error {
	if s.journal == nil || len(recs) == 0 {
		return nil
	}
	if err := s.journal.append(recs...); err != nil {
		return fmt.Errorf("%w: the bus is unreachable and the change could not be journaled to local disk (%v); it is kept in memory and sent when the bus is back, but would be lost if this process stopped first", ErrUnavailable, err)
	}
	return nil
}

// compactJournal rewrites the journal with only what is still unsent: empty once the
// bus took everything.
func (s *Store) compactJournal() {
	if s.journal == nil || s.journal.empty() {
		return
	}
	if err := s.journal.rewrite(); err != nil {
		s.log.Warn("journal: cannot compact it; trying again later", "reason", err.Error())
	}
}

// tombstone writes the logout d to the table at once, where this instance reads the
// table directly: the other instances, of this region and (once replicated) of every
// other, refuse the session before the bus is back. It writes the session's logout item
// only (record.Table.WriteLogout), insert-only, which no session write can overwrite and
// every read and merge takes as final; it is all the auth servers' policy lets them write
// (PutItem on logout keys). The tombstone itself is written by the functions when the bus
// takes the destroy. It reports whether the logout is in the table, written now or
// before. The logout item lasts until the session's latest possible deadline the destroy
// carries, plus the record's default grace, and at least its LogoutKeep.
func (s *Store) tombstone(ctx context.Context, key string, d *pendingDestroy) bool {
	if s.table == nil || s.cfg.ReadPath != ReadDirect {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.table.WriteLogout(ctx, record.Op{Kind: record.Destroy, Key: key, Version: d.ver, Until: d.until}); err != nil {
		s.log.Warn("a logout made while the bus is down could not be written to the table; it is journaled and sent when the bus is back",
			"reason", err.Error())
		return false
	}
	return true
}

// replayTombstones writes the logouts replayed from the journal to the table (see
// tombstone): they may not have reached it before the crash.
func (s *Store) replayTombstones(ctx context.Context) {
	if s.journal == nil || s.cfg.ReadPath != ReadDirect {
		return
	}
	s.mu.Lock()
	due := map[string]*pendingDestroy{}
	for key, d := range s.destroys {
		if !d.sent {
			due[key] = d
		}
	}
	s.mu.Unlock()
	for key, d := range due {
		if ctx.Err() != nil {
			return
		}
		s.tombstone(ctx, key, d)
	}
}

// sendNotices publishes the destroy notices owed: for logouts whose tombstone the bus
// took just now, or took on recovery after they were made while it was down. A notice
// that cannot be published stays owed until the next flush; a notice is a fast path
// only (the tombstone makes the logout final), but the instances that serve their own
// copy without asking learn of the logout from it.
func (s *Store) sendNotices(ctx context.Context) {
	s.mu.Lock()
	var due []*pendingDestroy
	for _, d := range s.destroys {
		if d.sent && d.notice && !d.inflight {
			d.inflight = true
			due = append(due, d)
		}
	}
	s.mu.Unlock()
	if len(due) == 0 {
		return
	}
	errs := s.publishNotices(ctx, due)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, d := range due {
		d.inflight = false
		var refused *refusedError
		switch {
		case errors.As(errs[i], &refused):
			s.log.Error("a destroy notice was refused as invalid; it is dropped", "reason", refused.err.Error())
		case errs[i] != nil:
			s.log.Warn("destroy notice not published; trying again at the next flush (other instances learn it from the table meanwhile)", "reason", errs[i].Error())
			continue
		}
		d.notice = false
		if key := record.Key(s.cfg.Cluster, d.hashed); s.destroys[key] == d {
			delete(s.destroys, key)
		}
	}
}

// publishNotices publishes destroy notices in batches and returns each one's error.
func (s *Store) publishNotices(ctx context.Context, ds []*pendingDestroy) []error {
	errs := make([]error, len(ds))
	site := map[string]snstypes.MessageAttributeValue{
		"site": {DataType: aws.String("String"), StringValue: aws.String(s.cfg.Site)},
	}
	for start := 0; start < len(ds); start += batchMessages {
		in := &sns.PublishBatchInput{TopicArn: aws.String(s.cfg.NoticeTopicARN)}
		for i := start; i < min(start+batchMessages, len(ds)); i++ {
			d := ds[i]
			body, err := events.EncodeNotice(&events.Notice{
				V: events.SchemaVersion, Cluster: s.cfg.Cluster, ID: d.hashed, Site: s.cfg.Site,
				Writer: s.cfg.InstanceID, At: time.Now().UnixMilli(), Reason: d.reason,
			})
			if err != nil {
				errs[i] = &refusedError{err}
				continue
			}
			in.PublishBatchRequestEntries = append(in.PublishBatchRequestEntries, snstypes.PublishBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), Message: aws.String(string(body)), MessageAttributes: site,
			})
		}
		if len(in.PublishBatchRequestEntries) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
		out, err := s.bus.PublishBatch(cctx, in)
		cancel()
		if err != nil {
			s.stats.publishFailures.Add(1)
			err = classify(err)
			for _, e := range in.PublishBatchRequestEntries {
				i, _ := strconv.Atoi(aws.ToString(e.Id))
				errs[i] = err
			}
			continue
		}
		for _, f := range out.Failed {
			i, perr := strconv.Atoi(aws.ToString(f.Id))
			if perr != nil || i < start || i >= len(ds) {
				continue
			}
			e := fmt.Errorf("%s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
			if f.SenderFault {
				errs[i] = &refusedError{e}
			} else {
				errs[i] = e
			}
		}
	}
	return errs
}
