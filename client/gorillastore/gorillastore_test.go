package gorillastore_test

import (
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/gorillastore"
	"github.com/sessionha/sessionha/local/localtest"
)

// Cart is a value of the application's own type, which gob needs registered (as with
// gorilla's own stores).
type Cart struct{ Items []string }

func init() { gob.Register(Cart{}) }

// server is a gorilla/sessions app on one instance, over https (the cookie is Secure).
type server struct {
	store *client.Store
	gs    *gorillastore.Store
	srv   *httptest.Server
}

func newServer(t *testing.T, instance string) *server {
	t.Helper()
	s := &server{store: openStore(t, instance)}
	var err error
	if s.gs, err = gorillastore.New(s.store, gorillastore.Config{}); err != nil { // the one line
		t.Fatal(err)
	}
	fail := func(w http.ResponseWriter, err error) {
		t.Errorf("%s: %v", instance, err)
		http.Error(w, "error", http.StatusInternalServerError)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.gs.Get(r, "app")
		if err != nil {
			fail(w, err)
			return
		}
		sess.Values["user"] = r.FormValue("user")
		sess.Values["visits"] = 1
		sess.Values["cart"] = Cart{Items: []string{"book"}}
		if err := sess.Save(r, w); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.gs.Get(r, "app")
		if err != nil {
			fail(w, err)
			return
		}
		if sess.IsNew {
			fmt.Fprint(w, "anonymous")
			return
		}
		// The values come back as the types they were stored as.
		fmt.Fprintf(w, "%s %d %v", sess.Values["user"].(string), sess.Values["visits"].(int), sess.Values["cart"].(Cart).Items)
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.gs.Get(r, "app")
		if err != nil || sess.IsNew {
			fail(w, fmt.Errorf("visit without a session: %v", err))
			return
		}
		sess.Values["visits"] = sess.Values["visits"].(int) + 1
		if err := sess.Save(r, w); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.gs.Get(r, "app")
		if err != nil {
			fail(w, err)
			return
		}
		sess.Options.MaxAge = -1
		if err := sess.Save(r, w); err != nil {
			fail(w, err)
		}
	})
	s.srv = httptest.NewTLSServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

type browser struct {
	t   *testing.T
	c   *http.Client
	jar *cookiejar.Jar
}

// newBrowser is a cookie-keeping client that trusts the test servers' certificate
// (every httptest TLS server has the same). The servers all listen on 127.0.0.1, so
// the browser sends A's cookie to B, as it would to two instances behind one name.
func newBrowser(t *testing.T, s *server) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.srv.Client()
	c.Jar = jar
	return &browser{t: t, c: c, jar: jar}
}

func (b *browser) do(s *server, method, path string) (string, *http.Response) {
	b.t.Helper()
	req, _ := http.NewRequest(method, s.srv.URL+path, nil)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("%s %s: %s %s", method, path, resp.Status, body)
	}
	return string(body), resp
}

// cookie is the session cookie the browser holds ("" for none).
func (b *browser) cookie(s *server) string {
	u, _ := url.Parse(s.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "__Host-app" {
			return c.Value
		}
	}
	return ""
}

