package httpsession

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sessionha/sessionha/client"
)

// Config configures a Manager. The zero value of every field means the default named in
// its comment, and the defaults are the secure choice.
type Config struct {
	// CookieName is the session cookie's name. Default "__Host-sessionha" when the cookie
	// qualifies for the __Host- prefix (Secure, Path "/" and no Domain: the browser then
	// refuses the cookie from a sibling domain or over plain http), else "sessionha".
	CookieName string
	// Path is the cookie's Path. Default "/".
	Path string
	// Domain is the cookie's Domain. Default "": a host-only cookie.
	Domain string
	// DisableSecure drops the cookie's Secure attribute. Default false: the cookie is
	// Secure, so browsers send it over https only. Set it only for plain-http
	// development; the name then falls back to "sessionha".
	DisableSecure bool
	// DisableHttpOnly lets scripts read the cookie. Default false: the cookie is HttpOnly.
	DisableHttpOnly bool
	// SameSite is the cookie's SameSite attribute. Default (zero) http.SameSiteLaxMode.
	// http.SameSiteDefaultMode writes no attribute; http.SameSiteNoneMode needs Secure.
	SameSite http.SameSite
	// MaxAge is the cookie's lifetime in the browser, in whole seconds. Default 0: a
	// browser-session cookie (no Max-Age, no Expires); the session's own MaxIdle and
	// MaxLife bound it on the server either way.
	MaxAge time.Duration
	// KeepAttrsOnLogin carries the attributes of the session a request already had into
	// the session Login makes (the old session is destroyed all the same). Default false:
	// a login starts from NewSession.Attrs only.
	KeepAttrsOnLogin bool
	// OnError writes the response when the session cannot be loaded or saved: the
	// request's handler is not run (load) or its response is replaced (save, which always
	// happens before the first byte of the response). Default: log the error (never the
	// session id) and answer 503 Service Unavailable for client.ErrUnavailable and
	// client.ErrTimeout, 500 Internal Server Error otherwise.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives load and save failures, never a session id or cookie value.
	// Default slog.Default().
	Logger *slog.Logger
}

// HostPrefixName and PlainName are the default cookie names, with and without the
// __Host- prefix.
const (
	HostPrefixName = "__Host-sessionha"
	PlainName      = "sessionha"
)

// Errors returned by Login, Renew and Logout.
var (
	// ErrNoMiddleware: the request did not go through Manager.Handler.
	ErrNoMiddleware = errors.New("httpsession: request not served through Manager.Handler")
	// ErrHeadersWritten: the response has begun, so the cookie can no longer be set.
	ErrHeadersWritten = errors.New("httpsession: response headers already written")
	// ErrNoSession: Renew was called on a request without a session.
	ErrNoSession = errors.New("httpsession: no session")
)

// Manager loads, saves, creates and ends sessions for HTTP handlers. It is safe for
// concurrent use.
type Manager struct {
	store    *client.Store
	cfg      Config
	log      *slog.Logger
	secure   bool
	httpOnly bool
}

