package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Mode says whether sessions are being made failover-safe right now.
type Mode int32

const (
	// ModeFailover: changes reach the bus; another instance can take over any session.
	ModeFailover Mode = iota
	// ModeDegraded: the bus is unreachable; sessions are served from memory and the
	// changes made meanwhile are sent when it is back.
	ModeDegraded
	// ModeLocal: persistence memory or file, so there is no failover by configuration.
	ModeLocal
)

func (m Mode) String() string {
	switch m {
	case ModeFailover:
		return "failover"
	case ModeDegraded:
		return "degraded"
	case ModeLocal:
		return "local"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// publisher is the part of the SNS API the store calls: Publish for a Save that waits,
// PublishBatch for flushes and recovery, which send many sessions at once.
type publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
	PublishBatch(context.Context, *sns.PublishBatchInput, ...func(*sns.Options)) (*sns.PublishBatchOutput, error)
}

// Store keeps sessions for one auth server instance. It is safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	clock clock
	bus   publisher      // nil unless ha
	table *record.Table  // nil unless ha
	files *fileStore     // nil unless file
	index record.Querier // ha: the per-user index
	inbox *inbox         // ha with ReadPath bus or notices: this instance's queue

	mu sync.Mutex // guards what follows, and every entry
	cache
	destroys   map[string]*pendingDestroy // ha: destroys not yet sent, by key
	revoked    map[string]time.Time       // keys destroyed (here, or by a notice) -> when to forget them
	flights    map[string]*flight         // failover queries under way, by key
	swept      time.Time                  // last sweep of revoked
	degradedAt time.Time

	mode  atomic.Int32 // changed under mu, read without it
	stats counters

	ops       sync.RWMutex // held shared by every call under way, exclusively by Close to wait for them
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc // stops the background loop; nil without one
	done      chan struct{}      // closed when the loop has stopped
	wake      chan struct{}      // tells the loop to start probing the bus
}

// Open validates cfg and returns a Store. With persistence ha it builds SNS and DynamoDB
// clients from cfg.AWS or the SDK's default chain; with file it makes the directory.
// Stores with persistence file or ha run a goroutine (time-based flushes, probes of the
// bus while degraded, sweeps of expired files) until Close.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validateOpen(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg: cfg, log: cfg.Logger.With("instance", cfg.InstanceID),
		clock: clock{now: time.Now}, cache: newCache(cfg.MaxSessions),
		destroys: map[string]*pendingDestroy{}, revoked: map[string]time.Time{}, flights: map[string]*flight{},
		wake: make(chan struct{}, 1),
	}
	switch cfg.Persistence {
	case PersistenceMemory:
		s.mode.Store(int32(ModeLocal))
		return s, nil
	case PersistenceFile:
		s.mode.Store(int32(ModeLocal))
		f, err := openFiles(cfg.Dir, cfg.Cluster)
		if err != nil {
			return nil, err
		}
		s.files = f
		s.sweepFiles()
	case PersistenceHA:
		awsCfg := cfg.AWS
		if awsCfg == nil {
			c, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				return nil, fmt.Errorf("client: AWS configuration: %v", err)
			}
			awsCfg = &c
		}
		emulated := awsCfg.BaseEndpoint != nil || os.Getenv("AWS_ENDPOINT_URL_DYNAMODB") != ""
		db := dynamodb.NewFromConfig(*awsCfg, func(o *dynamodb.Options) {
			// DynamoDB Local's error answers carry no CRC32 header; only check on AWS.
			o.DisableValidateResponseChecksum = emulated
		})
		bus := sns.NewFromConfig(*awsCfg)
		s.bus, s.index = bus, db
		s.table = &record.Table{DB: db, Name: cfg.Table}
		if cfg.ReadPath == ReadBus || cfg.NoticeScope != NoticeOff {
			ib, err := s.openInbox(ctx, sqs.NewFromConfig(*awsCfg), bus)
			if err != nil {
				return nil, err
			}
			s.inbox = ib
		}
	}
	loopCtx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.loop(loopCtx)
	return s, nil
}

