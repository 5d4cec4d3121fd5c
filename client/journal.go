package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gofrs/flock"

	"github.com/sessionha/sessionha/events"
)

// The journal is the write-ahead log of degraded mode: what the store acknowledged while
// the bus was unreachable, so that a crash loses none of it. It lives in a directory of
// its own per instance, JournalDir/<cluster>/<instance> (mode 0700):
//
//	lock     held (flock) while a Store of this instance is open: a second process with
//	         the same instance id is refused, and a crashed one releases it by dying
//	journal  a header line, then records (mode 0600)
//	.tmp-*   a rewrite under way; one left by a crash is removed at Open
//
// A record is a length (4 bytes, big endian), the CRC-32C of the payload (4 bytes), and
// the payload: one flag byte (journalNotice: a destroy notice is still owed) and the op
// as it would cross the bus (events.SessionOp: a whole session, or a destroy), so it
// carries the cluster and the hash of the session id, never the id, and is validated on
// the way back in like any op. Records are only ever appended; a session's newest record
// (highest version) is the one that counts, and a destroy beats everything of its
// session.
//
// An append is written and fsynced before the call that made it returns; concurrent
// calls share one write and one fsync (group commit). The file is created and replaced
// only by rename, the directory fsynced after, so that it is always whole or absent. It
// is rewritten with only what is still unsent (compaction) when it grows past a bound,
// after the bus is back, and at Open; Close removes it once everything was sent.
const (
	journalFile   = "journal"
	journalLock   = "lock"
	journalMagic  = "sessionha-journal 1\n"
	journalNotice = 1 << 0
	// journalMinLimit is the least size the file may reach before it is rewritten; beyond
	// it, four times its size after the last rewrite, so that rewrites cost O(1) per
	// append and the file stays within a small multiple of what it must hold.
	journalMinLimit = 1 << 20
	// journalMaxRecord bounds a record's payload: an op is at most MaxMessageBytes.
	journalMaxRecord = events.MaxMessageBytes + 1
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// jrec is one record to journal. msg is encoded when the record is written, outside
// Store.mu; it may refer to an entry's attribute map, since those are replaced, never
// changed in place. body is an op already encoded.
type jrec struct {
	msg    *events.SessionOp
	body   []byte
	notice bool
}

// jbatch is the records of one group commit.
type jbatch struct {
	recs []jrec
	done chan struct{} // closed once written (or failed)
	err  error
}

func newBatch() *jbatch { return &jbatch{done: make(chan struct{})} }

// journal is one instance's journal file, locked for this process.
type journal struct {
	dir  string
	log  *slog.Logger
	lock *flock.Flock
	// live returns what the journal must hold now: everything acknowledged and unsent.
	// A rewrite calls it with wmu held; it must not append.
	live func() []jrec
	// seal seals a record's attribute values before it is written (sealstore.go); nil
	// writes them as they are.
	seal func(*events.SessionOp) (*events.SessionOp, error)

	wmu    sync.Mutex // held while the file is written: appends and rewrites
	f      *os.File
	size   int64 // bytes in the file
	limit  int64 // rewrite beyond this size
	broken error // a write failed part way: the next commit rewrites the file whole
	closed bool

	qmu  sync.Mutex
	open *jbatch // records waiting for the next commit

	// Hooks, so that tests can watch or fail the syncs.
	syncFile func(*os.File) error
	syncDir  func(dir string) error
}

// openJournal makes (or takes) the journal directory of an instance and locks it.
// It does not read the journal: readJournal does, then rewrite makes it current.
func openJournal(dir string, log *slog.Logger) (*journal, error) {
	var err error
	for range 3 { // another instance's Close may remove the cluster's directory meanwhile
		if err = os.MkdirAll(dir, 0o700); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	// MkdirAll leaves an existing directory as it was; the journal holds session data.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	lock := flock.New(filepath.Join(dir, journalLock))
	ok, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %v", lock.Path(), err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", errInstanceInUse, lock.Path())
	}
	j := &journal{dir: dir, log: log, lock: lock, open: newBatch(), limit: journalMinLimit,
		syncFile: (*os.File).Sync, syncDir: syncDir}
	// Rewrites cut short by a crash.
	if tmps, err := filepath.Glob(filepath.Join(dir, tmpPrefix+"*")); err == nil {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return j, nil
}

// errInstanceInUse: another process has this instance's journal open.
var errInstanceInUse = errors.New("journal locked by another process")

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (j *journal) path() string { return filepath.Join(j.dir, journalFile) }

// append journals recs and returns once they are on disk (written and fsynced), or
// failed. Calls that overlap share one write and one fsync.
func (j *journal) append(recs ...jrec) error {
	if len(recs) == 0 {
		return nil
	}
	j.qmu.Lock()
	b := j.open
	b.recs = append(b.recs, recs...)
	j.qmu.Unlock()
	j.wmu.Lock()
	defer j.wmu.Unlock()
	select {
	case <-b.done: // committed by the call that held wmu before us
	default:
		j.commitLocked(false)
	}
	return b.err
}

// rewrite replaces the file with what live returns, together with any records waiting.
func (j *journal) rewrite() error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return j.commitLocked(true)
}