// New returns a Manager that keeps sessions in store. It checks cfg: a cookie name the
// browser would refuse (a __Host- name without Secure, Path "/" and no Domain, a
// __Secure- name without Secure, SameSite None without Secure) is an error here rather
// than a login that silently never sticks.
func New(store *client.Store, cfg Config) (*Manager, error) {
	if store == nil {
		return nil, errors.New("httpsession: nil store")
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.SameSite == 0 {
		cfg.SameSite = http.SameSiteLaxMode
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{store: store, cfg: cfg, log: cfg.Logger, secure: !cfg.DisableSecure, httpOnly: !cfg.DisableHttpOnly}
	hostOK := m.secure && cfg.Path == "/" && cfg.Domain == ""
	if cfg.CookieName == "" {
		m.cfg.CookieName = PlainName
		if hostOK {
			m.cfg.CookieName = HostPrefixName
		}
	}
	name := m.cfg.CookieName
	switch {
	case cfg.MaxAge < 0:
		return nil, errors.New("httpsession: MaxAge must not be negative")
	case strings.HasPrefix(strings.ToLower(name), "__host-") && !hostOK:
		return nil, fmt.Errorf("httpsession: cookie name %q: the __Host- prefix needs Secure, Path \"/\" and no Domain", name)
	case strings.HasPrefix(strings.ToLower(name), "__secure-") && !m.secure:
		return nil, fmt.Errorf("httpsession: cookie name %q: the __Secure- prefix needs Secure", name)
	case cfg.SameSite == http.SameSiteNoneMode && !m.secure:
		return nil, errors.New("httpsession: SameSite None needs Secure")
	}
	if err := m.cookie("x").Valid(); err != nil {
		return nil, fmt.Errorf("httpsession: %v", err)
	}
	return m, nil
}

// CookieName is the name of the session cookie.
func (m *Manager) CookieName() string { return m.cfg.CookieName }

// Store is the store the manager keeps sessions in.
func (m *Manager) Store() *client.Store { return m.store }

// cookie is the session cookie carrying value; "" makes the cookie that clears it.
func (m *Manager) cookie(value string) *http.Cookie {
	c := &http.Cookie{
		Name: m.cfg.CookieName, Value: value, Path: m.cfg.Path, Domain: m.cfg.Domain,
		Secure: m.secure, HttpOnly: m.httpOnly, SameSite: m.cfg.SameSite,
	}
	if value == "" {
		c.MaxAge = -1 // Max-Age=0: delete now
		c.Expires = time.Unix(1, 0)
	} else if m.cfg.MaxAge > 0 {
		c.MaxAge = int((m.cfg.MaxAge + time.Second - 1) / time.Second) // whole seconds, rounded up
	}
	return c
}

type ctxKey struct{}

// cookieAction is what the response must do with the cookie.
type cookieAction int

const (
	keepCookie  cookieAction = iota
	setCookie                // the session's id
	clearCookie              // the request's cookie names no session any more
)

// state is one request's session; the context carries a pointer to it, so that Login,
// Renew and Logout change what FromContext returns for the rest of the request.
type state struct {
	mu        sync.Mutex
	sess      *client.Session
	cookie    cookieAction
	committed bool // the response has begun (or the handler returned)
	failed    bool // saving failed: the error response replaced the handler's
}

func stateOf(r *http.Request) *state {
	st, _ := r.Context().Value(ctxKey{}).(*state)
	return st
}

// FromContext returns the session of the request whose context ctx is, or nil when there
// is none (no cookie, or its session is unknown, expired or destroyed). Changes made to
// it with Set and Delete are saved before the response begins.
func FromContext(ctx context.Context) *client.Session {
	st, _ := ctx.Value(ctxKey{}).(*state)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sess
}

// Handler loads the session named by the request's cookie, runs next with it in the
// request's context (FromContext), and saves it, if it changed, before the first byte of
// the response: web-method frequency, so when the client sees the response its change is
// on the bus. A cookie naming no session gives no session but is kept: the store cannot
// tell a destroyed or expired session from one not yet applied to the table (a failover
// within about a second of a login), and clearing the cookie would log that user out.
// A stale cookie costs nothing; Login and Logout replace it.
//
// A session that did not change is saved anyway once half its MaxIdle has passed since
// its last save, so that a user who keeps reading is not logged out for being idle.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Cookie")
		st := &state{}
		if c, err := r.Cookie(m.cfg.CookieName); err == nil && c.Value != "" {
			sess, err := m.store.Load(r.Context(), c.Value)
			switch {
			case err == nil:
				st.sess = sess
			case errors.Is(err, client.ErrNotFound):
				// No session; the cookie stays (see above).
			default:
				m.fail(w, r, fmt.Errorf("httpsession: load session: %w", err))
				return
			}
		}
		sw := &responseWriter{ResponseWriter: w, m: m, st: st}
		sr := r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
		sw.r = sr
		next.ServeHTTP(sw, sr)
		sw.commit() // nothing written: net/http sends the headers when we return
	})
}

// fail writes the error response on w (the real ResponseWriter).
func (m *Manager) fail(w http.ResponseWriter, r *http.Request, err error) {
	if m.cfg.OnError != nil {
		m.cfg.OnError(w, r, err)
		return
	}
	m.log.Error("session store failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
	code := http.StatusInternalServerError
	if errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrTimeout) {
		code = http.StatusServiceUnavailable
	}
	http.Error(w, http.StatusText(code), code)
}

// needsSave reports whether sess must be saved at the end of the request: it changed,
// or half its idle time has passed since it was last saved.
func needsSave(sess *client.Session, now time.Time) bool {
	return sess.Modified() || now.Sub(sess.LastAccess()) >= sess.MaxIdle()/2
}

// commit saves the session if it needs it and writes the cookie header; it runs once,
// before the response's first byte. It reports whether the handler's response may go
// on; if not, the error response has been written.
func (w *responseWriter) commit() bool {
	ok, err := w.save()
	if err != nil {
		// Unlocked: OnError may call FromContext.
		w.m.fail(w.ResponseWriter, w.r, err)
	}
	return ok
}

// save is commit's part under the state's lock. It reports whether the response may go
// on, and the error to report (the first time only).
func (w *responseWriter) save() (ok bool, err error) {
	st := w.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.committed {
		return !st.failed, nil
	}
	st.committed = true
	if st.sess != nil && needsSave(st.sess, time.Now()) {
		if err = w.m.store.Save(w.r.Context(), st.sess); err != nil {
			if errors.Is(err, client.ErrNotFound) {
				// Destroyed or expired meanwhile: the change is lost, and so is the session.
				st.sess, st.cookie = nil, clearCookie
			}
			err = fmt.Errorf("httpsession: save session: %w", err)
		}
	}
	h := w.ResponseWriter.Header()
	if err != nil {
		st.failed = true
		// The handler's headers described the response it meant to send, not this one.
		for k := range h {
			delete(h, k)
		}
		h.Set("Vary", "Cookie")
	}
	switch st.cookie {
	case setCookie:
		h.Add("Set-Cookie", w.m.cookie(st.sess.ID()).String())
	case clearCookie:
		h.Add("Set-Cookie", w.m.cookie("").String())
	}
	if st.cookie != keepCookie && h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", `no-cache="Set-Cookie"`)
	}
	return err == nil, err
}