// Mode reports the store's current mode.
func (s *Store) Mode() Mode { return Mode(s.mode.Load()) }

// enter admits a call unless the store is closed; leave ends it. Close waits for the
// calls admitted before it, so that none records a change after its final flush.
func (s *Store) enter() bool {
	s.ops.RLock()
	if s.closed.Load() {
		s.ops.RUnlock()
		return false
	}
	return true
}

func (s *Store) leave() { s.ops.RUnlock() }

// Close sends what is still pending (time-based changes, and what changed while
// degraded if the bus is back) and releases the store; later calls fail with ErrClosed.
// If something could not be sent, the error wraps ErrUnavailable and says how much:
// with persistence memory or ha those changes are lost with the process. Calling Close
// again returns nil.
func (s *Store) Close() error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.ops.Lock() // waits for the calls under way
		s.ops.Unlock()
		if s.stop != nil {
			s.stop()
			<-s.done
		}
		err = s.finalFlush()
		if s.inbox != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if ierr := s.inbox.close(ctx); ierr != nil {
				s.log.Warn("could not remove this instance's queue; the next Open with this instance id takes it over", "reason", ierr.Error())
			}
			cancel()
		}
	})
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// newID makes a session id: 256 random bits, base64url without padding.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether id has the form newID makes; anything else is never stored.
func validID(id string) bool {
	if len(id) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(b) == 32
}

// seconds keeps a limit in whole seconds, as the wire and the table do: rounded down,
// at least one.
func seconds(d time.Duration) time.Duration { return max(d.Truncate(time.Second), time.Second) }

// Create makes a new session. With persistence file or ha and web-method frequency it is
// stored before Create returns; with time-based frequency, at the next flush.
func (s *Store) Create(ctx context.Context, n NewSession) (*Session, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.writes.Add(1)
	sess, err := newSession(newID(), s.cfg.Cluster, n, s.cfg.MaxSessionLife)
	if err != nil {
		return nil, err
	}
	if err := s.storeWhole(ctx, sess, events.OpCreate); err != nil {
		return nil, err
	}
	if err := s.enforceCap(ctx, sess.principal, sess.key); err != nil {
		s.log.Warn("could not end the user's oldest sessions beyond MaxSessionsPerPrincipal", "reason", err.Error())
	}
	return sess.clone(), nil
}

// newSession checks n and makes the session it describes, created now; maxLife is the
// store's MaxSessionLife.
func newSession(id, cluster string, n NewSession, maxLife time.Duration) (*Session, error) {
	if n.Principal == "" {
		return nil, fmt.Errorf("%w: Principal is required", ErrInvalid)
	}
	if n.MaxIdle < 0 || n.MaxLife < 0 {
		return nil, fmt.Errorf("%w: MaxIdle and MaxLife must not be negative", ErrInvalid)
	}
	if n.MaxLife > maxLife {
		return nil, fmt.Errorf("%w: MaxLife %s is over the store's MaxSessionLife (%s, SESSIONHA_MAX_SESSION_LIFE)", ErrInvalid, n.MaxLife, maxLife)
	}
	if n.MaxIdle == 0 {
		n.MaxIdle = 30 * time.Minute
	}
	if n.MaxLife == 0 {
		n.MaxLife = 8 * time.Hour
	}
	now := time.Now()
	sess := &Session{
		id: id, key: record.Key(cluster, events.HashID(id)),
		principal: n.Principal, group: n.Group, created: now, lastAccess: now,
		maxIdle: seconds(n.MaxIdle), maxLife: seconds(n.MaxLife), attrs: cloneAttrs(n.Attrs),
	}
	if err := checkSession(sess.principal, sess.group, sess.attrs); err != nil {
		return nil, err
	}
	return sess, nil
}