// commitLocked writes the records waiting: appended to the file, or (rewrite, or the
// file damaged by a failed write, or grown past its bound) as part of a rewrite.
func (j *journal) commitLocked(rewrite bool) error {
	// The batch is taken before live is called: its records were built before, so the
	// state live returns covers them; records built later go to the next batch.
	j.qmu.Lock()
	b := j.open
	j.open = newBatch()
	j.qmu.Unlock()
	defer close(b.done)
	if j.closed {
		b.err = errors.New("journal: closed")
		return b.err
	}
	if rewrite || j.broken != nil || j.f == nil {
		b.err = j.rewriteLocked()
		if b.err != nil && j.broken == nil && j.f != nil {
			b.err = j.writeLocked(b.recs) // the old file is intact: append to it instead
		}
		return b.err
	}
	if b.err = j.writeLocked(b.recs); b.err != nil {
		return b.err
	}
	if j.size > j.limit {
		if err := j.rewriteLocked(); err != nil {
			j.log.Warn("journal: cannot compact; it keeps growing until it can", "reason", err.Error())
		}
	}
	return nil
}

// encodeRecords frames recs for the file, sealing their values with seal (if not nil).
func encodeRecords(buf *bytes.Buffer, recs []jrec, seal func(*events.SessionOp) (*events.SessionOp, error)) error {
	for _, r := range recs {
		body := r.body
		if body == nil {
			msg, err := r.msg, error(nil)
			if seal != nil {
				if msg, err = seal(msg); err != nil {
					return fmt.Errorf("journal: cannot seal a session: %v", err)
				}
			}
			if body, err = events.EncodeSessionOp(msg); err != nil {
				return fmt.Errorf("journal: cannot encode a session: %v", err)
			}
		}
		var head [9]byte
		binary.BigEndian.PutUint32(head[0:4], uint32(len(body)+1))
		if r.notice {
			head[8] = journalNotice
		}
		crc := crc32.Update(crc32.Checksum(head[8:9], crcTable), crcTable, body)
		binary.BigEndian.PutUint32(head[4:8], crc)
		buf.Write(head[:])
		buf.Write(body)
	}
	return nil
}

// writeLocked appends recs and fsyncs the file.
func (j *journal) writeLocked(recs []jrec) error {
	var buf bytes.Buffer
	if err := encodeRecords(&buf, recs, j.seal); err != nil {
		return err
	}
	n, err := j.f.Write(buf.Bytes())
	j.size += int64(n)
	if err == nil {
		err = j.syncFile(j.f)
	}
	if err != nil {
		// Part of the batch may be in the file, or in a page cache that failed to reach
		// the disk: never append after it; rewrite the file whole next time.
		j.broken = err
		return fmt.Errorf("journal: write: %v", err)
	}
	return nil
}