// errSaveFailed is what the handler's writes return once saving failed.
var errSaveFailed = errors.New("httpsession: the session could not be saved; an error response was sent instead")

// responseWriter saves the session before the response begins.
type responseWriter struct {
	http.ResponseWriter
	m  *Manager
	st *state
	r  *http.Request
}

func (w *responseWriter) WriteHeader(code int) {
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.commit() {
		return 0, errSaveFailed
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps net/http's sendfile path for io.Copy into the response.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.commit() {
		return 0, errSaveFailed
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
}

// Flush implements http.Flusher.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *responseWriter) FlushError() error {
	if !w.commit() {
		return errSaveFailed
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer (deadlines, Hijack, full
// duplex). A handler that hijacks the connection gets its session saved when it returns,
// but no cookie: there is no header to put it in.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// begin returns r's state, locked, or an error if the cookie can no longer be set.
func begin(r *http.Request) (*state, error) {
	st := stateOf(r)
	if st == nil {
		return nil, ErrNoMiddleware
	}
	st.mu.Lock()
	if st.committed {
		st.mu.Unlock()
		return nil, ErrHeadersWritten
	}
	return st, nil
}

// Login starts a session for principal and makes it the request's: it sets the cookie
// and FromContext returns it for the rest of the request. The session always gets a new
// id: if the request carried one, that session is ended everywhere (a defence against
// session fixation; it is not a logout, so the rest of its SSO group stays), and its
// attributes are carried over only with Config.KeepAttrsOnLogin. opts gives the limits,
// group and initial attributes; opts.Principal is ignored. Call it before writing the
// response.
//
// If the previous session cannot be ended, the new one is ended too, the request is
// left with no session, and the error is returned: the user logs in again.
func (m *Manager) Login(w http.ResponseWriter, r *http.Request, principal string, opts client.NewSession) (*client.Session, error) {
	st, err := begin(r)
	if err != nil {
		return nil, err
	}
	defer st.mu.Unlock()
	opts.Principal = principal
	if old := st.sess; old != nil && m.cfg.KeepAttrsOnLogin {
		attrs := map[string][]byte{}
		for _, k := range old.Names() {
			attrs[k], _ = old.Get(k)
		}
		for k, v := range opts.Attrs {
			attrs[k] = v
		}
		opts.Attrs = attrs
	}
	return m.replace(r.Context(), st, opts)
}

// Renew gives the request's session a new id, keeping its principal, group, limits and
// attributes (and saving any change the handler made to it so far): call it when the
// user's privileges change. The old id is refused everywhere from then on, but renewing
// is not a logout: the other sessions of the session's SSO group stay (a Logout ends
// them). The new session's MaxLife counts from now. Call it before writing the response.
func (m *Manager) Renew(w http.ResponseWriter, r *http.Request) (*client.Session, error) {
	st, err := begin(r)
	if err != nil {
		return nil, err
	}
	defer st.mu.Unlock()
	old := st.sess
	if old == nil {
		return nil, ErrNoSession
	}
	attrs := map[string][]byte{}
	for _, k := range old.Names() {
		attrs[k], _ = old.Get(k)
	}
	return m.replace(r.Context(), st, client.NewSession{
		Principal: old.Principal(), Group: old.Group(), MaxIdle: old.MaxIdle(), MaxLife: old.MaxLife(), Attrs: attrs,
	})
}

// replace gives st a new session made from n, in place of its current one if it has
// one (client.Store.Renew: the old id ends, its SSO group does not). st is locked.
func (m *Manager) replace(ctx context.Context, st *state, n client.NewSession) (*client.Session, error) {
	old := st.sess
	if old == nil {
		sess, err := m.store.Create(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("httpsession: create session: %w", err)
		}
		st.sess, st.cookie = sess, setCookie
		return sess, nil
	}
	sess, err := m.store.Renew(ctx, old.ID(), n)
	if err != nil {
		// The old session stays the request's if the store still has it (the new one
		// could not be made); otherwise the request is left with none.
		if _, lerr := m.store.Load(ctx, old.ID()); lerr != nil {
			st.sess, st.cookie = nil, clearCookie
		}
		return nil, fmt.Errorf("httpsession: renew session: %w", err)
	}
	st.sess, st.cookie = sess, setCookie
	return sess, nil
}

// Logout destroys the request's session everywhere and clears the cookie; FromContext
// returns nil for the rest of the request. Without a session it only clears the cookie.
// The session is gone from this instance and the cookie cleared even when the destroy
// could not be published; the error says so.
func (m *Manager) Logout(w http.ResponseWriter, r *http.Request) error {
	st, err := begin(r)
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	old := st.sess
	st.sess, st.cookie = nil, clearCookie
	if old == nil {
		return nil
	}
	if err := m.store.Destroy(r.Context(), old.ID()); err != nil {
		return fmt.Errorf("httpsession: destroy session: %w", err)
	}
	return nil
}