// publish stores sess whole under its id, replacing whatever this instance holds, as a
// create or a save (kind), and sends it as the configured frequency says. It is the way in
// for adapters that make their own ids (scs_support.go).
func (s *Store) publish(ctx context.Context, sess *Session, kind events.OpKind) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.writes.Add(1)
	sess.maxIdle, sess.maxLife = seconds(sess.maxIdle), seconds(sess.maxLife)
	if err := checkSession(sess.principal, sess.group, sess.attrs); err != nil {
		return err
	}
	return s.storeWhole(ctx, sess, kind)
}

// storeWhole makes sess (a copy is kept) this instance's session and persists it whole.
func (s *Store) storeWhole(ctx context.Context, sess *Session, kind events.OpKind) error {
	own := sess.clone()
	own.id, own.changed = "", nil // the cache never holds the id in clear
	s.mu.Lock()
	if s.revokedLocked(own.key, time.Now()) {
		s.mu.Unlock()
		return ErrNotFound
	}
	e := s.cache.get(own.key)
	if e == nil {
		e = &entry{key: own.key}
	}
	e.sess = own
	var op *outOp
	if s.bus != nil || s.files != nil {
		e.seq++
		if kind == events.OpCreate {
			e.create = true
		}
		e.full = e.seq
		op = s.sendNowLocked(e, false)
	}
	s.cache.add(e) // pinned by now if it has something to send, so never evicted unsent
	s.mu.Unlock()
	if op == nil {
		return nil
	}
	err := s.sendNow(ctx, op)
	if err != nil && kind == events.OpCreate {
		// The caller never learns the id, so nobody could use the session.
		s.mu.Lock()
		s.cache.drop(own.key)
		s.mu.Unlock()
	}
	return err
}

