package httpsession_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/httpsession"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/localtest"
	"github.com/sessionha/sessionha/local/site"
)

// theSite is one local site for every test of the package.
var theSite *site.Site

func TestMain(m *testing.M) {
	os.Exit(localtest.RunWithSite(m, nil, func(s *site.Site) { theSite = s }))
}

// logs collects what stores and managers log, so tests can check that no id leaks.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// instance is one auth server: a client.Store with its own instance id, a Manager, and
// the demo app behind an https test server.
type instance struct {
	store     *client.Store
	mgr       *httpsession.Manager
	srv       *httptest.Server
	publishes *atomic.Int64 // SNS Publish calls this instance's store made
	log       *logs
}

// openStore opens a store on the site whose SNS Publish calls are counted; opts change
// its configuration.
func openStore(t *testing.T, id string, log io.Writer, opts ...func(*client.Config)) (*client.Store, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	cfg := theSite.AWS.Copy()
	cfg.APIOptions = append(cfg.APIOptions[:len(cfg.APIOptions):len(cfg.APIOptions)], func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("countPublish",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if awsmiddleware.GetServiceID(ctx) == "SNS" && awsmiddleware.GetOperationName(ctx) == "Publish" {
					n.Add(1)
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
	ccfg := client.Config{
		Table: theSite.Outputs.Table, OpsTopicARN: theSite.Outputs.TopicARNs[topology.TopicOps],
		InstanceID: id, AWS: &cfg, Logger: slog.New(slog.NewTextHandler(log, nil)), JournalDir: t.TempDir(),
	}
	for _, o := range opts {
		o(&ccfg)
	}
	store, err := client.Open(context.Background(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store, &n
}

// newInstance starts an auth server instance over https; opts change its store's
// configuration.
func newInstance(t *testing.T, id string, cfg httpsession.Config, opts ...func(*client.Config)) *instance {
	t.Helper()
	in := &instance{log: &logs{}}
	in.store, in.publishes = openStore(t, id, in.log, opts...)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(in.log, nil))
	}
	var err error
	if in.mgr, err = httpsession.New(in.store, cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DisableSecure {
		in.srv = httptest.NewServer(in.mgr.Handler(app(in.mgr)))
	} else {
		in.srv = httptest.NewTLSServer(in.mgr.Handler(app(in.mgr)))
	}
	t.Cleanup(in.srv.Close)
	return in
}

// me is what GET /me answers.
type me struct {
	Principal string `json:"principal"` // "" when not logged in
	Cart      string `json:"cart"`
}

// app is a small auth server: log in (into an SSO group if the form names one), add to
// the cart, read, renew, log out.
func app(m *httpsession.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if _, err := m.Login(w, r, r.FormValue("user"), client.NewSession{Group: r.FormValue("group")}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		s := httpsession.FromContext(r.Context())
		if s == nil {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		cart, _ := s.Get("cart")
		s.Set("cart", []byte(strings.TrimPrefix(string(cart)+","+r.FormValue("add"), ",")))
		fmt.Fprintln(w, "added")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		var out me
		if s := httpsession.FromContext(r.Context()); s != nil {
			cart, _ := s.Get("cart")
			out = me{Principal: s.Principal(), Cart: string(cart)}
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if _, err := m.Renew(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Logout(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

// browser is an http client with a cookie jar that trusts the test servers'
// certificate (every httptest TLS server uses the same one).
type browser struct {
	t   *testing.T
	c   *http.Client
	jar *cookiejar.Jar
}

func newBrowser(t *testing.T, in *instance) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := new(http.Client)
	*c = *in.srv.Client() // a copy: the server hands out one client, and each browser needs its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, c: c, jar: jar}
}

// do makes a request to in and returns the response with its body read.
func (b *browser) do(in *instance, method, path string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, in.srv.URL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, string(body)
}

// ok makes a request that must answer 200.
func (b *browser) ok(in *instance, method, path string) string {
	b.t.Helper()
	resp, body := b.do(in, method, path)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("%s %s: %s %s", method, path, resp.Status, body)
	}
	return body
}

// me asks in who the browser is.
func (b *browser) me(in *instance) me {
	b.t.Helper()
	var m me
	if err := json.Unmarshal([]byte(b.ok(in, "GET", "/me")), &m); err != nil {
		b.t.Fatal(err)
	}
	return m
}

// sessionID is the session cookie the browser holds for in ("" for none).
func (b *browser) sessionID(in *instance) string {
	u, _ := url.Parse(in.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == in.mgr.CookieName() {
			return c.Value
		}
	}
	return ""
}

// withCookie makes a request to in carrying exactly the given session id, outside the
// browser's jar.
func withCookie(t *testing.T, in *instance, path, id string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", in.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: in.mgr.CookieName(), Value: id})
	resp, err := in.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// item reads the session's item straight from the table (nil if none).
func item(t *testing.T, id string) *record.Item {
	t.Helper()
	tbl := record.Table{DB: theSite.DynamoDBClient(), Name: theSite.Outputs.Table}
	it, err := tbl.Get(context.Background(), record.Key("default", events.HashID(id)))
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	localtest.Eventually(t, what, cond)
}

// loads polls until store loads id with the given cart.
func loads(t *testing.T, store *client.Store, id, principal, cart string) {
	t.Helper()
	eventually(t, "another instance loads the session", func() (bool, string) {
		s, err := store.Load(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		c, _ := s.Get("cart")
		return s.Principal() == principal && string(c) == cart, fmt.Sprintf("principal %q cart %q", s.Principal(), c)
	})
}

// gone polls until store refuses id.
func gone(t *testing.T, store *client.Store, id string) {
	t.Helper()
	eventually(t, "the session is gone on another instance", func() (bool, string) {
		_, err := store.Load(context.Background(), id)
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
}

// noLeak fails if any of the logs holds a session id.
func noLeak(t *testing.T, ids []string, ls ...*logs) {
	t.Helper()
	for _, l := range ls {
		for _, id := range ids {
			if id != "" && strings.Contains(l.String(), id) {
				t.Errorf("a session id reached the log")
			}
		}
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
