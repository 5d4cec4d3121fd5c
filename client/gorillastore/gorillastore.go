package gorillastore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/sessions"

	"github.com/sessionha/sessionha/client"
)

// Errors of Save, for what a caller may branch on (wrapped with the details).
var (
	// ErrKey: a key of Session.Values is not a string of 1-128 bytes of UTF-8, so it
	// cannot name a session attribute. Nothing of the session was saved.
	ErrKey = errors.New("gorillastore: session keys must be strings of 1-128 bytes of UTF-8")
	// ErrValue: a value of Session.Values cannot be encoded with encoding/gob (most
	// often a type of your own inside an interface, which needs gob.Register). Nothing of
	// the session was saved.
	ErrValue = errors.New("gorillastore: a session value cannot be encoded with encoding/gob")
	// ErrCookie: the session's cookie options would make the browser refuse its cookie
	// (a __Host- name without Secure, Path "/" and no Domain; __Secure- or SameSite None
	// without Secure).
	ErrCookie = errors.New("gorillastore: the browser would refuse this session cookie")
)

// HostPrefix is put before the session name to make the cookie name, when the cookie
// qualifies for it (Secure, Path "/", no Domain): the browser then accepts the cookie
// only from this very host over https.
const HostPrefix = "__Host-"

// maxKeyBytes is the longest attribute name a session may have (events.MaxAttributeNameBytes).
const maxKeyBytes = 128

// Config configures a Store. The zero value of every field means the default named in
// its comment, and the defaults are the secure choice.
type Config struct {
	// Options are the cookie options every session starts with (each gets a copy, which
	// the handler may change before Save). Default (nil): DefaultOptions, that is Path
	// "/", Secure, HttpOnly, SameSite Lax, MaxAge 0 (a browser-session cookie).
	Options *sessions.Options
	// MaxIdle and MaxLife bound a session saved with MaxAge 0 on the server. Default 30
	// minutes and 8 hours (the client's defaults). With MaxAge > 0, MaxIdle is MaxAge and
	// MaxLife at least MaxAge.
	MaxIdle, MaxLife time.Duration
	// NoHostPrefix names the cookie exactly as the session. Default false: the cookie is
	// named HostPrefix + the session name when it qualifies for the prefix and the name
	// has no __Host- or __Secure- prefix of its own.
	NoHostPrefix bool
}

