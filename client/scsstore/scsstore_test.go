package scsstore_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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

	"github.com/alexedwards/scs/v2"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/scsstore"
)

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// server is an scs app on one instance.
type server struct {
	store *client.Store
	sm    *scs.SessionManager
	srv   *httptest.Server
}

func newServer(t *testing.T, instance string, hashTokens bool) *server {
	t.Helper()
	s := &server{store: openStore(t, instance), sm: scs.New()}
	s.sm.Store = scsstore.New(s.store) // the one line an scs app changes
	s.sm.HashTokenInStore = hashTokens
	s.sm.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		t.Errorf("scs error on %s: %v", instance, err)
		http.Error(w, "error", http.StatusInternalServerError)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		s.sm.Put(r.Context(), "user", r.FormValue("user"))
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, s.sm.GetString(r.Context(), "user"))
	})
	mux.HandleFunc("POST /destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := s.sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	s.srv = httptest.NewServer(s.sm.LoadAndSave(mux))
	t.Cleanup(s.srv.Close)
	return s
}

type browser struct {
	t   *testing.T
	c   *http.Client
	jar *cookiejar.Jar
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{Jar: jar}, jar: jar}
}

func (b *browser) do(s *server, method, path string) string {
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
	return string(body)
}

// token is the scs session cookie the browser holds ("" for none).
func (b *browser) token(s *server) string {
	u, _ := url.Parse(s.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == s.sm.Cookie.Name {
			return c.Value
		}
	}
	return ""
}

