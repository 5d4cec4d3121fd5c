package httpsession_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/httpsession"
)

func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// A user logs in, puts something in the cart in one request and reads it in the next;
// requests that only read publish nothing and leave the stored item alone.
func TestCartAcrossRequestsAndReadsPublishNothing(t *testing.T) {
	a := newInstance(t, "cart-a", httpsession.Config{})
	br := newBrowser(t, a)

	if m := br.me(a); m.Principal != "" {
		t.Fatalf("before login: %+v", m)
	}
	br.ok(a, "POST", "/login?user=alice")
	id := br.sessionID(a)
	if len(id) != 43 {
		t.Fatalf("after login the browser holds a %d-character session cookie, want 43", len(id))
	}
	br.ok(a, "POST", "/cart?add=book")
	if m := br.me(a); m != (me{"alice", "book"}) {
		t.Fatalf("next request: %+v, want alice with a book", m)
	}
	if n := a.publishes.Load(); n != 2 {
		t.Fatalf("login and one change published %d messages, want 2", n)
	}

	// Once the change is applied, the item's revision must not move on reads.
	var rev int64
	eventually(t, "the cart reaches the table", func() (bool, string) {
		it := item(t, id)
		if it == nil {
			return false, "no item"
		}
		rev = it.Rev
		return string(it.Attrs["cart"]) == "book", fmt.Sprintf("rev %d cart %q", it.Rev, it.Attrs["cart"])
	})
	before := a.publishes.Load()
	for range 5 {
		if m := br.me(a); m != (me{"alice", "book"}) {
			t.Fatalf("read: %+v", m)
		}
	}
	if n := a.publishes.Load() - before; n != 0 {
		t.Fatalf("5 read-only requests published %d messages, want 0", n)
	}
	// A later change is the next revision: nothing was applied in between.
	br.ok(a, "POST", "/cart?add=lamp")
	eventually(t, "the second change reaches the table", func() (bool, string) {
		it := item(t, id)
		return string(it.Attrs["cart"]) == "book,lamp", fmt.Sprintf("cart %q", it.Attrs["cart"])
	})
	if it := item(t, id); it.Rev != rev+1 {
		t.Fatalf("revision went from %d to %d over reads and one change, want %d", rev, it.Rev, rev+1)
	}
	noLeak(t, []string{id}, a.log)
}

// The cookie has the secure defaults, as the browser sees them in Set-Cookie.
func TestCookieAttributes(t *testing.T) {
	a := newInstance(t, "cookie-a", httpsession.Config{})
	br := newBrowser(t, a)
	resp, _ := br.do(a, "POST", "/login?user=alice")
	set := resp.Header.Values("Set-Cookie")
	if len(set) != 1 {
		t.Fatalf("login sent %d Set-Cookie headers, want 1", len(set))
	}
	c, err := http.ParseSetCookie(set[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "__Host-sessionha" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode ||
		c.Path != "/" || c.Domain != "" || c.MaxAge != 0 || !c.Expires.IsZero() {
		t.Errorf("cookie %s: HttpOnly %v Secure %v SameSite %v Path %q Domain %q MaxAge %d Expires %v; want __Host-sessionha, HttpOnly, Secure, Lax, Path /, no Domain, a browser-session cookie",
			c.Name, c.HttpOnly, c.Secure, c.SameSite, c.Path, c.Domain, c.MaxAge, c.Expires)
	}
	for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(set[0], attr) {
			t.Errorf("Set-Cookie lacks %s", attr)
		}
	}
	if !strings.Contains(resp.Header.Get("Vary"), "Cookie") {
		t.Errorf("Vary: %q, want Cookie", resp.Header.Get("Vary"))
	}
	if resp.Header.Get("Cache-Control") == "" {
		t.Errorf("a response that sets the session cookie has no Cache-Control")
	}
	// A request that neither logs in nor out sets no cookie.
	resp, _ = br.do(a, "GET", "/me")
	if v := resp.Header.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("a read-only request sent %d Set-Cookie headers, want none", len(v))
	}
}

// Without Secure (plain-http development) the name falls back to one without the
// __Host- prefix, which browsers would refuse, and everything still works.
func TestInsecureFallsBackToPlainName(t *testing.T) {
	a := newInstance(t, "plain-a", httpsession.Config{DisableSecure: true, MaxAge: 1800e9})
	if a.mgr.CookieName() != "sessionha" {
		t.Fatalf("cookie name %q, want sessionha", a.mgr.CookieName())
	}
	br := newBrowser(t, a)
	resp, _ := br.do(a, "POST", "/login?user=bob")
	c, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "sessionha" || c.Secure || !c.HttpOnly || c.MaxAge != 1800 {
		t.Errorf("cookie %s Secure %v HttpOnly %v MaxAge %d; want sessionha, not Secure, HttpOnly, 1800", c.Name, c.Secure, c.HttpOnly, c.MaxAge)
	}
	if m := br.me(a); m.Principal != "bob" {
		t.Fatalf("over plain http: %+v", m)
	}
}