// whoamiWith asks s with exactly this session cookie, outside the jar.
func whoamiWith(t *testing.T, s *server, id string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", s.srv.URL+"/whoami", nil)
	req.AddCookie(&http.Cookie{Name: "__Host-app", Value: id})
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// A gorilla/sessions app on two instances: a session saved through A is read through B
// with the same cookie, values of every type intact; a change on B is read on A; a logout
// on A ends it on B.
func TestFailover(t *testing.T) {
	ctx := context.Background()
	a, b := newServer(t, "gorilla-a"), newServer(t, "gorilla-b")
	br := newBrowser(t, a)

	_, resp := br.do(a, "POST", "/login?user=alice")
	var set *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-app" {
			set = c
		}
	}
	if set == nil {
		t.Fatalf("login set no __Host-app cookie: %v", resp.Header["Set-Cookie"])
	}
	if !set.Secure || !set.HttpOnly || set.SameSite != http.SameSiteLaxMode || set.Path != "/" || set.Domain != "" || set.MaxAge != 0 || len(set.Value) != 43 {
		t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/, host-only, no Max-Age, a 43-character id", set)
	}
	id := br.cookie(a)
	if got, _ := br.do(a, "GET", "/whoami"); got != "alice 1 [book]" {
		t.Fatalf("A reads %q, want alice 1 [book]", got)
	}
	// The browser keeps its cookie on a miss, so it can simply retry on B.
	localtest.Eventually(t, "B reads what A saved", func() (bool, string) {
		got, _ := br.do(b, "GET", "/whoami")
		return got == "alice 1 [book]", fmt.Sprintf("%q", got)
	})
	br.do(b, "POST", "/visit")
	if got, _ := br.do(b, "GET", "/whoami"); got != "alice 2 [book]" {
		t.Fatalf("B reads %q after its own change, want alice 2 [book]", got)
	}
	localtest.Eventually(t, "A reads B's change", func() (bool, string) {
		got, _ := br.do(a, "GET", "/whoami")
		return got == "alice 2 [book]", fmt.Sprintf("%q", got)
	})
	if br.cookie(b) != id {
		t.Fatal("the session id changed on the way")
	}

	br.do(a, "POST", "/logout")
	if br.cookie(a) != "" {
		t.Fatal("logout did not clear the cookie")
	}
	if got := whoamiWith(t, a, id); got != "anonymous" {
		t.Fatalf("A still reads %q with the old cookie after the logout", got)
	}
	localtest.Eventually(t, "B sees no session after the logout on A", func() (bool, string) {
		got := whoamiWith(t, b, id)
		return got == "anonymous", fmt.Sprintf("%q", got)
	})
	if _, err := b.store.Load(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("B's store loads the logged-out session: %v", err)
	}
}