// Save stores the session's changes as the configured scope and frequency say:
//
//   - scope session sends the whole session every time; modified-session sends it whole
//     only if it changed or its stored last access is over MaxIdle/2 old; modified-attribute
//     sends only the attributes set or deleted on this copy (others' changes to other
//     attributes are kept), or just the last access under the same rule;
//   - web-method frequency returns once the change is published (ha) or written (file);
//     time-based returns at once, and the change goes with the next flush, together with
//     every other change to the session since the last one; but with ha, a change that
//     the next flush would send after the session's deadline (the table takes nothing of
//     a session once its deadline has passed) is published before Save returns;
//   - modified-attribute sends the whole session instead of a delta once the deltas of
//     this instance since its last whole session would leave too many attribute
//     registers in the table (see registerBudget in send.go).
//
// In degraded mode Save returns nil once the change is held in memory: it is sent when
// the bus is back (see Mode). If ctx ends while publishing, the error wraps ctx's and the
// change is still sent later. An expired or destroyed session fails with ErrNotFound.
func (s *Store) Save(ctx context.Context, sess *Session) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.writes.Add(1)
	if sess == nil || !validID(sess.id) || sess.key != record.Key(s.cfg.Cluster, events.HashID(sess.id)) {
		return fmt.Errorf("%w: not a session of this store", ErrInvalid)
	}
	now := time.Now()
	s.mu.Lock()
	// Snapshots are taken in the order changes are recorded and ops built, so that of
	// two Saves of one copy racing, the one recorded last carries the latest state.
	snap := sess.snapshot()
	if s.revokedLocked(sess.key, now) {
		s.mu.Unlock()
		return ErrNotFound
	}
	e := s.cache.get(sess.key)
	fresh := e == nil
	if fresh {
		// Evicted, or never held here: the copy is all this instance knows.
		own := sess.clone()
		own.id, own.changed, own.attrs = "", nil, snap.attrs
		e = &entry{key: sess.key, sess: own}
	}
	if !now.Before(e.sess.expiresAt()) {
		if !fresh && !e.pinned() {
			s.cache.drop(e.key)
		}
		s.mu.Unlock()
		return ErrNotFound
	}
	due := now.Sub(e.sess.lastAccess) >= e.sess.maxIdle/2
	var (
		attrs   map[string][]byte // the new attributes; nil: unchanged
		changed bool              // something to record
	)
	switch s.cfg.Scope {
	case ScopeSession:
		attrs, changed = snap.attrs, true
	case ScopeModifiedSession:
		if len(snap.changed) > 0 || due {
			attrs, changed = snap.attrs, true
		}
	case ScopeModifiedAttribute:
		if len(snap.changed) > 0 {
			attrs = cloneAttrs(e.sess.attrs)
			for _, name := range snap.changed {
				if v, ok := snap.attrs[name]; ok {
					attrs[name] = v
				} else {
					delete(attrs, name)
				}
			}
		}
		changed = len(snap.changed) > 0 || due
	}
	if !changed {
		s.mu.Unlock()
		return nil
	}
	if attrs != nil {
		if err := checkSession(e.sess.principal, e.sess.group, attrs); err != nil {
			s.mu.Unlock()
			return err
		}
		e.sess.attrs = attrs
	}
	// The table takes no op of a session once its deadline has passed, even one made
	// before: a time-based change that the next flush would send too late goes at once.
	urgent := s.bus != nil && e.sess.expiresAt().Sub(now) < s.cfg.FlushInterval+s.cfg.PublishTimeout
	e.sess.lastAccess = now
	if now.Before(e.sess.created) {
		e.sess.lastAccess = e.sess.created // created by another instance, whose clock is ahead
	}
	var op *outOp
	if s.bus != nil || s.files != nil {
		e.seq++
		switch {
		case s.cfg.Scope != ScopeModifiedAttribute || s.Mode() == ModeDegraded:
			// Degraded: recovery sends whole sessions, whatever the scope, so that
			// what changed meanwhile is complete in the table once it is back.
			e.full = e.seq
		case len(snap.changed) == 0:
			e.touch = e.seq
		default:
			if e.changed == nil {
				e.changed = map[string]uint64{}
			}
			for _, name := range snap.changed {
				e.changed[name] = e.seq
			}
		}
		op = s.sendNowLocked(e, urgent)
	}
	s.cache.add(e)
	s.mu.Unlock()
	sess.saved(snap.gen, now)
	if op == nil {
		return nil
	}
	return s.sendNow(ctx, op)
}

