package record

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// TestLogoutItemIsFinal: once a session's logout item exists, reads see a tombstone
// whatever the session item says, and no op is merged: a save or delta turns a live
// session item (as last-writer-wins replication of another region's save leaves it) back
// into a tombstone, and makes the logout item last as long as the op's session could.
func TestLogoutItemIsFinal(t *testing.T) {
	ctx := context.Background()
	tb := &Table{DB: db, Name: "sessions", Grace: time.Minute, LogoutKeep: time.Minute}
	now := time.Now().UnixMilli()
	ver := func(n int) string { return Version(fmt.Sprintf("%016x", n), "w") }
	sess := func(life int64) *Item {
		return &Item{Principal: "p", Created: now, LastAccess: now, MaxIdle: 600, MaxLife: life, Site: "s", Writer: "w",
			Attrs: map[string][]byte{"a": []byte("v")}}
	}
	key := "c#final"
	mustApply := func(op Op) (Result, Stats) {
		t.Helper()
		res, st, err := tb.Apply(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		return res, st
	}
	read := func() Stored {
		t.Helper()
		s, err := tb.Read(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mustApply(Op{Kind: Create, Key: key, Version: ver(1), Session: sess(3600)})

	// The logout item alone, as an auth server writes it while the bus is down.
	d := Op{Kind: Destroy, Key: key, Version: ver(2), Until: now + 3600*1000, Reason: "logout", Site: "eu"}
	if res, err := tb.WriteLogout(ctx, d); err != nil || res != Written {
		t.Fatalf("WriteLogout: %v %v", res, err)
	}
	if res, err := tb.WriteLogout(ctx, d); err != nil || res != Unchanged {
		t.Fatalf("a second WriteLogout: %v %v, want Unchanged (insert-only)", res, err)
	}
	if _, err := tb.WriteLogout(ctx, Op{Kind: Save, Key: key}); err == nil {
		t.Fatal("WriteLogout of a save: no error")
	}
	s := read()
	if s.Session == nil || s.Session.State != Active || s.Logout == nil {
		t.Fatalf("after WriteLogout: %+v", s)
	}
	if it, err := tb.Get(ctx, key); err != nil || it.State != Destroyed || it.Key != key || it.Readable(time.Now()) ||
		it.Reason != "logout" || it.Site != "eu" || it.Writer != "w" || it.DestroyVersion != ver(2) {
		t.Fatalf("Get with a logout item beside a live session item: %+v %v, want a tombstone that tells its logout", it, err)
	}

	// A newer save, which lasts longer than the logout said: not merged; the session item
	// becomes a tombstone, and both items last as long as the save's session could.
	longer := sess(7200)
	res, st := mustApply(Op{Kind: Save, Key: key, Version: ver(3), Session: longer})
	if res != Written || st != (Stats{Reads: 1, Writes: 2}) {
		t.Fatalf("a save after the logout: %v %+v, want Written with one read and two writes", res, st)
	}
	s = read()
	end := (now + 7200*1000 + time.Minute.Milliseconds()) / 1000
	if s.Session.State != Destroyed || s.Session.ExpiresAt < end || s.Logout.ExpiresAt < end || s.Logout.Version != ver(2) {
		t.Fatalf("after a save that came after the logout: session %+v, logout %+v; want both destroyed until at least %d, the logout keeping its version", s.Session, s.Logout, end)
	}
	res, st = mustApply(Op{Kind: Delta, Key: key, Version: ver(4), Session: sess(3600), Set: map[string][]byte{"b": []byte("x")}})
	if res != Unchanged || st != (Stats{Reads: 1}) {
		t.Fatalf("a delta after the logout: %v %+v, want Unchanged, one read and no write", res, st)
	}

	// A live session item written over the tombstone, as another region's save that
	// last-writer-wins kept would leave it: reads still see the logout; the next op
	// makes it a tombstone again.
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(tb.Name),
		Item: Marshal(&Item{Key: key, Rev: 9, Version: ver(5), State: Active, Principal: "p", Created: now, LastAccess: now,
			MaxIdle: 600, MaxLife: 3600, ExpiresAt: end})}); err != nil {
		t.Fatal(err)
	}
	if it, err := tb.Get(ctx, key); err != nil || it.State != Destroyed || it.Version != ver(5) {
		t.Fatalf("Get of an overwritten tombstone beside its logout item: %+v %v, want a tombstone at the later version", it, err)
	}
	if res, _ := mustApply(Op{Kind: Save, Key: key, Version: ver(6), Session: sess(3600)}); res != Written {
		t.Fatalf("a save on a live item beside a logout item: %v, want Written (the tombstone back)", res)
	}
	if s = read(); s.Session.State != Destroyed || s.Session.Rev != 10 || s.Session.Reason != "logout" || s.Session.DestroyVersion != ver(2) {
		t.Fatalf("after that save the session item is %+v, want a tombstone that tells the logout item's destroy", s.Session)
	}
	// A destroy of a lower version (an operator's revoke that raced the logout) tells why
	// in both items, whatever the order they arrive in.
	revoke := Op{Kind: Destroy, Key: key, Version: Version(fmt.Sprintf("%016x", 2), "a"), Until: now, Reason: "revoked", Site: "us"}
	if res, _ := mustApply(revoke); res != Written {
		t.Fatalf("an earlier destroy after the logout: %v, want Written (its reason)", res)
	}
	if s = read(); s.Session.Reason != "revoked" || s.Logout.Reason != "revoked" || s.Logout.Site != "us" || s.Logout.Writer != "a" {
		t.Fatalf("after an earlier destroy: session %+v, logout %+v, want both to tell the revoke", s.Session, s.Logout)
	}

	// A destroy of a session nobody stored: both items, and a repeat writes nothing.
	res, st = mustApply(Op{Kind: Destroy, Key: "c#never", Version: ver(1), Until: now})
	if res != Written || st.Writes != 2 {
		t.Fatalf("destroy of an unknown session: %v %+v", res, st)
	}
	// A save of a session whose logout item alone is stored writes no session item.
	if _, err := tb.WriteLogout(ctx, Op{Kind: Destroy, Key: "c#alone", Version: ver(1), Until: now + 7200*1000}); err != nil {
		t.Fatal(err)
	}
	if res, st = mustApply(Op{Kind: Save, Key: "c#alone", Version: ver(2), Session: sess(3600)}); res != Unchanged || st.Writes != 0 {
		t.Fatalf("a save after a logout with no session item: %v %+v, want nothing written", res, st)
	}
	if s, err := tb.Read(ctx, "c#alone"); err != nil || s.Session != nil {
		t.Fatalf("a save after a logout with no session item stored %+v (%v)", s.Session, err)
	}
}

// TestLogoutKeep: a logout item lasts at least LogoutKeep (7 days by default), however
// soon its session ends, and its session's latest deadline plus the grace when later.
func TestLogoutKeep(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	for _, c := range []struct {
		key         string
		keep        time.Duration
		until       time.Time
		least, most time.Time
	}{
		{"c#keep-default", 0, start.Add(time.Hour), start.Add(DefaultLogoutKeep), time.Now().Add(DefaultLogoutKeep + 2*time.Second)},
		{"c#keep-short", time.Minute, start.Add(time.Hour), start.Add(time.Hour + DefaultGrace), start.Add(time.Hour + DefaultGrace + time.Second)},
		{"c#keep-long-life", 0, start.Add(30 * 24 * time.Hour), start.Add(30*24*time.Hour + DefaultGrace), start.Add(30*24*time.Hour + DefaultGrace + time.Second)},
	} {
		tb := &Table{DB: db, Name: "sessions", LogoutKeep: c.keep}
		for i, write := range []func(Op) error{
			func(op Op) error { _, _, err := tb.Apply(ctx, op); return err },
			func(op Op) error { _, err := tb.WriteLogout(ctx, op); return err },
		} {
			key := fmt.Sprintf("%s-%d", c.key, i)
			if err := write(Op{Kind: Destroy, Key: key, Version: Version("0000000000000001", "w"), Until: c.until.UnixMilli()}); err != nil {
				t.Fatal(err)
			}
			s, err := tb.Read(ctx, key)
			if err != nil || s.Logout == nil {
				t.Fatalf("%s: %+v %v", key, s, err)
			}
			if got := time.Unix(s.Logout.ExpiresAt, 0); got.Before(c.least.Truncate(time.Second)) || got.After(c.most) {
				t.Errorf("%s: logout item kept until %s from now, want between %s and %s", key, got.Sub(start), c.least.Sub(start), c.most.Sub(start))
			}
		}
	}
}

// TestLoggedOut: the logout items of a listing are found in batches of 100.
func TestLoggedOut(t *testing.T) {
	ctx := context.Background()
	tb := &Table{DB: db, Name: "sessions"}
	var keys []string
	want := map[string]bool{}
	for i := range 250 {
		k := fmt.Sprintf("c#listed-%d", i)
		keys = append(keys, k)
		if i%37 == 0 {
			want[k] = true
			if _, err := tb.WriteLogout(ctx, Op{Kind: Destroy, Key: k, Version: Version("0000000000000001", "w")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := tb.LoggedOut(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("LoggedOut: %v, want %v", got, want)
	}
	if got, err := tb.LoggedOut(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("LoggedOut of nothing: %v %v", got, err)
	}
}

// TestLogoutKey: a logout key is its session key and the suffix, and never a session key.
func TestLogoutKey(t *testing.T) {
	k := Key("default", "AAAA-_zz")
	if LogoutKey(k) != "default#AAAA-_zz#logout" || !IsLogoutKey(LogoutKey(k)) || IsLogoutKey(k) {
		t.Fatalf("LogoutKey(%q) = %q", k, LogoutKey(k))
	}
	if (Stored{}).Item() != nil {
		t.Fatal("Stored{}.Item() is not nil")
	}
}
