package httpsession_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/httpsession"
)

func memoryStore(t *testing.T) *client.Store {
	t.Helper()
	store, err := client.Open(context.Background(), client.Config{Persistence: client.PersistenceMemory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func TestNewChecksTheCookie(t *testing.T) {
	store := memoryStore(t)
	for want, cfg := range map[string]httpsession.Config{
		"__Host-sessionha": {},
		"sessionha":        {Path: "/app"},
		"sid":              {CookieName: "sid"},
	} {
		m, err := httpsession.New(store, cfg)
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		if m.CookieName() != want {
			t.Errorf("%+v: cookie name %q, want %q", cfg, m.CookieName(), want)
		}
	}
	if m, _ := httpsession.New(store, httpsession.Config{Domain: "example.com"}); m.CookieName() != "sessionha" {
		t.Errorf("with a Domain: %q, want sessionha", m.CookieName())
	}
	if m, _ := httpsession.New(store, httpsession.Config{DisableSecure: true}); m.CookieName() != "sessionha" {
		t.Errorf("without Secure: %q, want sessionha", m.CookieName())
	}
	for name, cfg := range map[string]httpsession.Config{
		"__Host- without Secure":   {CookieName: "__Host-x", DisableSecure: true},
		"__Host- with a Path":      {CookieName: "__Host-x", Path: "/app"},
		"__Host- with a Domain":    {CookieName: "__Host-x", Domain: "example.com"},
		"__Secure- without Secure": {CookieName: "__Secure-x", DisableSecure: true},
		"SameSite None, insecure":  {SameSite: http.SameSiteNoneMode, DisableSecure: true},
		"a bad name":               {CookieName: "a b"},
		"a negative MaxAge":        {MaxAge: -1},
	} {
		if _, err := httpsession.New(store, cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := httpsession.New(nil, httpsession.Config{}); err == nil {
		t.Error("New accepted a nil store")
	}
}

func TestOutsideTheMiddleware(t *testing.T) {
	m, err := httpsession.New(memoryStore(t), httpsession.Config{})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/login", nil)
	w := httptest.NewRecorder()
	if _, err := m.Login(w, r, "alice", client.NewSession{}); !errors.Is(err, httpsession.ErrNoMiddleware) {
		t.Errorf("Login: %v, want ErrNoMiddleware", err)
	}
	if err := m.Logout(w, r); !errors.Is(err, httpsession.ErrNoMiddleware) {
		t.Errorf("Logout: %v, want ErrNoMiddleware", err)
	}
	if s := httpsession.FromContext(r.Context()); s != nil {
		t.Error("FromContext outside the middleware returned a session")
	}
}

// Renew without a session says so; the memory store is enough for that.
func TestRenewWithoutSession(t *testing.T) {
	m, err := httpsession.New(memoryStore(t), httpsession.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var got error
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, got = m.Renew(w, r)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/renew", nil))
	if !errors.Is(got, httpsession.ErrNoSession) {
		t.Fatalf("Renew: %v, want ErrNoSession", got)
	}
}

// A custom OnError gets the save failure, may read the request's session (nil: the save
// found the session destroyed), and its response replaces the handler's.
func TestOnErrorReplacesTheResponse(t *testing.T) {
	store := memoryStore(t)
	var seen error
	m, err := httpsession.New(store, httpsession.Config{OnError: func(w http.ResponseWriter, r *http.Request, err error) {
		seen = err
		if httpsession.FromContext(r.Context()) != nil {
			t.Error("FromContext in OnError: the destroyed session is still the request's")
		}
		http.Error(w, "session ended", http.StatusConflict)
	}})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			s, err := m.Login(w, r, "alice", client.NewSession{})
			if err != nil {
				t.Fatal(err)
			}
			id = s.ID()
			return
		}
		s := httpsession.FromContext(r.Context())
		s.Set("cart", []byte("x"))
		_ = store.Destroy(r.Context(), s.ID())
		if _, err := w.Write([]byte("ok")); err == nil {
			t.Error("Write after a failed save succeeded")
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	cookie := rec.Result().Cookies()[0]
	req := httptest.NewRequest("POST", "/cart", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusConflict || !errors.Is(seen, client.ErrNotFound) {
		t.Fatalf("got %d, error %v; want 409 from OnError with ErrNotFound", rec.Code, seen)
	}
	if c := rec.Result().Cookies(); len(c) != 1 || c[0].Value != "" || c[0].MaxAge >= 0 {
		t.Errorf("the cookie of the destroyed session was not cleared")
	}
	if strings.Contains(seen.Error(), id) {
		t.Error("the error holds the session id")
	}
}