// Load returns the session with the given id. With persistence ha it is the newer of this
// instance's copy (so an instance reads its own writes before they are applied) and the
// table's strongly consistent one; if the table cannot be read, this instance's copy if it
// has one. It fails with ErrNotFound for an id that is unknown, expired or destroyed, and
// for one whose deadline has passed in the table (the table takes no change of it any
// more) even if this instance's copy, whose changes all went out, is younger.
func (s *Store) Load(ctx context.Context, id string) (*Session, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	s.stats.requests.Add(1)
	s.stats.reads.Add(1)
	if !validID(id) {
		return nil, ErrNotFound
	}
	hashed := events.HashID(id)
	key := record.Key(s.cfg.Cluster, hashed)
	now := time.Now()
	s.mu.Lock()
	if s.revokedLocked(key, now) {
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	var (
		mine    *Session
		ver     string
		pending bool
	)
	if e := s.cache.use(key); e != nil {
		mine, ver, pending = e.sess.clone(), e.ver, e.pinned()
		if !now.Before(mine.expiresAt()) {
			if !pending {
				s.cache.drop(key)
			}
			mine = nil
		}
	}
	s.mu.Unlock()
	if mine != nil {
		s.stats.cacheHits.Add(1)
		mine.id = id
	}
	switch {
	case s.table != nil && s.cfg.ReadPath == ReadBus:
		return s.loadBus(ctx, id, key, hashed, mine, ver, pending, now)
	case s.table != nil:
		return s.loadTable(ctx, id, key, mine, ver, pending, now)
	case s.files != nil && mine == nil:
		return s.loadFile(id, hashed, key, now)
	case mine == nil:
		return nil, ErrNotFound
	}
	return mine, nil
}

// loadTable reads the table and returns the newer copy.
func (s *Store) loadTable(ctx context.Context, id, key string, mine *Session, ver string, pending bool, now time.Time) (*Session, error) {
	it, err := s.table.Get(ctx, key)
	switch {
	case errors.Is(err, record.ErrCorrupt):
		return nil, fmt.Errorf("client: load: %w", err)
	case err != nil && mine != nil && ctx.Err() == nil:
		return mine, nil // the table is out of reach: keep serving what this instance has
	case err != nil:
		return nil, fmt.Errorf("%w: read session: %v", ErrUnavailable, err)
	}
	return s.resolve(id, key, it, mine, ver, pending, now)
}

// loadBus asks over the bus and returns the newer copy. Without an answer within MaxWait
// it serves this instance's copy if it has one, else fails with ErrTimeout.
func (s *Store) loadBus(ctx context.Context, id, key, hashed string, mine *Session, ver string, pending bool, now time.Time) (*Session, error) {
	if pending && mine != nil {
		return mine, nil // this instance's unsent or unapplied changes are the newest
	}
	it, err := s.ask(ctx, key, hashed)
	if err != nil {
		if mine != nil && ctx.Err() == nil {
			return mine, nil
		}
		return nil, err
	}
	return s.resolve(id, key, it, mine, ver, pending, now)
}

// resolve returns the newer of this instance's copy (mine, at version ver) and the stored
// item it (nil if none), and keeps it as this instance's.
func (s *Store) resolve(id, key string, it *record.Item, mine *Session, ver string, pending bool, now time.Time) (*Session, error) {
	if it != nil && it.State == record.Destroyed {
		// Logged out elsewhere: final, whatever this instance still holds or meant to send.
		s.revoke(key)
		return nil, ErrNotFound
	}
	if it != nil && !pending && !now.Before(it.Deadline()) {
		// Over in the table: the functions take no op of it any more, so a copy that this
		// instance's clock still finds alive (its last save came too late, or the clock is
		// behind) must not be served either. A copy with changes not yet sent or applied
		// is served: they may still come in time.
		s.mu.Lock()
		if e := s.cache.get(key); e != nil && !e.pinned() {
			s.cache.drop(key)
		}
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	// This instance's changes not yet applied (or not yet sent) are newer than the table.
	// An equal version is no proof that the table has them all: deltas apply in any
	// order, so the item may carry this instance's last op but not an earlier one. Until
	// someone writes a newer version, this instance's copy is the complete one.
	if it == nil || pending || (mine != nil && ver >= it.Version) {
		if mine == nil {
			return nil, ErrNotFound
		}
		return mine, nil
	}
	if !it.Readable(now) {
		s.mu.Lock()
		if e := s.cache.get(key); e != nil && !e.pinned() {
			s.cache.drop(key)
		}
		s.mu.Unlock()
		return nil, ErrNotFound
	}
	sess := fromItem(it)
	s.clock.observe(it.Version)
	s.mu.Lock()
	e := s.cache.get(key)
	switch {
	case e == nil:
		s.cache.add(&entry{key: key, sess: sess.clone(), ver: it.Version, regBase: registersOf(it)})
	case !e.pinned() && e.ver < it.Version:
		e.sess, e.ver, e.regBase = sess.clone(), it.Version, registersOf(it)
	}
	s.mu.Unlock()
	sess.id = id
	return sess, nil
}

// registersOf is about the bytes the item's attribute registers take.
func registersOf(it *record.Item) int {
	n := 0
	for _, regs := range []map[string]string{it.AttrVers, it.Removed} {
		for name, ver := range regs {
			n += len(name) + len(ver) + 8
		}
	}
	return n
}

func fromItem(it *record.Item) *Session {
	return &Session{
		key: it.Key, principal: it.Principal, group: it.Group,
		created: time.UnixMilli(it.Created), lastAccess: time.UnixMilli(it.LastAccess),
		maxIdle: time.Duration(it.MaxIdle) * time.Second, maxLife: time.Duration(it.MaxLife) * time.Second,
		attrs: cloneAttrs(it.Attrs),
	}
}

// revoke makes this instance refuse key at once and forget its copy: the session was
// destroyed here or elsewhere. It is remembered for PurgeDelay; the table's tombstone
// outlives every op of the session anyway.
func (s *Store) revoke(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokeLocked(key)
}

func (s *Store) revokeLocked(key string) {
	s.revoked[key] = time.Now().Add(s.cfg.PurgeDelay)
	s.cache.drop(key)
}

// Destroy ends the session everywhere (logout): it publishes a tombstone (ha) or removes
// the file (file), and this instance refuses the id at once. The tombstone lasts until the
// session's latest possible deadline, as this instance's copy or the table tell it, or
// MaxSessionLife from now when neither knows the session (its create may still be on its
// way), so that no late op of the session brings it back. A destroy is sent at once
// whatever the frequency; while degraded, it is kept and sent first when the bus is back.
// With notices on, every instance in scope drops its copy too. An explicit logout of a
// session in an SSO group ends every session of that group (its user's); a timeout ends
// only its own. Destroying an unknown id is not an error.
func (s *Store) Destroy(ctx context.Context, id string) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	if !validID(id) {
		s.stats.requests.Add(1)
		s.stats.deletes.Add(1)
		return nil
	}
	hashed := events.HashID(id)
	k := s.knownOf(ctx, record.Key(s.cfg.Cluster, hashed))
	if err := s.destroy(ctx, hashed, "logout", k.until); err != nil {
		return err
	}
	if k.group == "" {
		return nil
	}
	return s.destroyWhere(ctx, k.principal, "sso-group", func(e record.Entry) bool { return e.Group == k.group })
}

// known is what this instance can tell of a session it is about to destroy.
type known struct {
	principal, group string
	until            int64 // created + max life (unix ms); 0 if unknown
}

// knownOf returns what memory or the table tell of key; zero if nothing.
func (s *Store) knownOf(ctx context.Context, key string) known {
	var k known
	s.mu.Lock()
	if e := s.cache.get(key); e != nil {
		k = known{principal: e.sess.principal, group: e.sess.group, until: e.sess.created.Add(e.sess.maxLife).UnixMilli()}
	}
	s.mu.Unlock()
	if k.principal != "" || s.table == nil {
		return k
	}
	if it, err := s.table.Get(ctx, key); err == nil && it != nil && it.State != record.Destroyed {
		return known{principal: it.Principal, group: it.Group, until: it.Created + it.MaxLife*1000}
	}
	return known{}
}

// destroy ends the session whose hashed id is hashed: see Destroy. until is its latest
// possible deadline (unix ms), which its tombstone must outlive; 0 if this instance
// cannot tell, and then now + MaxSessionLife bounds it.
func (s *Store) destroy(ctx context.Context, hashed, reason string, until int64) error {
	s.stats.requests.Add(1)
	s.stats.deletes.Add(1)
	key := record.Key(s.cfg.Cluster, hashed)
	s.mu.Lock()
	s.revokeLocked(key)
	var op *outOp
	if s.bus != nil {
		if until <= 0 {
			until = time.Now().Add(s.cfg.MaxSessionLife).UnixMilli()
		}
		d, err := s.destroyLocked(key, hashed, reason, until)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		if s.Mode() == ModeFailover {
			d.inflight = true
			op = &outOp{key: key, kind: events.OpDestroy, body: d.body, d: d}
		}
	}
	s.mu.Unlock()
	if s.files != nil {
		if err := s.files.remove(hashed); err != nil {
			return fmt.Errorf("%w: remove session file: %v", ErrUnavailable, err)
		}
		return nil
	}
	if op == nil {
		return nil
	}
	if err := s.sendNow(ctx, op); err != nil {
		return err
	}
	s.notify(ctx, hashed, reason)
	return nil
}

// notify publishes a destroy notice, so that the instances in scope drop their copy at
// once. It is a fast path only: the tombstone is the guarantee, so a failure is logged.
func (s *Store) notify(ctx context.Context, hashed, reason string) {
	if s.cfg.NoticeScope == NoticeOff || s.Mode() != ModeFailover {
		return
	}
	body, err := events.EncodeNotice(&events.Notice{
		V: events.SchemaVersion, Cluster: s.cfg.Cluster, ID: hashed, Site: s.cfg.Site,
		Writer: s.cfg.InstanceID, At: time.Now().UnixMilli(), Reason: reason,
	})
	if err != nil {
		s.log.Error("destroy notice not encodable", "reason", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PublishTimeout)
	defer cancel()
	if _, err := s.bus.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(s.cfg.NoticeTopicARN), Message: aws.String(string(body)),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			"site": {DataType: aws.String("String"), StringValue: aws.String(s.cfg.Site)},
		},
	}); err != nil {
		s.log.Warn("destroy notice not published; other instances learn it from the table", "reason", err.Error())
	}
}

