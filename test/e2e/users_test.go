package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
)

// listed waits until List shows exactly want sessions for principal.
func listed(t *testing.T, s *client.Store, principal string, want int) []client.SessionInfo {
	t.Helper()
	var got []client.SessionInfo
	eventually(t, fmt.Sprintf("%s has %d sessions listed", principal, want), func() (bool, string) {
		var err error
		got, err = s.List(context.Background(), principal)
		return err == nil && len(got) == want, fmt.Sprintf("%d listed, err %v", len(got), err)
	})
	return got
}

// TestSessionsPerUser: list a user's sessions, revoke one, revoke all.
func TestSessionsPerUser(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "users-a-"+randomSuffix(), nil)
	b := openHA(t, "users-b-"+randomSuffix(), nil)
	user := "hank-" + randomSuffix()
	var ids []string
	for range 3 {
		s, err := a.Create(ctx, client.NewSession{Principal: user})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID())
	}
	list := listed(t, b, user, 3)
	for i, info := range list {
		if info.Handle != client.Handle(ids[i]) {
			t.Errorf("listed #%d is not the %d-th created (oldest first)", i, i)
		}
		if info.Handle == ids[i] {
			t.Error("List shows a session id")
		}
	}
	if err := b.Revoke(ctx, "someone-else", list[0].Handle); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("revoking another user's session: %v, want ErrNotFound", err)
	}
	if err := b.Revoke(ctx, user, list[0].Handle); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revoked session is gone on A", func() (bool, string) {
		_, err := a.Load(ctx, ids[0])
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
	listed(t, a, user, 2)
	n, err := a.DestroyAll(ctx, user)
	if err != nil || n != 2 {
		t.Fatalf("DestroyAll: %d, %v; want 2", n, err)
	}
	for _, id := range ids {
		eventually(t, "every session of the user is gone on B", func() (bool, string) {
			_, err := b.Load(ctx, id)
			return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
		})
	}
	listed(t, b, user, 0)
}

// TestSessionCap: with MaxSessionsPerPrincipal, the oldest session goes when a new one
// would exceed it.
func TestSessionCap(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "cap-a-"+randomSuffix(), func(c *client.Config) { c.MaxSessionsPerPrincipal = 2 })
	user := "ivy-" + randomSuffix()
	var ids []string
	for i := range 3 {
		s, err := a.Create(ctx, client.NewSession{Principal: user})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID())
		listed(t, a, user, min(i+1, 2)) // the index is eventually consistent: let it catch up
	}
	if _, err := a.Load(ctx, ids[0]); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("the oldest session survived the cap: %v", err)
	}
	for _, id := range ids[1:] {
		if _, err := a.Load(ctx, id); err != nil {
			t.Errorf("a session within the cap is gone: %v", err)
		}
	}
}

// TestSSOGroup: an explicit logout of one session of an SSO group ends the group; the
// user's other sessions stay, and a timeout of one member leaves the others alive.
func TestSSOGroup(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "sso-a-"+randomSuffix(), nil)
	user := "jack-" + randomSuffix()
	mk := func(group string, idle string) string {
		s, err := a.Create(ctx, client.NewSession{Principal: user, Group: group, MaxIdle: mustDuration(idle)})
		if err != nil {
			t.Fatal(err)
		}
		return s.ID()
	}
	mail, wiki, other := mk("sso-1", "30m"), mk("sso-1", "30m"), mk("", "30m")
	shortLived, survivor := mk("sso-2", "2s"), mk("sso-2", "30m")
	listed(t, a, user, 5)

	if err := a.Destroy(ctx, mail); err != nil {
		t.Fatal(err)
	}
	b := openHA(t, "sso-b-"+randomSuffix(), nil)
	eventually(t, "logging out of one member ends the whole group", func() (bool, string) {
		_, e1 := b.Load(ctx, mail)
		_, e2 := b.Load(ctx, wiki)
		return errors.Is(e1, client.ErrNotFound) && errors.Is(e2, client.ErrNotFound), fmt.Sprint(e1, e2)
	})
	if _, err := b.Load(ctx, other); err != nil {
		t.Errorf("a session outside the group was ended: %v", err)
	}
	eventually(t, "the short-lived member times out", func() (bool, string) {
		_, err := b.Load(ctx, shortLived)
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	})
	if _, err := b.Load(ctx, survivor); err != nil {
		t.Errorf("a timeout of one member ended the others: %v", err)
	}
}

func mustDuration(s string) (d time.Duration) {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}
