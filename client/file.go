package client

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Persistence file keeps each session in a file of its own, Dir/<cluster>/s-<hash>.json,
// holding the session's last whole op as it would cross the bus (events.SessionOp, so
// it is validated on the way in and out like any op). The name is the hash of the id:
// the id itself is never written. A file's mtime is set to the session's deadline, so
// that a sweep finds the expired ones without reading every file.
const (
	filePrefix = "s-"
	fileSuffix = ".json"
	tmpPrefix  = ".tmp-"
	sweepEvery = time.Minute
)

// fileStore is the directory of persistence file.
type fileStore struct {
	dir string
	// mu serializes writes and removals, so that a destroy is never overwritten by a
	// write already under way, and an older write never replaces a newer one.
	mu sync.Mutex
}

func openFiles(base, cluster string) (*fileStore, error) {
	if base == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("client: Dir (SESSIONHA_FILE_DIR) is not set and there is no user cache directory to default to (%v): set it to an absolute path", err)
		}
		base = filepath.Join(cache, "sessionha")
	}
	dir := filepath.Join(base, cluster)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: Dir (SESSIONHA_FILE_DIR): %v", err)
	}
	// MkdirAll leaves an existing directory as it was; sessions are credentials' worth.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: Dir (SESSIONHA_FILE_DIR): %v", err)
	}
	probe, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("client: Dir (SESSIONHA_FILE_DIR) %s is not writable: %v", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &fileStore{dir: dir}, nil
}

func (f *fileStore) path(hashed string) string {
	return filepath.Join(f.dir, filePrefix+hashed+fileSuffix)
}

// writeLocked replaces the file of a session atomically: a temporary file (mode 0600)
// written and synced, then renamed over the old one, then the directory synced, so that
// a crash leaves the old file or the new one, never a part.
func (f *fileStore) writeLocked(hashed string, body []byte, deadline time.Time) error {
	tmp, err := os.CreateTemp(f.dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chtimes(tmp.Name(), deadline, deadline); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path(hashed)); err != nil {
		return err
	}
	return f.syncDir()
}

func (f *fileStore) syncDir() error {
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (f *fileStore) read(hashed string) ([]byte, error) {
	file, err := os.Open(f.path(hashed))
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return io.ReadAll(io.LimitReader(file, events.MaxMessageBytes+1))
}

// remove deletes a session's file; a missing one is not an error.
func (f *fileStore) remove(hashed string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removeLocked(hashed)
}

func (f *fileStore) removeLocked(hashed string) error {
	err := os.Remove(f.path(hashed))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.syncDir()
}

// writeFiles persists session ops as files (deliver for persistence file).
func (s *Store) writeFiles(ops []*outOp) []error {
	errs := make([]error, len(ops))
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	now := time.Now()
	for i, op := range ops {
		s.mu.Lock()
		gone := s.revokedLocked(op.key, now)
		s.mu.Unlock()
		switch {
		case gone, op.e.written >= op.ver:
			// Destroyed meanwhile (never write it back), or a newer write went first.
		case !now.Before(op.expires):
			errs[i] = s.files.removeLocked(op.hashed) // over: nothing a read could return
		default:
			if errs[i] = s.files.writeLocked(op.hashed, op.body, op.expires); errs[i] == nil {
				op.e.written = op.ver
				s.stats.sent.Add(1)
			}
		}
	}
	return errs
}

// decodeFile reads a session file's op; ok is false for anything that is not a whole
// session of this cluster stored under this hash.
func (s *Store) decodeFile(hashed string, body []byte) (*events.SessionOp, bool) {
	op, err := events.DecodeSessionOp(body)
	if err != nil || op.Cluster != s.cfg.Cluster || op.ID != hashed || op.Session == nil ||
		(op.Op != events.OpCreate && op.Op != events.OpSave) {
		return nil, false
	}
	return op, true
}

// loadFile reads a session this instance does not hold from its file.
func (s *Store) loadFile(id, hashed, key string, now time.Time) (*Session, error) {
	body, err := s.files.read(hashed)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read session file: %v", ErrUnavailable, err)
	}
	op, ok := s.decodeFile(hashed, body)
	if !ok {
		s.log.Warn("a session file cannot be read as a session; it is ignored")
		return nil, ErrNotFound
	}
	m := op.Session
	sess := &Session{
		key: key, principal: m.Principal, group: m.Group,
		created: time.UnixMilli(m.Created), lastAccess: time.UnixMilli(m.LastAccess),
		maxIdle: time.Duration(m.MaxIdle) * time.Second, maxLife: time.Duration(m.MaxLife) * time.Second,
		attrs: cloneAttrs(m.Attrs),
	}
	if sess.attrs, err = s.cfg.Keyring.openAttrs(key, sess.attrs); err != nil { // sealed (seal.go)
		return nil, fmt.Errorf("client: load: %w", err)
	}
	if !now.Before(sess.expiresAt()) {
		s.sweepFile(hashed, now)
		return nil, ErrNotFound
	}
	s.clock.observe(op.Version)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revokedLocked(key, now) {
		return nil, ErrNotFound
	}
	if e := s.cache.get(key); e != nil {
		sess = e.sess.clone() // loaded or saved by another call meanwhile: that one is newer
	} else {
		ver := record.Version(op.Version, op.Writer)
		s.cache.add(&entry{key: key, sess: sess.clone(), ver: ver, written: ver})
	}
	sess.id = id
	return sess, nil
}

// sweepFiles removes the files of expired sessions, and temporary files a crash left.
func (s *Store) sweepFiles() {
	list, err := os.ReadDir(s.files.dir)
	if err != nil {
		s.log.Warn("cannot list the session directory", "reason", err.Error())
		return
	}
	now := time.Now()
	for _, de := range list {
		name := de.Name()
		info, err := de.Info()
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			// Writes last milliseconds; one a minute old (or already dated to its
			// session's deadline) was cut short by a crash.
			if age := now.Sub(info.ModTime()); age > time.Minute || age < -time.Minute {
				s.files.mu.Lock()
				os.Remove(filepath.Join(s.files.dir, name))
				s.files.mu.Unlock()
			}
		case strings.HasPrefix(name, filePrefix) && strings.HasSuffix(name, fileSuffix):
			if info.ModTime().Before(now) {
				s.sweepFile(strings.TrimSuffix(strings.TrimPrefix(name, filePrefix), fileSuffix), now)
			}
		}
	}
}

// sweepFile removes a session's file if the session it holds is over, unless this
// instance is about to write it again.
func (s *Store) sweepFile(hashed string, now time.Time) {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	s.mu.Lock()
	e := s.cache.get(record.Key(s.cfg.Cluster, hashed))
	busy := e != nil && e.pinned()
	s.mu.Unlock()
	if busy {
		return
	}
	body, err := s.files.read(hashed)
	if err != nil {
		return
	}
	op, ok := s.decodeFile(hashed, body)
	if !ok || now.Before(op.Expires()) {
		return // not ours to judge, or still valid (its mtime was changed by hand)
	}
	if err := s.files.removeLocked(hashed); err != nil {
		s.log.Warn("cannot remove an expired session file", "reason", err.Error())
	}
}
