package httpsession_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/httpsession"
	"github.com/sessionha/sessionha/internal/record"
)

// listed polls until store lists exactly want live sessions for principal.
func listed(t *testing.T, store *client.Store, principal string, want int) []client.SessionInfo {
	t.Helper()
	var got []client.SessionInfo
	eventually(t, fmt.Sprintf("%d sessions listed for the user", want), func() (bool, string) {
		var err error
		got, err = store.List(context.Background(), principal)
		return err == nil && len(got) == want, fmt.Sprintf("%d listed, err %v", len(got), err)
	})
	return got
}

// Renewing the id is not a logout: the old id is refused everywhere, but the other
// sessions of the user's SSO group stay valid, on this instance and on every other; a
// logout afterwards still ends the whole group.
func TestRenewKeepsTheSSOGroup(t *testing.T) {
	a := newInstance(t, "sso-renew-a", httpsession.Config{})
	b := newInstance(t, "sso-renew-b", httpsession.Config{})
	user := "grace-" + randomID()[:8]
	mail, wiki := newBrowser(t, a), newBrowser(t, b) // two applications of one SSO login
	mail.ok(a, "POST", "/login?user="+user+"&group=sso-1")
	mail.ok(a, "POST", "/cart?add=book")
	wiki.ok(b, "POST", "/login?user="+user+"&group=sso-1")
	old, wikiID := mail.sessionID(a), wiki.sessionID(b)
	listed(t, a.store, user, 2)          // in the per-user index, which a group logout reads
	loads(t, b.store, old, user, "book") // so that "gone" below means destroyed

	before := a.publishes.Load()
	mail.ok(a, "POST", "/renew")
	renewed := mail.sessionID(a)
	if renewed == "" || renewed == old {
		t.Fatal("Renew kept the id")
	}
	if n := a.publishes.Load() - before; n != 2 {
		t.Errorf("Renew published %d messages, want 2: the new session and the old id's destroy, nothing for the rest of the group", n)
	}
	// The renewing instance refuses the old id at once and still serves the group.
	if _, body := withCookie(t, a, "/me", old); !strings.Contains(body, `"principal":""`) {
		t.Errorf("the renewing instance still serves the old id: %s", body)
	}
	if _, body := withCookie(t, a, "/me", wikiID); !strings.Contains(body, user) {
		t.Errorf("renewing one session of the group ended another on the renewing instance: %s", body)
	}
	// Every other instance refuses the old id and keeps the rest of the group.
	gone(t, b.store, old)
	loads(t, b.store, renewed, user, "book")
	eventually(t, "the renewed session is stored in the group", func() (bool, string) {
		it := item(t, renewed)
		return it != nil && it.Group == "sso-1", fmt.Sprintf("%+v", it)
	})
	if m := wiki.me(b); m.Principal != user {
		t.Errorf("renewing one session of the group logged the other out on another instance: %+v", m)
	}
	if it := item(t, wikiID); it == nil || it.State != record.Active {
		t.Errorf("the group's other session in the table after a renewal: %+v, want active", it)
	}
	listed(t, b.store, user, 2)

	// A logout is still a logout of the group.
	mail.ok(a, "POST", "/logout")
	gone(t, b.store, renewed)
	gone(t, b.store, wikiID)
	if m := wiki.me(b); m.Principal != "" {
		t.Errorf("after a logout in the group, the other session is still served: %+v", m)
	}
	noLeak(t, []string{old, renewed, wikiID}, a.log, b.log)
}

// Renewing at MaxSessionsPerPrincipal replaces a session rather than adding one: the
// user's other sessions stay.
func TestRenewAtTheSessionCap(t *testing.T) {
	a := newInstance(t, "cap-renew-a", httpsession.Config{}, func(c *client.Config) { c.MaxSessionsPerPrincipal = 2 })
	user := "heidi-" + randomID()[:8]
	first, second := newBrowser(t, a), newBrowser(t, a)
	first.ok(a, "POST", "/login?user="+user)
	listed(t, a.store, user, 1)
	second.ok(a, "POST", "/login?user="+user)
	listed(t, a.store, user, 2)
	second.ok(a, "POST", "/renew")
	if m := first.me(a); m.Principal != user {
		t.Fatalf("renewing one session at the cap ended the user's other one: %+v", m)
	}
	if m := second.me(a); m.Principal != user {
		t.Fatalf("the renewed session: %+v", m)
	}
	listed(t, a.store, user, 2)
}