// DefaultOptions returns the secure cookie defaults: Path "/", Secure, HttpOnly,
// SameSite Lax, MaxAge 0, host-only.
func DefaultOptions() *sessions.Options {
	return &sessions.Options{Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// Store is a gorilla/sessions Store (sessions.Store) keeping sessions in a sessionha
// client.Store. It is safe for concurrent use once serving.
type Store struct {
	// Options are the cookie options new sessions start from, as in gorilla's own stores;
	// change them only before serving. The cookie's name follows them (HostPrefix).
	Options *sessions.Options

	store            *client.Store
	maxIdle, maxLife time.Duration
	noHostPrefix     bool
}

var _ sessions.Store = (*Store)(nil)

// New returns a gorilla/sessions store that keeps sessions in store. It checks cfg: a
// negative limit, a negative MaxAge in the defaults, or cookie options the browser
// would refuse are an error here rather than a login that never sticks.
func New(store *client.Store, cfg Config) (*Store, error) {
	if store == nil {
		return nil, errors.New("gorillastore: nil store")
	}
	if cfg.MaxIdle < 0 || cfg.MaxLife < 0 {
		return nil, errors.New("gorillastore: MaxIdle and MaxLife must not be negative")
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = 30 * time.Minute
	}
	if cfg.MaxLife == 0 {
		cfg.MaxLife = 8 * time.Hour
	}
	opts := DefaultOptions()
	if cfg.Options != nil {
		o := *cfg.Options
		opts = &o
	}
	if opts.MaxAge < 0 {
		return nil, errors.New("gorillastore: Options.MaxAge must not be negative (a negative MaxAge on a session logs it out)")
	}
	s := &Store{Options: opts, store: store, maxIdle: cfg.MaxIdle, maxLife: cfg.MaxLife, noHostPrefix: cfg.NoHostPrefix}
	if err := checkCookie(s.CookieName("session"), opts); err != nil {
		return nil, err
	}
	return s, nil
}

// qualifies reports whether a cookie with opts may carry the __Host- prefix.
func qualifies(o *sessions.Options) bool { return o.Secure && o.Path == "/" && o.Domain == "" }

// CookieName is the name of the cookie of the session called name: HostPrefix + name
// when the store's Options qualify for it (see Config.NoHostPrefix), else name.
func (s *Store) CookieName(name string) string {
	lower := strings.ToLower(name)
	if s.noHostPrefix || strings.HasPrefix(lower, "__host-") || strings.HasPrefix(lower, "__secure-") || !qualifies(s.Options) {
		return name
	}
	return HostPrefix + name
}

// checkCookie refuses options under which the browser would drop the cookie.
func checkCookie(name string, o *sessions.Options) error {
	lower := strings.ToLower(name)
	switch {
	case strings.HasPrefix(lower, "__host-") && !qualifies(o):
		return fmt.Errorf("%w: cookie %q: the __Host- prefix needs Secure, Path \"/\" and no Domain", ErrCookie, name)
	case strings.HasPrefix(lower, "__secure-") && !o.Secure:
		return fmt.Errorf("%w: cookie %q: the __Secure- prefix needs Secure", ErrCookie, name)
	case o.SameSite == http.SameSiteNoneMode && !o.Secure:
		return fmt.Errorf("%w: SameSite None needs Secure", ErrCookie)
	}
	if err := sessions.NewCookie(name, "x", o).Valid(); err != nil {
		return fmt.Errorf("%w: %v", ErrCookie, err)
	}
	return nil
}

// Get returns the session called name of the request, from gorilla's per-request
// registry: loaded (New) on the first call of the request, the same session after.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session called name whose id the request's cookie holds, without the
// registry. A cookie naming no session (malformed, unknown, expired, logged out) gives
// a new session (IsNew) and no error; a store that does not answer, or a stored session
// whose attributes gob cannot decode, gives a new session and the error.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	session := sessions.NewSession(s, name)
	opts := *s.Options
	session.Options = &opts
	session.IsNew = true
	c, err := r.Cookie(s.CookieName(name))
	if err != nil || c.Value == "" {
		return session, nil
	}
	sess, err := s.store.Load(r.Context(), c.Value)
	switch {
	case errors.Is(err, client.ErrNotFound):
		return session, nil
	case err != nil:
		return session, fmt.Errorf("gorillastore: load session %q: %w", name, err)
	}
	stored := attrsOf(sess)
	values, err := decode(stored)
	if err != nil {
		return session, fmt.Errorf("gorillastore: session %q: %w", name, err)
	}
	session.ID, session.Values, session.IsNew = sess.ID(), values, false
	session.Options.MaxAge = s.maxAgeOf(sess)
	s.remember(r, name, sess, stored)
	return session, nil
}

// Save stores the session and sets its cookie; call it before the response begins. With
// Options.MaxAge < 0 it destroys the session everywhere (logout) and clears the cookie.
// It returns once the change is published. A key that is not a string (ErrKey) or a
// value gob cannot encode (ErrValue) fails it before anything is stored. A session
// logged out on another instance since it was loaded stays logged out: the cookie is
// cleared and Save returns nil.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, session *sessions.Session) error {
	opts := session.Options
	if opts == nil {
		o := *s.Options
		opts = &o
		session.Options = opts
	}
	name := s.CookieName(session.Name())
	if err := checkCookie(name, opts); err != nil {
		return err
	}
	ctx := r.Context()
	if opts.MaxAge < 0 {
		if session.ID != "" {
			if err := s.store.Destroy(ctx, session.ID); err != nil {
				return fmt.Errorf("gorillastore: log out session %q: %w", session.Name(), err)
			}
		}
		s.forget(r, session.Name())
		session.ID = ""
		http.SetCookie(w, sessions.NewCookie(name, "", opts))
		return nil
	}
	attrs, err := encode(session.Values)
	if err != nil {
		return err
	}
	idle, life := s.limits(opts.MaxAge)
	var saved *client.Session
	if session.ID == "" {
		saved, err = s.store.SaveAs(ctx, newID(), client.NewSession{MaxIdle: idle, MaxLife: life, Attrs: attrs})
	} else {
		saved, err = s.saveLoaded(ctx, r, session, attrs, idle, life)
		if errors.Is(err, client.ErrNotFound) {
			// Logged out (or expired) elsewhere since this request loaded it.
			s.forget(r, session.Name())
			session.ID, session.IsNew = "", true
			gone := *opts
			gone.MaxAge = -1
			http.SetCookie(w, sessions.NewCookie(name, "", &gone))
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("gorillastore: save session %q: %w", session.Name(), err)
	}
	session.ID, session.IsNew = saved.ID(), false
	s.remember(r, session.Name(), saved, attrs)
	http.SetCookie(w, sessions.NewCookie(name, saved.ID(), opts))
	return nil
}

// saveLoaded applies the request's changes (attrs against what the request loaded) to
// the stored session and saves it; with new limits it stores it again under its id.
func (s *Store) saveLoaded(ctx context.Context, r *http.Request, session *sessions.Session, attrs map[string][]byte, idle, life time.Duration) (*client.Session, error) {
	cur, before := s.loaded(r, session.Name(), session.ID)
	if cur == nil {
		// Not loaded through this store in this request: replace what is stored.
		var err error
		if cur, err = s.store.Load(ctx, session.ID); err != nil {
			return nil, err
		}
		before = attrsOf(cur)
	}
	for k, v := range attrs {
		if old, ok := before[k]; !ok || !bytes.Equal(old, v) {
			cur.Set(k, v)
		}
	}
	for k := range before {
		if _, ok := attrs[k]; !ok {
			cur.Delete(k)
		}
	}
	if cur.MaxIdle() != seconds(idle) || cur.MaxLife() != seconds(life) {
		// MaxAge changed ("remember me" at login): the limits are the session's, so it is
		// stored again, same id, counted as created now.
		return s.store.SaveAs(ctx, session.ID, client.NewSession{MaxIdle: idle, MaxLife: life, Attrs: attrsOf(cur)})
	}
	if err := s.store.Save(ctx, cur); err != nil {
		return nil, err
	}
	return cur, nil
}

// limits are the session limits for a cookie MaxAge: see the package doc.
func (s *Store) limits(maxAge int) (idle, life time.Duration) {
	if maxAge <= 0 {
		return s.maxIdle, s.maxLife
	}
	a := time.Duration(maxAge) * time.Second
	return a, max(s.maxLife, a)
}

// maxAgeOf is the MaxAge a stored session was saved with, told by its limits.
func (s *Store) maxAgeOf(sess *client.Session) int {
	matches := func(maxAge int) bool {
		idle, life := s.limits(maxAge)
		return sess.MaxIdle() == seconds(idle) && sess.MaxLife() == seconds(life)
	}
	switch {
	case matches(s.Options.MaxAge):
		return s.Options.MaxAge
	case matches(0):
		return 0
	}
	return int(sess.MaxIdle() / time.Second)
}

// seconds is a limit as the store keeps it: whole seconds, at least one.
func seconds(d time.Duration) time.Duration { return max(d.Truncate(time.Second), time.Second) }

// newID makes a session id as the client does: 256 random bits, base64url.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// box carries one value through gob: a value inside an interface is sent with its
// type's name, so it decodes as the type it was (a nil value too).
type box struct{ V interface{} }

// encode turns Values into attributes: one per key, its value gob-encoded.
func encode(values map[interface{}]interface{}) (map[string][]byte, error) {
	attrs := make(map[string][]byte, len(values))
	for k, v := range values {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: got a key of type %T", ErrKey, k)
		}
		if name == "" || len(name) > maxKeyBytes || !utf8.ValidString(name) {
			return nil, fmt.Errorf("%w: key %.40q", ErrKey, name)
		}
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(box{v}); err != nil {
			return nil, fmt.Errorf("%w: key %q holds a %T: %v", ErrValue, name, v, err)
		}
		attrs[name] = buf.Bytes()
	}
	return attrs, nil
}