// rewriteLocked replaces the file with what live returns: a new file written and synced
// beside it, renamed over it, the directory synced.
func (j *journal) rewriteLocked() error {
	var buf bytes.Buffer
	buf.WriteString(journalMagic)
	if err := encodeRecords(&buf, j.live(), j.seal); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(j.dir, tmpPrefix+"*") // mode 0600
	if err != nil {
		return fmt.Errorf("journal: %v", err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: rewrite: %v", err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		return fail(err)
	}
	if err := j.syncFile(tmp); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), j.path()); err != nil {
		return fail(err)
	}
	if err := j.syncDir(j.dir); err != nil {
		// The new file is in place but its name may not survive a crash; the old one
		// is gone either way. Rewrite again next time.
		j.swap(tmp, int64(buf.Len()))
		j.broken = err
		return fmt.Errorf("journal: sync directory: %v", err)
	}
	j.swap(tmp, int64(buf.Len()))
	j.broken = nil
	return nil
}

func (j *journal) swap(f *os.File, size int64) {
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size = f, size
	j.limit = max(journalMinLimit, 4*size)
}

// empty reports whether the file holds no record.
func (j *journal) empty() bool {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return j.f != nil && j.broken == nil && j.size == int64(len(journalMagic))
}

// close releases the journal. With remove, the file (which must hold nothing unsent) and
// the directory go too; else the file stays for the next Open of the instance.
func (j *journal) close(remove bool) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	var errs []error
	if j.f != nil {
		errs = append(errs, j.f.Close())
		j.f = nil
	}
	if remove {
		if err := os.Remove(j.path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		} else {
			errs = append(errs, j.syncDir(j.dir))
		}
		// The lock file goes while still locked: a process that opened it meanwhile
		// failed to lock it and stopped.
		os.Remove(j.lock.Path())
	}
	errs = append(errs, j.lock.Unlock())
	if remove {
		// Only if empty: the cluster's directory is shared by the host's instances (an
		// Open that finds it gone under it makes it again).
		os.Remove(j.dir)
		os.Remove(filepath.Dir(j.dir))
	}
	return errors.Join(errs...)
}

// journaled is one record read back.
type journaled struct {
	op     *events.SessionOp
	body   []byte // op as journaled
	notice bool
}

// readJournal reads the journal's records. A damaged record (torn by a crash during an
// append, or corrupt) is skipped and the rest kept; skipped says how many bytes were.
func readJournal(path string) (recs []journaled, skipped int64, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(data) == 0) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if !strings.HasPrefix(string(data[:min(len(data), len(journalMagic))]), journalMagic) {
		return nil, 0, fmt.Errorf("%s is not a journal of this version (want a first line %q)", path, strings.TrimSpace(journalMagic))
	}
	for rest := data[len(journalMagic):]; len(rest) > 0; {
		if len(rest) < 9 {
			skipped += int64(len(rest)) // a torn header
			break
		}
		n := int(binary.BigEndian.Uint32(rest[0:4]))
		if n < 1 || n > journalMaxRecord+1 || len(rest) < 8+n {
			// A torn record, or a length that was damaged: nothing after it can be
			// framed, so the rest goes.
			skipped += int64(len(rest))
			break
		}
		payload := rest[8 : 8+n]
		crc := binary.BigEndian.Uint32(rest[4:8])
		rest = rest[8+n:]
		if crc32.Checksum(payload, crcTable) != crc {
			skipped += int64(8 + n)
			continue
		}
		op, err := events.DecodeSessionOp(payload[1:])
		if err != nil {
			skipped += int64(8 + n)
			continue
		}
		recs = append(recs, journaled{op: op, body: payload[1:], notice: payload[0]&journalNotice != 0})
	}
	return recs, skipped, nil
}
