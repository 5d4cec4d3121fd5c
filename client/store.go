package client

import (
	"container/list"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

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

// publisher is the SNS call the store makes.
type publisher interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// Store keeps sessions for one auth server instance. It is safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	clock clock
	bus   publisher     // nil unless ha
	table *record.Table // nil unless ha

	mu      sync.Mutex
	cache   map[string]*list.Element // key -> element holding *Session
	lru     *list.List               // front: most recently used
	revoked map[string]time.Time     // keys destroyed here -> when to forget them
	swept   time.Time                // last sweep of revoked

	mode   atomic.Int32
	closed atomic.Bool
}

// Open validates cfg and returns a Store. With persistence ha it builds SNS and DynamoDB
// clients from cfg.AWS or the SDK's default chain.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validateOpen(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg: cfg, log: cfg.Logger.With("instance", cfg.InstanceID),
		clock: clock{now: time.Now}, cache: map[string]*list.Element{}, lru: list.New(),
		revoked: map[string]time.Time{},
	}
	if cfg.Persistence != PersistenceHA {
		s.mode.Store(int32(ModeLocal))
		return s, nil
	}
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
	s.bus = sns.NewFromConfig(*awsCfg)
	s.table = &record.Table{DB: db, Name: cfg.Table}
	return s, nil
}

// Mode reports the store's current mode.
func (s *Store) Mode() Mode { return Mode(s.mode.Load()) }

// Close releases the store. Later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
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

// Create makes a new session and, with persistence ha, publishes it before returning.
func (s *Store) Create(ctx context.Context, n NewSession) (*Session, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if n.Principal == "" {
		return nil, fmt.Errorf("%w: Principal is required", ErrInvalid)
	}
	if n.MaxIdle < 0 || n.MaxLife < 0 {
		return nil, fmt.Errorf("%w: MaxIdle and MaxLife must not be negative", ErrInvalid)
	}
	if n.MaxIdle == 0 {
		n.MaxIdle = 30 * time.Minute
	}
	if n.MaxLife == 0 {
		n.MaxLife = 8 * time.Hour
	}
	now := time.Now()
	id := newID()
	sess := &Session{
		id: id, key: record.Key(s.cfg.Cluster, events.HashID(id)),
		principal: n.Principal, group: n.Group, created: now, lastAccess: now,
		maxIdle: n.MaxIdle, maxLife: n.MaxLife, attrs: map[string][]byte{},
	}
	for k, v := range n.Attrs {
		sess.attrs[k] = append([]byte(nil), v...)
	}
	if err := s.publish(ctx, sess, events.OpCreate); err != nil {
		return nil, err
	}
	return sess.clone(), nil
}

// Save stores the session's changes as the configured frequency and scope say. With
// web-method frequency and persistence ha, it returns once the change is published.
func (s *Store) Save(ctx context.Context, sess *Session) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if sess == nil || sess.key == "" {
		return fmt.Errorf("%w: not a session of this store", ErrInvalid)
	}
	if s.isRevoked(sess.key) {
		return ErrNotFound
	}
	now := time.Now()
	sess.mu.Lock()
	if s.cfg.Scope == ScopeModifiedSession && !sess.dirty && now.Sub(sess.lastAccess) < sess.maxIdle/2 {
		// Nothing changed and the stored idle deadline is still far: nothing to send.
		sess.mu.Unlock()
		return nil
	}
	if !now.Before(sess.expiresAt()) {
		sess.mu.Unlock()
		return ErrNotFound
	}
	sess.lastAccess = now
	sess.mu.Unlock()
	return s.publish(ctx, sess, events.OpSave)
}

// publish sends a create or save of the whole session and, once sent, caches a copy.
func (s *Store) publish(ctx context.Context, sess *Session, kind events.OpKind) error {
	version := s.clock.next()
	sess.mu.Lock()
	op := &events.SessionOp{
		V: events.SchemaVersion, Op: kind, Cluster: s.cfg.Cluster, ID: events.HashID(sess.id),
		Version: version, Writer: s.cfg.InstanceID, Site: s.cfg.Site, At: time.Now().UnixMilli(),
		Session: &events.Session{
			Principal: sess.principal, Group: sess.group,
			Created: sess.created.UnixMilli(), LastAccess: sess.lastAccess.UnixMilli(),
			MaxIdle: int64(sess.maxIdle / time.Second), MaxLife: int64(sess.maxLife / time.Second),
			Attrs: sess.attrs,
		},
	}
	body, err := events.EncodeSessionOp(op)
	sess.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if s.bus != nil {
		if err := s.send(ctx, body, kind); err != nil {
			return err
		}
	}
	sess.mu.Lock()
	sess.version, sess.dirty = version, false
	sess.mu.Unlock()
	s.remember(sess.clone())
	return nil
}