// decode turns stored attributes back into Values.
func decode(attrs map[string][]byte) (map[interface{}]interface{}, error) {
	values := make(map[interface{}]interface{}, len(attrs))
	for name, b := range attrs {
		var x box
		if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&x); err != nil {
			return nil, fmt.Errorf("attribute %q is not a value gorillastore stored (%v): was the session made by another adapter, or is its type not gob.Register-ed here?", name, err)
		}
		values[name] = x.V
	}
	return values, nil
}

func attrsOf(sess *client.Session) map[string][]byte {
	m := map[string][]byte{}
	for _, n := range sess.Names() {
		m[n], _ = sess.Get(n)
	}
	return m
}

// The sessions a request loaded or saved, so that Save sends only what the request
// changed. They live in the request's context, as gorilla's registry does.

type ctxKey struct{ s *Store }

type requestSessions struct {
	mu     sync.Mutex
	byName map[string]loadedSession
}

type loadedSession struct {
	sess  *client.Session   // as loaded or last saved in this request
	attrs map[string][]byte // its attributes then
}

func (s *Store) sessionsOf(r *http.Request, create bool) *requestSessions {
	if rs, ok := r.Context().Value(ctxKey{s}).(*requestSessions); ok {
		return rs
	}
	if !create {
		return nil
	}
	rs := &requestSessions{byName: map[string]loadedSession{}}
	*r = *r.WithContext(context.WithValue(r.Context(), ctxKey{s}, rs))
	return rs
}

func (s *Store) remember(r *http.Request, name string, sess *client.Session, attrs map[string][]byte) {
	rs := s.sessionsOf(r, true)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.byName[name] = loadedSession{sess: sess, attrs: attrs}
}

func (s *Store) forget(r *http.Request, name string) {
	if rs := s.sessionsOf(r, false); rs != nil {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		delete(rs.byName, name)
	}
}

// loaded returns the session called name with id that the request loaded or saved,
// and its attributes then; nil if none.
func (s *Store) loaded(r *http.Request, name, id string) (*client.Session, map[string][]byte) {
	rs := s.sessionsOf(r, false)
	if rs == nil {
		return nil, nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	l, ok := rs.byName[name]
	if !ok || l.sess.ID() != id {
		return nil, nil
	}
	return l.sess, l.attrs
}
