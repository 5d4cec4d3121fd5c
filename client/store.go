package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
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
	cfg     Config
	log     *slog.Logger
	clock   clock
	region  string         // ha: the AWS region of the store's clients, its site's
	bus     publisher      // nil unless ha
	table   *record.Table  // nil unless ha
	files   *fileStore     // nil unless file
	index   record.Querier // ha: the per-user index
	inbox   *inbox         // ha with ReadPath bus or notices: this instance's queue
	journal *journal       // ha: what degraded mode acknowledged, on local disk
	// lifecycle holds OnLifecycle's listeners and the events on their way (lifecycle.go).
	lifecycle lifecycleHub

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
	if err := cfg.resolveKeyring(ctx); err != nil { // sealconfig.go
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
		db := dynamodb.NewFromConfig(*awsCfg)
		bus := sns.NewFromConfig(*awsCfg)
		s.bus, s.index, s.region = bus, db, awsCfg.Region
		// Subscriptions and checks of topics in other regions go to those regions.
		topics := newRegionalSNS(*awsCfg, bus)
		s.table = &record.Table{DB: db, Name: cfg.Table}
		if err := claimInstance(cfg.InstanceID); err != nil { // startup.go
			return nil, err
		}
		if err := s.checkResources(ctx, db, topics, awsCfg.Region); err != nil {
			releaseInstance(cfg.InstanceID)
			return nil, err
		}
		replayed, err := s.openJournal()
		if err != nil {
			releaseInstance(cfg.InstanceID)
			return nil, err
		}
		if cfg.ReadPath == ReadBus || cfg.NoticeScope != NoticeOff || cfg.LifecycleTopicARN != "" {
			ib, err := s.openInbox(ctx, sqs.NewFromConfig(*awsCfg), topics)
			if err != nil {
				s.journal.close(false)
				releaseInstance(cfg.InstanceID)
				return nil, err
			}
			s.inbox = ib
		}
		switch {
		case replayed > 0:
			s.startDegraded(replayed)
		case s.inbox != nil && s.inbox.busDown():
			s.degrade(errors.New("cannot subscribe this instance's queue: SNS is out of reach"))
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
// with persistence ha they stay in the journal, and the next Open of this instance
// sends them; with memory they are lost with the process. With everything sent, Close
// removes the journal. Calling Close again returns nil.
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
			s.inbox.close() // the queue stays for the next Open of this instance id (inbox.go)
		}
		if s.cfg.Persistence == PersistenceHA {
			releaseInstance(s.cfg.InstanceID)
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

// Destroy ends the session everywhere (logout): it publishes a destroy (ha: the functions
// write the session's logout item, which no later write of any region undoes, then its
// tombstone) or removes the file (file), and this instance refuses the id at once. Both
// last until the session's latest possible deadline, as this instance's copy or the table
// tell it, or MaxSessionLife from now when neither knows the session (its create may
// still be on its way), so that no late op of the session brings it back. A destroy is sent at once
// whatever the frequency; while degraded, it is journaled to local disk before Destroy
// returns and sent first when the bus is back (by the next Open of this instance after a
// crash), its notice with it; with ReadPath direct its logout item is also written to
// the table at once, so that the instances reading the table refuse the session meanwhile.
// With notices on, every instance in scope drops its copy too. An explicit logout of a
// session in an SSO group ends every session of that group (its user's); a timeout ends
// only its own, and so does Renew, which replaces an id. Destroying an unknown id is not
// an error.
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
	e := s.cache.get(key)
	if e != nil {
		k = known{principal: e.sess.principal, group: e.sess.group, until: e.sess.created.Add(e.sess.maxLife).UnixMilli()}
	}
	s.mu.Unlock()
	if e != nil || s.table == nil {
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
	if until <= 0 {
		until = time.Now().Add(s.cfg.MaxSessionLife).UnixMilli()
	}
	s.mu.Lock()
	s.revokeLocked(key)
	var (
		op *outOp
		d  *pendingDestroy
	)
	if s.bus != nil {
		var err error
		if d, err = s.destroyLocked(key, hashed, reason, until); err != nil {
			s.mu.Unlock()
			return err
		}
		if s.Mode() == ModeFailover && !d.inflight && !d.sent {
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
	if d == nil {
		return nil
	}
	if op != nil {
		if err := s.sendNow(ctx, op); err != nil {
			return err // the caller gave up; the destroy is kept and sent later
		}
	}
	// Sent: publish the notice. Not sent (the bus is down): it is journaled before
	// Destroy returns, and written to the table at once where this instance may.
	s.mu.Lock()
	owed := s.destroys[key] == d
	unsent := owed && !d.sent
	var keep []jrec
	if owed && s.Mode() == ModeDegraded {
		keep = s.keepDestroyLocked(d)
	}
	s.mu.Unlock()
	switch {
	case !owed:
		return nil
	case keep == nil:
		s.sendNotices(ctx)
		return nil
	}
	kerr := s.keep(keep...)
	if unsent && s.tombstone(ctx, key, d) && kerr != nil {
		s.log.Warn("a logout made while the bus is down could not be journaled; it is in the table, and its notice goes out when the bus is back unless this process stops first", "reason", kerr.Error())
		return nil // the table's tombstone makes it final
	}
	return kerr
}

// destroyLocked queues the tombstone of key until it is sent.
func (s *Store) destroyLocked(key, hashed, reason string, until int64) (*pendingDestroy, error) {
	if d, ok := s.destroys[key]; ok {
		return d, nil
	}
	hlc := s.clock.next()
	body, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpDestroy, Cluster: s.cfg.Cluster, ID: hashed,
		Version: hlc, Writer: s.cfg.InstanceID, Site: s.cfg.Site, At: time.Now().UnixMilli(),
		Reason: reason, Until: until,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	d := &pendingDestroy{body: body, hashed: hashed, reason: reason, ver: record.Version(hlc, s.cfg.InstanceID), until: until,
		notice: s.cfg.NoticeScope != NoticeOff}
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