func (s *Store) send(ctx context.Context, body []byte, kind events.OpKind) error {
	_, err := s.bus.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(s.cfg.OpsTopicARN),
		Message:  aws.String(string(body)),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			"op": {DataType: aws.String("String"), StringValue: aws.String(string(kind))},
		},
	})
	if err != nil {
		s.log.Warn("publish failed", "op", string(kind), "reason", err.Error())
		return fmt.Errorf("%w: publish %s: %v", ErrUnavailable, kind, err)
	}
	return nil
}

// Load returns the session with the given id: the newer of this instance's copy and the
// table's. It fails with ErrNotFound for an id that is unknown, expired or destroyed.
func (s *Store) Load(ctx context.Context, id string) (*Session, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if !validID(id) {
		return nil, ErrNotFound
	}
	key := record.Key(s.cfg.Cluster, events.HashID(id))
	if s.isRevoked(key) {
		return nil, ErrNotFound
	}
	now := time.Now()
	mine := s.cached(key)
	if s.table == nil {
		if mine == nil || !now.Before(mine.ExpiresAt()) {
			return nil, ErrNotFound
		}
		return mine, nil
	}
	it, err := s.table.Get(ctx, key)
	if err != nil {
		if errors.Is(err, record.ErrCorrupt) {
			return nil, fmt.Errorf("client: load: %w", err)
		}
		return nil, fmt.Errorf("%w: read session: %v", ErrUnavailable, err)
	}
	if it != nil && it.State == record.Destroyed {
		s.forget(key)
		return nil, ErrNotFound
	}
	// Our own write may not be applied yet: keep whichever copy is newer.
	if it == nil || (mine != nil && record.Version(mine.version, s.cfg.InstanceID) > it.Version) {
		if mine == nil || !now.Before(mine.ExpiresAt()) {
			return nil, ErrNotFound
		}
		return mine, nil
	}
	if !it.Readable(now) {
		s.forget(key)
		return nil, ErrNotFound
	}
	sess := fromItem(id, it)
	s.clock.observe(sess.version)
	s.remember(sess.clone())
	return sess, nil
}

func fromItem(id string, it *record.Item) *Session {
	hlc := it.Version
	if i := len(hlc); i > 16 {
		hlc = hlc[:16]
	}
	return &Session{
		id: id, key: it.Key, principal: it.Principal, group: it.Group,
		created: time.UnixMilli(it.Created), lastAccess: time.UnixMilli(it.LastAccess),
		maxIdle: time.Duration(it.MaxIdle) * time.Second, maxLife: time.Duration(it.MaxLife) * time.Second,
		attrs: it.Attrs, version: hlc,
	}
}

// Destroy ends the session everywhere (logout): it publishes a tombstone, and this
// instance refuses the id at once. Destroying an unknown id is not an error.
func (s *Store) Destroy(ctx context.Context, id string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if !validID(id) {
		return nil
	}
	hashed := events.HashID(id)
	key := record.Key(s.cfg.Cluster, hashed)
	s.mu.Lock()
	s.revoked[key] = time.Now().Add(24 * time.Hour)
	s.mu.Unlock()
	s.forget(key)
	if s.bus == nil {
		return nil
	}
	op := &events.SessionOp{
		V: events.SchemaVersion, Op: events.OpDestroy, Cluster: s.cfg.Cluster, ID: hashed,
		Version: s.clock.next(), Writer: s.cfg.InstanceID, Site: s.cfg.Site, At: time.Now().UnixMilli(),
		Reason: "logout",
	}
	body, err := events.EncodeSessionOp(op)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.send(ctx, body, events.OpDestroy)
}

// cached returns a copy of this instance's session, or nil.
func (s *Store) cached(key string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cache[key]
	if !ok {
		return nil
	}
	s.lru.MoveToFront(e)
	return e.Value.(*Session).clone()
}

// remember keeps sess (a private copy) as this instance's, evicting the least recently
// used beyond MaxSessions.
func (s *Store) remember(sess *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.cache[sess.key]; ok {
		e.Value = sess
		s.lru.MoveToFront(e)
		return
	}
	s.cache[sess.key] = s.lru.PushFront(sess)
	for s.lru.Len() > s.cfg.MaxSessions {
		old := s.lru.Remove(s.lru.Back()).(*Session)
		delete(s.cache, old.key)
	}
}

func (s *Store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.cache[key]; ok {
		s.lru.Remove(e)
		delete(s.cache, key)
	}
}

// isRevoked reports whether this instance destroyed key; old entries are swept as it goes.
func (s *Store) isRevoked(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.swept) > time.Minute {
		s.swept = now
		for k, until := range s.revoked {
			if now.After(until) {
				delete(s.revoked, k)
			}
		}
	}
	_, ok := s.revoked[key]
	return ok
}