// destroyLocked queues the tombstone of key until it is sent.
func (s *Store) destroyLocked(key, hashed, reason string, until int64) (*pendingDestroy, error) {
	if d, ok := s.destroys[key]; ok {
		return d, nil
	}
	body, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpDestroy, Cluster: s.cfg.Cluster, ID: hashed,
		Version: s.clock.next(), Writer: s.cfg.InstanceID, Site: s.cfg.Site, At: time.Now().UnixMilli(),
		Reason: reason, Until: until,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	d := &pendingDestroy{body: body}
	s.destroys[key] = d
	return d, nil
}

// isRevoked reports whether this instance destroyed key.
func (s *Store) isRevoked(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revokedLocked(key, time.Now())
}

// revokedLocked is isRevoked with mu held; old entries are swept as it goes.
func (s *Store) revokedLocked(key string, now time.Time) bool {
	if now.Sub(s.swept) > time.Minute {
		s.swept = now
		for k, until := range s.revoked {
			if _, unsent := s.destroys[k]; now.After(until) && !unsent {
				delete(s.revoked, k)
			}
		}
	}
	_, ok := s.revoked[key]
	return ok
}

// checkSession checks what the wire would refuse, so that a change is refused when it is
// made, not when a later flush cannot send it.
func checkSession(principal, group string, attrs map[string][]byte) error {
	if len(attrs) > events.MaxAttributes {
		return fmt.Errorf("%w: %d attributes, at most %d allowed", ErrInvalid, len(attrs), events.MaxAttributes)
	}
	// An upper bound of the encoded size: JSON may escape a byte of text into six, and
	// base64 makes four bytes of three. Only a session that might be too large is encoded
	// whole to measure it; otherwise only its small fields are, to check them.
	bound := 1024 + 6*(len(principal)+len(group))
	for name, v := range attrs {
		if name == "" || len(name) > events.MaxAttributeNameBytes || !utf8.ValidString(name) {
			return fmt.Errorf("%w: attribute name %.40q: want 1-%d bytes of UTF-8", ErrInvalid, name, events.MaxAttributeNameBytes)
		}
		bound += 6*len(name) + 4*(len(v)+2)/3 + 8
	}
	var measured map[string][]byte
	if bound > events.MaxMessageBytes {
		measured = attrs
	}
	_, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpSave, Cluster: "c", ID: events.HashID(""), Version: "0000000000000001",
		Writer: "w", Site: "s", At: 1, Session: &events.Session{
			Principal: principal, Group: group, Created: 1, LastAccess: 1, MaxIdle: 1, MaxLife: 1, Attrs: measured,
		},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}
