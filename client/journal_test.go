package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Unit tests of degraded mode's journal: the file (framing, torn tail, fsync before the
// acknowledgement, group commit, compaction, permissions, lock) and the store around it
// with a bus that cannot be reached (a closed port), so that every Save is degraded.

// deadEndpoint is a URL nothing listens on: every AWS call is refused at once.
func deadEndpoint(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// syncLog records a journal's writes and syncs, in order.
type syncLog struct {
	mu     sync.Mutex
	events []string
}

func (l *syncLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, " ")
}

// testJournal opens a journal in a temporary directory whose live state is what the
// test sets in *live.
func testJournal(t *testing.T, live *[]jrec) *journal {
	t.Helper()
	j, err := openJournal(filepath.Join(t.TempDir(), "c", "i"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j.live = func() []jrec { return *live }
	if err := j.rewrite(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.close(false) })
	return j
}

// saveRec is a journal record of a whole session with one attribute.
func saveRec(n int, value string) jrec {
	now := time.Now().UnixMilli()
	return jrec{msg: &events.SessionOp{
		V: events.SchemaVersion, Op: events.OpSave, Cluster: "c", ID: events.HashID(fmt.Sprint("session-", n)),
		Version: fmt.Sprintf("%016x", 1000+n), Writer: "i", Site: "s", At: now,
		Session: &events.Session{Principal: "p", Created: now, LastAccess: now, MaxIdle: 60, MaxLife: 600,
			Attrs: map[string][]byte{"v": []byte(value)}},
	}}
}

func TestJournalTornTailIsSkippedAndTheRestKept(t *testing.T) {
	var live []jrec
	j := testJournal(t, &live)
	for i := range 3 {
		if err := j.append(saveRec(i, "kept")); err != nil {
			t.Fatal(err)
		}
	}
	// A fourth append cut short by a crash: its header and half its payload.
	var torn bytes.Buffer
	if err := encodeRecords(&torn, []jrec{saveRec(3, "torn")}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(j.path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(torn.Bytes()[:torn.Len()/2])
	f.Close()

	recs, skipped, err := readJournal(j.path())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || skipped != int64(torn.Len()/2) {
		t.Fatalf("read %d records, skipped %d bytes; want the 3 whole ones, skipping the %d torn bytes", len(recs), skipped, torn.Len()/2)
	}
	for i, r := range recs {
		if r.op.ID != events.HashID(fmt.Sprint("session-", i)) || string(r.op.Session.Attrs["v"]) != "kept" {
			t.Errorf("record %d: %+v", i, r.op)
		}
	}

	// A record damaged in the middle (a flipped byte): only it is skipped.
	data, _ := os.ReadFile(j.path())
	second := len(journalMagic) + (len(data)-len(journalMagic)-torn.Len()/2)/3 // records are the same size
	data[second+20] ^= 0xff
	os.WriteFile(j.path(), data, 0o600)
	recs, _, err = readJournal(j.path())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].op.ID != events.HashID("session-0") || recs[1].op.ID != events.HashID("session-2") {
		t.Fatalf("after damaging the second record: %d records read, want the first and third", len(recs))
	}
}

func TestJournalAcknowledgesOnlyAfterFsync(t *testing.T) {
	var live []jrec
	j := testJournal(t, &live)
	log := &syncLog{}
	release := make(chan struct{})
	j.syncFile = func(f *os.File) error {
		info, _ := f.Stat()
		log.add(fmt.Sprintf("sync(%d)", info.Size()))
		<-release
		return f.Sync()
	}
	j.syncDir = func(dir string) error { log.add("syncdir"); return syncDir(dir) }
	before := j.size
	done := make(chan error)
	go func() { done <- j.append(saveRec(1, "x")) }()
	deadline := time.Now().Add(10 * time.Second)
	for log.String() == "" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("append returned (%v) before its fsync finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The record was in the file when it was synced.
	if got, want := log.String(), fmt.Sprintf("sync(%d)", j.size); got != want || j.size <= before {
		t.Fatalf("append: %q, want %q (the record written, then the file synced)", got, want)
	}

	// A rewrite syncs the new file before it is renamed into place, and the directory
	// after, so that a crash leaves the old journal or the new one.
	*log = syncLog{}
	live = []jrec{saveRec(2, "y")}
	var renamedAtSync []bool
	j.syncFile = func(f *os.File) error {
		_, err := os.Stat(filepath.Join(j.dir, filepath.Base(f.Name())))
		renamedAtSync = append(renamedAtSync, f.Name() == j.path() || err != nil)
		log.add("sync")
		return f.Sync()
	}
	if err := j.rewrite(); err != nil {
		t.Fatal(err)
	}
	if got := log.String(); got != "sync syncdir" || len(renamedAtSync) != 1 || renamedAtSync[0] {
		t.Fatalf("rewrite: %q (renamed before the sync: %v), want the new file synced under its temporary name, then the directory", got, renamedAtSync)
	}
	recs, _, _ := readJournal(j.path())
	if len(recs) != 1 || recs[0].op.ID != events.HashID("session-2") {
		t.Fatalf("after the rewrite the journal holds %d records, want the live one", len(recs))
	}
}

func TestJournalGroupsConcurrentAppendsIntoFewFsyncs(t *testing.T) {
	var live []jrec
	j := testJournal(t, &live)
	var syncs atomic.Int64
	j.syncFile = func(f *os.File) error {
		syncs.Add(1)
		time.Sleep(5 * time.Millisecond) // a slow disk
		return f.Sync()
	}
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := j.append(saveRec(i, "x")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	recs, _, _ := readJournal(j.path())
	if len(recs) != n {
		t.Fatalf("%d records in the journal, want %d", len(recs), n)
	}
	if s := syncs.Load(); s > n/4 {
		t.Errorf("%d fsyncs for %d concurrent appends: they are not grouped", s, n)
	}
}

func TestJournalCompactsToWhatIsUnsent(t *testing.T) {
	var live []jrec
	j := testJournal(t, &live)
	// One session saved over and over: the live state is its last save only.
	big := strings.Repeat("x", 8<<10)
	for i := range 600 { // about 5 MB of appends
		r := saveRec(1, fmt.Sprint(i, big))
		live = []jrec{r}
		if err := j.append(r); err != nil {
			t.Fatal(err)
		}
	}
	info, err := os.Stat(j.path())
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() > journalMinLimit+(16<<10) {
		t.Errorf("the journal grew to %d bytes for one session's saves; compaction keeps it near %d", info.Size(), journalMinLimit)
	}
	recs, _, _ := readJournal(j.path())
	if last := recs[len(recs)-1]; !strings.HasPrefix(string(last.op.Session.Attrs["v"]), "599") {
		t.Errorf("the last record is not the last save")
	}
	// Everything sent: a rewrite leaves the header only.
	live = nil
	if err := j.rewrite(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(j.path()); string(data) != journalMagic || !j.empty() {
		t.Errorf("after everything was sent the journal holds %d bytes, want the header only", len(data))
	}
}

func TestJournalRewritesAfterAFailedWrite(t *testing.T) {
	var live []jrec
	j := testJournal(t, &live)
	if err := j.append(saveRec(1, "a")); err != nil {
		t.Fatal(err)
	}
	j.syncFile = func(*os.File) error { return errors.New("EIO") }
	live = []jrec{saveRec(1, "a"), saveRec(2, "b")}
	if err := j.append(saveRec(2, "b")); err == nil {
		t.Fatal("append succeeded with fsync failing")
	}
	j.syncFile = (*os.File).Sync
	live = append(live, saveRec(3, "c"))
	if err := j.append(saveRec(3, "c")); err != nil {
		t.Fatal(err)
	}
	// The file was rewritten whole from the live state, not appended after a write
	// that may be torn.
	recs, skipped, _ := readJournal(j.path())
	if len(recs) != 3 || skipped != 0 {
		t.Fatalf("after a failed write: %d records, %d bytes skipped; want the 3 live ones, nothing damaged", len(recs), skipped)
	}
}

func TestJournalPermissionsAndLock(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "c", "i")
	os.MkdirAll(dir, 0o755) // made earlier, too open
	j, err := openJournal(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	j.live = func() []jrec { return []jrec{saveRec(1, "secret")} }
	if err := j.rewrite(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, j.path(), filepath.Join(dir, journalLock)} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want := fs.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
	}
	if _, err := openJournal(dir, slog.New(slog.DiscardHandler)); !errors.Is(err, errInstanceInUse) {
		t.Fatalf("a second open of a locked journal: %v, want errInstanceInUse", err)
	}
	if err := j.close(false); err != nil {
		t.Fatal(err)
	}
	j2, err := openJournal(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open after the holder closed it: %v", err)
	}
	if recs, _, _ := readJournal(j2.path()); len(recs) != 1 {
		t.Errorf("the journal kept by close(false) holds %d records, want 1", len(recs))
	}
	j2.live = func() []jrec { return nil }
	if err := j2.close(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("close(true) left the instance's directory: %v", err)
	}
}

// haStore opens a store with persistence ha whose bus and table cannot be reached, so
// that it degrades at its first publish; logs go to logs. edit changes the configuration.
func haStore(t testing.TB, dir, instance string, logs *syncBuffer, edit ...func(*Config)) (*Store, error) {
	cfg := Config{
		Table: "t", OpsTopicARN: "arn:aws:sns:us-east-1:000000000000:ops", InstanceID: instance, JournalDir: dir,
		PublishTimeout: 300 * time.Millisecond,
		AWS: &aws.Config{
			Region: "us-east-1", BaseEndpoint: aws.String(deadEndpoint(t)),
			Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
			Retryer:     func() aws.Retryer { return aws.NopRetryer{} },
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
	for _, e := range edit {
		e(&cfg)
	}
	return Open(context.Background(), cfg)
}

// syncBuffer is a bytes.Buffer for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// crash stops s as a killed process would: no flush, no Close; the kernel releases its
// lock and its file.
func crash(s *Store) {
	s.closeOnce.Do(func() {})
	s.closed.Store(true)
	s.ops.Lock()
	s.ops.Unlock()
	s.stop()
	<-s.done
	s.journal.wmu.Lock()
	s.journal.f.Close()
	s.journal.lock.Close()
	s.journal.wmu.Unlock()
	releaseInstance(s.cfg.InstanceID) // the process is gone
}

func TestDegradedStoreReplaysItsJournalAfterACrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	s, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.Create(ctx, NewSession{Principal: "alice", Attrs: map[string][]byte{"cart": []byte("book")}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeDegraded {
		t.Fatalf("mode %s with the bus unreachable", s.Mode())
	}
	kept.Set("cart", []byte("book,lamp"))
	if err := s.Save(ctx, kept); err != nil {
		t.Fatal(err)
	}
	gone, err := s.Create(ctx, NewSession{Principal: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, gone.ID()); err != nil {
		t.Fatal(err)
	}
	crash(s)

	// Nothing in the directory carries an id in clear.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			body, _ := os.ReadFile(p)
			for _, id := range []string{kept.ID(), gone.ID()} {
				if strings.Contains(string(body), id) || strings.Contains(p, id) {
					t.Errorf("%s holds a session id in clear", p)
				}
			}
		}
		return nil
	})

	again, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Mode() != ModeDegraded {
		t.Errorf("mode %s after replaying unsent changes, want degraded until the bus takes them", again.Mode())
	}
	got, err := again.Load(ctx, kept.ID())
	if err != nil {
		t.Fatalf("the session saved before the crash: %v", err)
	}
	if v, _ := got.Get("cart"); string(v) != "book,lamp" || got.Principal() != "alice" {
		t.Errorf("replayed session: cart %q principal %q, want the last save", v, got.Principal())
	}
	if _, err := again.Load(ctx, gone.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("the session logged out before the crash: %v, want ErrNotFound", err)
	}
	// Both wait to be sent: the save and the logout.
	if st := again.Stats(); st.Pending != 2 {
		t.Errorf("%d pending after the replay, want 2 (a session and a logout)", st.Pending)
	}
	// The replayed save goes out with the version it was journaled with.
	again.mu.Lock()
	e := again.cache.get(record.Key("default", events.HashID(kept.ID())))
	op := again.buildLocked(e, true)
	e.inflight--
	again.mu.Unlock()
	recs, _, _ := readJournal(filepath.Join(dir, "default", "auth-1", journalFile))
	var journaledVer string
	for _, r := range recs {
		if r.op.ID == events.HashID(kept.ID()) {
			journaledVer = r.op.Version
		}
	}
	if op.msg.Version != journaledVer || journaledVer == "" {
		t.Errorf("the replayed save would go out as version %s, journaled as %s", op.msg.Version, journaledVer)
	}
	for _, id := range []string{kept.ID(), gone.ID()} {
		if strings.Contains(logs.String(), id) {
			t.Fatalf("a log line carries a session id:\n%s", logs.String())
		}
	}
}

// TestDegradeJournalsWhatWasPending: with time-based frequency a Save returns before
// anything is sent; when the flush finds the bus down, the store degrades and journals
// what was waiting, so that a crash from then on loses none of it.
func TestDegradeJournalsWhatWasPending(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	timeBased := func(c *Config) { c.Frequency, c.FlushInterval = FrequencyTimeBased, time.Hour }
	s, err := haStore(t, dir, "auth-1", logs, timeBased)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.Create(ctx, NewSession{Principal: "alice", Attrs: map[string][]byte{"k": []byte("v1")}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeFailover {
		t.Fatalf("mode %s before any publish", s.Mode())
	}
	if recs, _, _ := readJournal(filepath.Join(dir, "default", "auth-1", journalFile)); len(recs) != 0 {
		t.Fatalf("%d records journaled in failover mode, want none", len(recs))
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Mode() != ModeDegraded {
		t.Fatalf("mode %s after a flush with the bus down", s.Mode())
	}
	crash(s)
	again, err := haStore(t, dir, "auth-1", logs, timeBased)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	got, err := again.Load(ctx, sess.ID())
	if err != nil {
		t.Fatalf("the session pending when the store degraded: %v", err)
	}
	if v, _ := got.Get("k"); string(v) != "v1" {
		t.Errorf("replayed k=%q, want v1", v)
	}
}

func TestDegradedStoreSkipsATornJournalTail(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	s, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.Create(ctx, NewSession{Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	crash(s)
	path := filepath.Join(dir, "default", "auth-1", journalFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 1, 2, 3, 4, 0, '{', '"'}) // a record's start: a crash mid-append
	f.Close()

	again, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.Load(ctx, sess.ID()); err != nil {
		t.Fatalf("the session journaled before the torn record: %v", err)
	}
	if !strings.Contains(logs.String(), "damaged records skipped") || !strings.Contains(logs.String(), "bytes=11") {
		t.Errorf("no log line says the torn record was skipped:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), sess.ID()) || strings.Contains(logs.String(), events.HashID(sess.ID())) {
		t.Errorf("a log line carries the session id or its hash")
	}
	if _, skipped, _ := readJournal(path); skipped != 0 {
		t.Errorf("the journal still has %d damaged bytes after Open rewrote it", skipped)
	}
}

func TestSecondProcessWithTheSameInstanceIDIsRefused(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	first, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	_, err = haStore(t, dir, "auth-1", logs)
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_INSTANCE_ID") || !strings.Contains(err.Error(), "open in this process") {
		t.Fatalf("a second Open of one instance id: %v, want an error naming SESSIONHA_INSTANCE_ID", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing was pending: Close removed the journal, and the id is free again.
	if _, err := os.Stat(filepath.Join(dir, "default", "auth-1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left the journal directory: %v", err)
	}
	second, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	second.Close()
}

func TestCloseKeepsWhatItCouldNotSendInTheJournal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	logs := &syncBuffer{}
	s, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.Create(ctx, NewSession{Principal: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Close()
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "journaled") {
		t.Fatalf("Close with the bus down: %v, want ErrUnavailable saying the changes are journaled", err)
	}
	again, err := haStore(t, dir, "auth-1", logs)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.Load(ctx, sess.ID()); err != nil {
		t.Fatalf("the session Close could not send: %v", err)
	}
}

func TestJournalDirMustBeAbsolute(t *testing.T) {
	_, err := Open(context.Background(), Config{Table: "t", OpsTopicARN: "arn:x", JournalDir: "relative"})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_JOURNAL_DIR") {
		t.Fatalf("got %v, want an error naming SESSIONHA_JOURNAL_DIR", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	_, err = haStore(t, file, "auth-1", &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_JOURNAL_DIR") {
		t.Fatalf("a JournalDir that is a file: %v, want an error naming SESSIONHA_JOURNAL_DIR", err)
	}
}

// BenchmarkJournaledSave is the cost of a Save acknowledged in degraded mode: the
// change recorded, journaled and fsynced. In parallel, group commit shares the fsyncs.
func BenchmarkJournaledSave(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		b.Run(map[bool]string{false: "serial", true: "parallel"}[parallel], func(b *testing.B) {
			ctx := context.Background()
			s, err := haStore(b, b.TempDir(), "bench", &syncBuffer{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			attrs := map[string][]byte{}
			for i := range 20 {
				attrs[fmt.Sprint("attr", i)] = bytes.Repeat([]byte{'v'}, 100) // the reference session: 20 attributes, 2 KB
			}
			var sessions []*Session
			for range 64 {
				sess, err := s.Create(ctx, NewSession{Principal: "p", Attrs: attrs})
				if err != nil {
					b.Fatal(err)
				}
				sessions = append(sessions, sess)
			}
			if s.Mode() != ModeDegraded {
				b.Fatal("not degraded")
			}
			var next atomic.Int64
			b.ResetTimer()
			if !parallel {
				for i := range b.N {
					sess := sessions[i%len(sessions)]
					sess.Set("n", []byte(fmt.Sprint(i)))
					if err := s.Save(ctx, sess); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				sess := sessions[next.Add(1)%int64(len(sessions))].clone()
				for i := 0; pb.Next(); i++ {
					sess.Set("n", []byte(fmt.Sprint(i)))
					if err := s.Save(ctx, sess); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