// A cookie naming no session gives no session, and is left alone: it may name a session
// not yet applied to the table (a failover right after a login), which clearing it would
// log out.
func TestUnknownCookieIsKept(t *testing.T) {
	a := newInstance(t, "stale-a", httpsession.Config{})
	for _, id := range []string{randomID(), "not-an-id"} {
		resp, body := withCookie(t, a, "/me", id)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"principal":""`) {
			t.Fatalf("unknown cookie: %s %s", resp.Status, body)
		}
		if sc := resp.Header.Get("Set-Cookie"); sc != "" {
			t.Errorf("an unknown cookie was answered with Set-Cookie %q; want it kept", sc)
		}
	}
}

// Session fixation: a login on a request that carries a session yields a new id, and the
// old one is refused at once by the same instance and soon by every other.
func TestLoginRenewsTheID(t *testing.T) {
	a := newInstance(t, "fix-a", httpsession.Config{})
	other, _ := openStore(t, "fix-b", a.log)
	br := newBrowser(t, a)

	br.ok(a, "POST", "/login?user=mallory")
	br.ok(a, "POST", "/cart?add=bait")
	old := br.sessionID(a)
	loads(t, other, old, "mallory", "bait") // so that "gone" below means destroyed

	br.ok(a, "POST", "/login?user=alice")
	id := br.sessionID(a)
	if id == "" || id == old {
		t.Fatalf("login on a request with a session kept its id")
	}
	if m := br.me(a); m != (me{"alice", ""}) {
		t.Fatalf("after the second login: %+v, want alice with an empty cart (attributes not carried over)", m)
	}
	if _, err := a.store.Load(context.Background(), old); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("the same instance still loads the old session: %v", err)
	}
	if _, body := withCookie(t, a, "/me", old); !strings.Contains(body, `"principal":""`) {
		t.Fatalf("old cookie on the same instance still gives a session: %s", body)
	}
	gone(t, other, old)
	noLeak(t, []string{old, id}, a.log)
}

// KeepAttrsOnLogin carries the old session's attributes into the new one, under a new id.
func TestLoginKeepsAttrsWhenAsked(t *testing.T) {
	a := newInstance(t, "keep-a", httpsession.Config{KeepAttrsOnLogin: true})
	br := newBrowser(t, a)
	br.ok(a, "POST", "/login?user=guest")
	br.ok(a, "POST", "/cart?add=book")
	old := br.sessionID(a)
	br.ok(a, "POST", "/login?user=alice")
	if br.sessionID(a) == old {
		t.Fatal("id not renewed")
	}
	if m := br.me(a); m != (me{"alice", "book"}) {
		t.Fatalf("%+v, want alice with the guest's book", m)
	}
}

// Renew gives a new id with the same principal and attributes.
func TestRenew(t *testing.T) {
	a := newInstance(t, "renew-a", httpsession.Config{})
	br := newBrowser(t, a)
	br.ok(a, "POST", "/login?user=alice")
	br.ok(a, "POST", "/cart?add=book")
	old := br.sessionID(a)
	br.ok(a, "POST", "/renew")
	if id := br.sessionID(a); id == old || id == "" {
		t.Fatal("Renew kept the id")
	}
	if m := br.me(a); m != (me{"alice", "book"}) {
		t.Fatalf("after Renew: %+v", m)
	}
	if _, err := a.store.Load(context.Background(), old); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("old id after Renew: %v", err)
	}
}

// Logout clears the cookie, and the session is gone on every instance.
func TestLogoutEverywhere(t *testing.T) {
	a := newInstance(t, "out-a", httpsession.Config{})
	b := newInstance(t, "out-b", httpsession.Config{})
	br := newBrowser(t, a)
	br.ok(a, "POST", "/login?user=alice")
	br.ok(a, "POST", "/cart?add=book")
	id := br.sessionID(a)
	loads(t, b.store, id, "alice", "book")

	resp, _ := br.do(a, "POST", "/logout")
	c, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
	if err != nil || c.Name != "__Host-sessionha" || c.Value != "" || c.MaxAge >= 0 || !c.Secure || c.Path != "/" {
		t.Fatalf("logout did not clear the cookie: %v", err)
	}
	if br.sessionID(a) != "" {
		t.Fatal("the browser still holds the session cookie after logout")
	}
	if m := br.me(a); m.Principal != "" {
		t.Fatalf("after logout: %+v", m)
	}
	gone(t, b.store, id)
	if _, body := withCookie(t, b, "/me", id); !strings.Contains(body, `"principal":""`) {
		t.Fatalf("instance B still serves the session after logout: %s", body)
	}
	noLeak(t, []string{id}, a.log, b.log)
}

// Failover: the user logs in and fills the cart on A; A goes away; B, with its own store,
// serves the same cookie with the same user and cart, and can change it.
func TestFailover(t *testing.T) {
	a := newInstance(t, "fo-a", httpsession.Config{})
	b := newInstance(t, "fo-b", httpsession.Config{})
	br := newBrowser(t, a) // one jar for both: cookies do not tell ports apart
	br.ok(a, "POST", "/login?user=alice")
	br.ok(a, "POST", "/cart?add=book")
	br.ok(a, "POST", "/cart?add=lamp")
	id := br.sessionID(a)

	a.srv.Close()
	if err := a.store.Close(); err != nil {
		t.Fatal(err)
	}
	// Until sessionop has applied the ops, B finds no session (and keeps the cookie).
	loads(t, b.store, id, "alice", "book,lamp")
	if m := br.me(b); m != (me{"alice", "book,lamp"}) {
		t.Fatalf("B after failover: %+v, want alice with book,lamp", m)
	}
	br.ok(b, "POST", "/cart?add=pen")
	if m := br.me(b); m != (me{"alice", "book,lamp,pen"}) {
		t.Fatalf("B after a change: %+v", m)
	}
	if br.sessionID(b) != id {
		t.Fatal("failover changed the session id")
	}
	noLeak(t, []string{id}, a.log, b.log)
}

// A save that fails becomes the response: the handler's own response is not sent, since
// the save happens before the first byte.
func TestSaveFailureReplacesTheResponse(t *testing.T) {
	in := &instance{log: &logs{}}
	in.store, in.publishes = openStore(t, "fail-a", in.log)
	var err error
	if in.mgr, err = httpsession.New(in.store, httpsession.Config{Logger: slogTo(in.log)}); err != nil {
		t.Fatal(err)
	}
	mux := app(in.mgr).(*http.ServeMux)
	mux.HandleFunc("POST /doomed", func(w http.ResponseWriter, r *http.Request) {
		s := httpsession.FromContext(r.Context())
		s.Set("cart", []byte("lost"))
		// Logged out elsewhere meanwhile: the save must not bring it back.
		if err := in.store.Destroy(r.Context(), s.ID()); err != nil {
			t.Error(err)
		}
		w.Header().Set("X-Handler", "yes")
		fmt.Fprintln(w, "saved!")
	})
	in.srv = httptest.NewTLSServer(in.mgr.Handler(mux))
	t.Cleanup(in.srv.Close)
	br := newBrowser(t, in)
	br.ok(in, "POST", "/login?user=alice")
	id := br.sessionID(in)

	resp, body := br.do(in, "POST", "/doomed")
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(body, "saved!") || resp.Header.Get("X-Handler") != "" {
		t.Fatalf("got %s %q (X-Handler %q), want a 500 instead of the handler's response", resp.Status, body, resp.Header.Get("X-Handler"))
	}
	if br.sessionID(in) != "" {
		t.Error("the cookie of the destroyed session was not cleared")
	}
	if !strings.Contains(in.log.String(), "save session") {
		t.Errorf("the failure was not logged: %s", in.log.String())
	}
	noLeak(t, []string{id}, in.log)
}

// Flushing early (http.ResponseController) saves first and still sends the cookie.
func TestFlushSavesFirst(t *testing.T) {
	in := &instance{log: &logs{}}
	in.store, in.publishes = openStore(t, "flush-a", in.log)
	var err error
	if in.mgr, err = httpsession.New(in.store, httpsession.Config{Logger: slogTo(in.log)}); err != nil {
		t.Fatal(err)
	}
	var published int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stream", func(w http.ResponseWriter, r *http.Request) {
		s, err := in.mgr.Login(w, r, "alice", client.NewSession{})
		if err != nil {
			t.Error(err)
			return
		}
		s.Set("cart", []byte("book"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Error(err)
		}
		published = in.publishes.Load() // create and save, both before the flush
		if _, err := in.mgr.Login(w, r, "bob", client.NewSession{}); !errors.Is(err, httpsession.ErrHeadersWritten) {
			t.Errorf("Login after the response began: %v, want ErrHeadersWritten", err)
		}
		fmt.Fprintln(w, "streaming")
	})
	mux.Handle("GET /me", app(in.mgr))
	in.srv = httptest.NewTLSServer(in.mgr.Handler(mux))
	t.Cleanup(in.srv.Close)
	br := newBrowser(t, in)
	resp, _ := br.do(in, "POST", "/stream")
	if resp.Header.Get("Set-Cookie") == "" {
		t.Fatal("no cookie on a flushed response")
	}
	if published != 2 {
		t.Fatalf("%d messages published before the flush, want 2 (create, save)", published)
	}
	if m := br.me(in); m != (me{"alice", "book"}) {
		t.Fatalf("%+v", m)
	}
}