// request is a request carrying cookies (nil: none).
func request(cookies ...*http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "https://app.example/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

// sessionCookie is the cookie the response set for name.
func sessionCookie(t *testing.T, w *httptest.ResponseRecorder, name string) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestValues: keys must be strings (ErrKey) and values gob-encodable (ErrValue), and
// nothing is stored otherwise; what is stored comes back with its types.
func TestValues(t *testing.T) {
	gs, err := gorillastore.New(memoryStore(t, ""), gorillastore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	type unregistered struct{ X int }
	for name, values := range map[string]map[interface{}]interface{}{
		"int key":   {42: "x"},
		"empty key": {"": "x"},
		"long key":  {strings.Repeat("k", 129): "x"},
		"bad utf-8": {"\xff": "x"},
	} {
		r, w := request(), httptest.NewRecorder()
		sess, _ := gs.New(r, "app")
		sess.Values = values
		if err := gs.Save(r, w, sess); !errors.Is(err, gorillastore.ErrKey) {
			t.Errorf("%s: Save = %v, want ErrKey", name, err)
		}
		if sess.ID != "" || len(w.Result().Cookies()) != 0 {
			t.Errorf("%s: a refused Save set id %q and cookies %v", name, sess.ID, w.Result().Cookies())
		}
	}
	r, w := request(), httptest.NewRecorder()
	sess, _ := gs.New(r, "app")
	sess.Values["cart"] = unregistered{1}
	if err := gs.Save(r, w, sess); !errors.Is(err, gorillastore.ErrValue) || !strings.Contains(err.Error(), `"cart"`) {
		t.Errorf("unregistered type: Save = %v, want ErrValue naming the key", err)
	}

	r, w = request(), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	sess.Values["n"] = 7
	sess.Values["ok"] = true
	sess.Values["raw"] = []byte{0, 1, 2}
	sess.Values["nothing"] = nil
	sess.Values["cart"] = Cart{Items: []string{"a", "b"}}
	sess.AddFlash("saved!")
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	r = request(sessionCookie(t, w, "__Host-app"))
	got, err := gs.New(r, "app")
	if err != nil || got.IsNew || got.ID != sess.ID {
		t.Fatalf("New: %v, new %v, same id %v", err, got.IsNew, got.ID == sess.ID)
	}
	if got.Values["n"] != 7 || got.Values["ok"] != true || string(got.Values["raw"].([]byte)) != "\x00\x01\x02" ||
		got.Values["nothing"] != nil || got.Values["cart"].(Cart).Items[1] != "b" {
		t.Errorf("values came back as %#v", got.Values)
	}
	if _, has := got.Values["nothing"]; !has {
		t.Error("a nil value was lost")
	}
	if f := got.Flashes(); len(f) != 1 || f[0] != "saved!" {
		t.Errorf("flashes %v", f)
	}
}

// TestCookiesAndLimits: the cookie's name and attributes, MaxAge as the session's limits
// (kept across requests), malformed and unknown cookies, and a store that fails.
func TestCookiesAndLimits(t *testing.T) {
	ctx := context.Background()
	store := memoryStore(t, "")
	gs, err := gorillastore.New(store, gorillastore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if gs.CookieName("app") != "__Host-app" || gs.CookieName("__Secure-x") != "__Secure-x" {
		t.Errorf("cookie names %q %q", gs.CookieName("app"), gs.CookieName("__Secure-x"))
	}
	for name, cfg := range map[string]gorillastore.Config{
		"plain http": {Options: &sessions.Options{Path: "/", HttpOnly: true}},
		"a domain":   {Options: &sessions.Options{Path: "/", Domain: "example.com", Secure: true}},
		"no prefix":  {NoHostPrefix: true},
	} {
		g, err := gorillastore.New(store, cfg)
		if err != nil || g.CookieName("app") != "app" {
			t.Errorf("%s: cookie name %q, err %v; want app", name, g.CookieName("app"), err)
		}
	}
	for name, cfg := range map[string]gorillastore.Config{
		"SameSite None without Secure": {Options: &sessions.Options{Path: "/", SameSite: http.SameSiteNoneMode}},
		"negative MaxAge":              {Options: &sessions.Options{Path: "/", Secure: true, MaxAge: -1}},
		"negative MaxIdle":             {MaxIdle: -time.Second},
	} {
		if _, err := gorillastore.New(store, cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := gorillastore.New(nil, gorillastore.Config{}); err == nil {
		t.Error("New(nil store) succeeded")
	}
	// A session whose options lose what __Host- needs is refused, not silently dropped
	// by the browser.
	r, w := request(), httptest.NewRecorder()
	sess, _ := gs.New(r, "app")
	sess.Options.Domain = "example.com"
	if err := gs.Save(r, w, sess); !errors.Is(err, gorillastore.ErrCookie) {
		t.Errorf("__Host- cookie with a Domain: %v, want ErrCookie", err)
	}

	// MaxAge 0: a browser-session cookie, the configured limits.
	r, w = request(), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	sess.Values["user"] = "bo"
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	c := sessionCookie(t, w, "__Host-app")
	if c == nil || c.MaxAge != 0 || !c.Expires.IsZero() {
		t.Fatalf("cookie %+v: want no Max-Age", c)
	}
	if s, err := store.Load(ctx, sess.ID); err != nil || s.MaxIdle() != 30*time.Minute || s.MaxLife() != 8*time.Hour || s.Principal() != "" {
		t.Fatalf("stored %v: want 30m idle, 8h life, no principal (err %v)", s, err)
	}

	// "Remember me": MaxAge 30 days on the same session keeps its id and values and
	// stores it with the new limits; the next request sees the MaxAge again.
	const month = 30 * 24 * 3600
	r, w = request(c), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	sess.Options.MaxAge = month
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	c2 := sessionCookie(t, w, "__Host-app")
	if c2 == nil || c2.Value != c.Value || c2.MaxAge != month {
		t.Fatalf("cookie after MaxAge %d: %+v", month, c2)
	}
	if s, err := store.Load(ctx, sess.ID); err != nil || s.MaxIdle() != month*time.Second || s.MaxLife() != month*time.Second {
		t.Fatalf("stored limits %v %v (err %v), want 30 days each", s.MaxIdle(), s.MaxLife(), err)
	}
	r, w = request(c2), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	if sess.IsNew || sess.Options.MaxAge != month || sess.Values["user"] != "bo" {
		t.Fatalf("next request: new %v, MaxAge %d, user %v", sess.IsNew, sess.Options.MaxAge, sess.Values["user"])
	}
	if err := gs.Save(r, w, sess); err != nil { // a plain save keeps the limits
		t.Fatal(err)
	}
	if s, _ := store.Load(ctx, sess.ID); s.MaxIdle() != month*time.Second {
		t.Errorf("a save without a MaxAge change changed the limits to %v", s.MaxIdle())
	}
	// One hour: MaxIdle an hour, MaxLife still the configured 8 h.
	sess.Options.MaxAge = 3600
	if err := gs.Save(r, httptest.NewRecorder(), sess); err != nil {
		t.Fatal(err)
	}
	if s, _ := store.Load(ctx, sess.ID); s.MaxIdle() != time.Hour || s.MaxLife() != 8*time.Hour {
		t.Errorf("MaxAge 3600: limits %v %v, want 1h and 8h", s.MaxIdle(), s.MaxLife())
	}

	// Cookies that name no session give a new one and no error.
	for _, v := range []string{"", "short", strings.Repeat("!", 43), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		s, err := gs.New(request(&http.Cookie{Name: "__Host-app", Value: v}), "app")
		if err != nil || !s.IsNew || s.ID != "" || len(s.Values) != 0 {
			t.Errorf("cookie %q: new %v, id set %v, err %v", v, s.IsNew, s.ID != "", err)
		}
	}
	// A store that fails gives a session and the error.
	closed := memoryStore(t, "")
	gc, _ := gorillastore.New(closed, gorillastore.Config{})
	closed.Close()
	s, err := gc.New(request(c2), "app")
	if s == nil || !errors.Is(err, client.ErrClosed) {
		t.Errorf("New on a closed store: session %v, err %v; want a session and ErrClosed", s, err)
	}
}

// TestLogout: MaxAge < 0 destroys the session and clears the cookie; a session logged out
// elsewhere while a request held it stays logged out when that request saves.
func TestLogout(t *testing.T) {
	ctx := context.Background()
	store := memoryStore(t, "")
	gs, _ := gorillastore.New(store, gorillastore.Config{})
	r, w := request(), httptest.NewRecorder()
	sess, _ := gs.New(r, "app")
	sess.Values["user"] = "cy"
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	c := sessionCookie(t, w, "__Host-app")
	id := c.Value

	r, w = request(c), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	sess.Options.MaxAge = -1
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	if got := sessionCookie(t, w, "__Host-app"); got == nil || got.MaxAge >= 0 || got.Value != "" {
		t.Errorf("logout cookie %+v: want one that deletes it", got)
	}
	if _, err := store.Load(ctx, id); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("Load after logout: %v, want ErrNotFound", err)
	}

	// A logout lands between a request's New and its Save.
	r, w = request(), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	sess.Values["user"] = "dee"
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	c = sessionCookie(t, w, "__Host-app")
	r, w = request(c), httptest.NewRecorder()
	sess, _ = gs.New(r, "app")
	if err := store.Destroy(ctx, c.Value); err != nil { // "another instance"
		t.Fatal(err)
	}
	sess.Values["user"] = "dee, revived?"
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatalf("Save racing a logout: %v, want nil (the logout wins)", err)
	}
	if got := sessionCookie(t, w, "__Host-app"); got == nil || got.MaxAge >= 0 {
		t.Errorf("cookie after a Save racing a logout: %+v, want it cleared", got)
	}
	if _, err := store.Load(ctx, c.Value); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("the logged-out session came back: %v", err)
	}
}

// TestConcurrentRequests: with scope modified-attribute, two requests holding one session
// at once, each changing its own key, both keep their change: Save sends only what its
// request changed.
func TestConcurrentRequests(t *testing.T) {
	ctx := context.Background()
	store := memoryStore(t, client.ScopeModifiedAttribute)
	gs, _ := gorillastore.New(store, gorillastore.Config{})
	r, w := request(), httptest.NewRecorder()
	sess, _ := gs.New(r, "app")
	sess.Values["keep"] = "k"
	sess.Values["drop"] = "d"
	if err := gs.Save(r, w, sess); err != nil {
		t.Fatal(err)
	}
	c := sessionCookie(t, w, "__Host-app")

	r1, r2 := request(c), request(c)
	s1, _ := gs.New(r1, "app")
	s2, _ := gs.New(r2, "app")
	s1.Values["a"] = 1
	delete(s1.Values, "drop")
	s2.Values["b"] = 2
	if err := gs.Save(r1, httptest.NewRecorder(), s1); err != nil {
		t.Fatal(err)
	}
	if err := gs.Save(r2, httptest.NewRecorder(), s2); err != nil {
		t.Fatal(err)
	}
	got, err := store.Load(ctx, c.Value)
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Join(got.Names(), ",")
	if names != "a,b,keep" {
		t.Errorf("attributes after two concurrent requests: %s, want a,b,keep", names)
	}
}