// getWith asks s for the user with exactly this session cookie, outside the jar.
func getWith(t *testing.T, s *server, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", s.srv.URL+"/get", nil)
	req.AddCookie(&http.Cookie{Name: s.sm.Cookie.Name, Value: token})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// An scs app on two instances: a value put on A is read on B with the same cookie;
// Destroy on B logs the user out on A too.
func TestFailover(t *testing.T) {
	for _, hashed := range []bool{false, true} {
		t.Run(fmt.Sprintf("HashTokenInStore=%v", hashed), func(t *testing.T) {
			a := newServer(t, fmt.Sprintf("scs-a-%v", hashed), hashed)
			b := newServer(t, fmt.Sprintf("scs-b-%v", hashed), hashed)
			br := newBrowser(t)

			br.do(a, "POST", "/put?user=alice")
			token := br.token(a)
			if len(token) != 43 {
				t.Fatalf("scs token of %d characters, want 43", len(token))
			}
			if got := br.do(a, "GET", "/get"); got != "alice" {
				t.Fatalf("A reads %q, want alice", got)
			}
			// On a miss scs keeps the cookie, so the browser can simply retry on B.
			eventually(t, "B reads what A put", func() (bool, string) {
				got := br.do(b, "GET", "/get")
				return got == "alice", fmt.Sprintf("%q", got)
			})
			stored := token
			if hashed {
				sum := sha256.Sum256([]byte(token))
				stored = base64.RawURLEncoding.EncodeToString(sum[:])
			}
			if it := item(t, stored); it == nil || it.Principal != "" || len(it.Attrs[scsstore.Attr]) == 0 {
				t.Fatalf("stored item: %+v", it)
			}

			br.do(b, "POST", "/destroy")
			if br.token(b) != "" {
				t.Fatal("scs did not clear the cookie on Destroy")
			}
			if got := getWith(t, b, token); got != "" {
				t.Fatalf("B still reads %q after Destroy", got)
			}
			eventually(t, "A sees nothing after the destroy on B", func() (bool, string) {
				got := getWith(t, a, token)
				return got == "", fmt.Sprintf("%q", got)
			})
			// The store itself agrees on A.
			if _, found, err := scsstore.New(a.store).Find(stored); found || err != nil {
				t.Fatalf("Find after destroy: found %v, err %v", found, err)
			}
		})
	}
}

// The scs.Store contract, directly.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	store := openStore(t, "contract-a")
	other := openStore(t, "contract-b")
	st, st2 := scsstore.New(store), scsstore.New(other)

	for _, tok := range []string{"", "short", strings.Repeat("!", 43), randomToken()} {
		b, found, err := st.FindCtx(ctx, tok)
		if found || err != nil || b != nil {
			t.Errorf("Find(malformed or unknown): %v %v %v, want not found and no error", b, found, err)
		}
		if err := st.DeleteCtx(ctx, tok); err != nil {
			t.Errorf("Delete(malformed or unknown): %v", err)
		}
	}
	if err := st.CommitCtx(ctx, "not-a-token", []byte("x"), time.Now().Add(time.Minute)); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Commit(malformed): %v, want ErrInvalid", err)
	}

	tok := randomToken()
	expiry := time.Now().Add(90 * time.Second)
	if err := st.CommitCtx(ctx, tok, []byte("v1"), expiry); err != nil {
		t.Fatal(err)
	}
	if b, found, err := st.FindCtx(ctx, tok); !found || err != nil || string(b) != "v1" {
		t.Fatalf("own write: %q %v %v", b, found, err)
	}
	if err := st.Commit(tok, []byte("v2"), expiry); err != nil { // overwrite
		t.Fatal(err)
	}
	eventually(t, "another instance finds the overwrite", func() (bool, string) {
		b, found, err := st2.Find(tok)
		return found && string(b) == "v2", fmt.Sprintf("%q %v %v", b, found, err)
	})
	// The expiry scs gives is the session's deadline in the table.
	it := item(t, tok)
	if it.MaxLife != it.MaxIdle || it.MaxLife < 89 || it.MaxLife > 91 {
		t.Errorf("MaxLife %d s, MaxIdle %d s; want both about 90", it.MaxLife, it.MaxIdle)
	}
	if d := it.Deadline(); d.Before(expiry) || d.After(expiry.Add(2*time.Second)) {
		t.Errorf("deadline %v, want at or just after scs's expiry %v", d, expiry)
	}

	// An expiry already past removes the session.
	if err := st.CommitCtx(ctx, tok, []byte("v3"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := st.Find(tok); found {
		t.Error("found after a commit with a past expiry")
	}

	// Delete is a logout everywhere.
	tok2 := randomToken()
	if err := st2.Commit(tok2, []byte("w"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A finds B's session", func() (bool, string) {
		_, found, err := st.Find(tok2)
		return found, fmt.Sprint(err)
	})
	if err := st.Delete(tok2); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := st.Find(tok2); found {
		t.Error("found on the instance that deleted it")
	}
	eventually(t, "B no longer finds it", func() (bool, string) {
		_, found, err := st2.Find(tok2)
		return !found && err == nil, fmt.Sprint(found, err)
	})
	// A commit racing the logout is dropped, not an error (scs would answer 500).
	if err := st2.Commit(tok2, []byte("again"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := st2.Find(tok2); found {
		t.Error("a commit after the destroy brought the session back")
	}

	// A store that cannot answer is an error, not a miss.
	store.Close()
	if _, found, err := st.Find(randomToken()); err == nil || found {
		t.Errorf("Find on a closed store: found %v, err %v; want an error", found, err)
	}
}

// A user active on A for longer than scs's IdleTimeout can fail over to B at any moment:
// each commit refreshes the deadline (created now, life = expiry - now), and the table
// must keep the newest commit's, not the first's (issue 12, defect 1).
func TestFailoverAfterIdleTimeout(t *testing.T) {
	const idle = 8 * time.Second
	a := newServer(t, "scs-idle-a", false)
	b := newServer(t, "scs-idle-b", false)
	a.sm.IdleTimeout, b.sm.IdleTimeout = idle, idle
	br := newBrowser(t)
	br.do(a, "POST", "/put?user=alice")
	token := br.token(a)
	eventually(t, "B reads what A put", func() (bool, string) {
		got := getWith(t, b, token)
		return got == "alice", fmt.Sprintf("%q", got)
	})
	// The user stays active on A (a request a second, each committing a new expiry) for
	// well past the first commit's deadline. Should A die at any of these moments, B must
	// serve the user: the stored deadline is the last applied commit's + idle, and the
	// site applies a commit in far less than the 7 s of slack.
	for start := time.Now(); time.Since(start) < 5*idle/2; time.Sleep(time.Second) {
		if got := br.do(a, "GET", "/get"); got != "alice" {
			t.Fatalf("A reads %q while the user is active, want alice", got)
		}
		if got := getWith(t, b, token); got != "alice" {
			state := "no item"
			if it := item(t, token); it != nil {
				state = fmt.Sprintf("stored deadline %v ago", time.Since(it.Deadline()).Round(100*time.Millisecond))
			}
			t.Fatalf("%v after the first commit, with the user active on A, B reads %q (%s), want alice",
				time.Since(start).Round(time.Second), got, state)
		}
	}
}
