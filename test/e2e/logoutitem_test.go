package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
	"github.com/sessionha/sessionha/local/site"
)

// A logout that reaches a region by replication holds there whatever the session item
// says (issue 13): the session item can be live again, written over the tombstone by
// another region's later save (last writer wins), and reads and listings still refuse it.

// TestLogoutItemEndsALiveSessionItem: a session whose logout item is in the table, beside
// a session item that is still live (as replication leaves it when another region's save
// won over the tombstone), is refused by a direct Load and left out of List.
func TestLogoutItemEndsALiveSessionItem(t *testing.T) {
	ctx := context.Background()
	a := openHA(t, "lo-a-"+randomSuffix(), nil)
	b := openHA(t, "lo-b-"+randomSuffix(), func(c *client.Config) { c.Reads = client.ReadsAlways })
	user := "lena-" + randomSuffix()
	s, err := a.Create(ctx, client.NewSession{Principal: user})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := a.Create(ctx, client.NewSession{Principal: user})
	if err != nil {
		t.Fatal(err)
	}
	listed(t, b, user, 2)
	if _, err := b.Load(ctx, s.ID()); err != nil {
		t.Fatalf("the session before its logout item: %v", err)
	}
	// The logout item alone, as replication brings it from the region that logged out.
	tbl := &record.Table{DB: theSite.DynamoDBClient(), Name: theSite.Outputs.Table}
	key := record.Key("default", events.HashID(s.ID()))
	if _, err := tbl.WriteLogout(ctx, record.Op{Kind: record.Destroy, Key: key, Version: record.Version("0000000000000001", "elsewhere")}); err != nil {
		t.Fatal(err)
	}
	if st, err := tbl.Read(ctx, key); err != nil || st.Session == nil || st.Session.State != record.Active {
		t.Fatalf("the session item beside the logout item: %+v %v, want it live still", st.Session, err)
	}
	if _, err := b.Load(ctx, s.ID()); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a direct Load of a session with a logout item: %v, want ErrNotFound", err)
	}
	got, err := b.List(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Handle != client.Handle(kept.ID()) {
		t.Fatalf("List with one session logged out: %+v, want only the other one", got)
	}
}

// TestLogoutHoldsAcrossRegions runs two sites, each in its region with its
// replica of the table: a session of eu's is logged out in eu; with the link between the
// regions cut, an instance in us that has not heard of it saves the session, and us's
// sessionop applies that save (nothing there says otherwise yet). Once the link heals,
// last writer wins makes us's later save the session item in both regions, over eu's
// tombstone; the session stays refused by a direct Load in both, and a further save
// changes nothing of that.
func TestLogoutHoldsAcrossRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a two-region stack")
	}
	ctx := context.Background()
	st := twoRegions(t)
	eu, us := st.Sites[0], st.Sites[1]
	euRegion, usRegion := eu.AWS.Region, us.AWS.Region
	open := func(at *site.Site, name string, edit func(*client.Config)) *client.Store {
		t.Helper()
		return openAt(t, st, at, name, edit)
	}
	always := func(c *client.Config) { c.Reads = client.ReadsAlways }
	// The instance in us has not heard of the logout: no notices (they could reach it
	// while the table's replication is cut, and make it drop its copy).
	unaware := func(c *client.Config) { c.Reads, c.NoticeScope = client.ReadsAlways, client.NoticeOff }
	euApp, usApp := open(eu, "xr-eu-app", nil), open(us, "xr-us-app", unaware)
	euReader, usReader := open(eu, "xr-eu-reader", always), open(us, "xr-us-reader", always)
	table := func(at *site.Site) *record.Table {
		return &record.Table{DB: at.DynamoDBClient(), Name: at.Outputs.Table}
	}
	refused := func(r *client.Store, id string) (bool, string) {
		_, err := r.Load(ctx, id)
		return errors.Is(err, client.ErrNotFound), fmt.Sprint(err)
	}

	s, err := euApp.Create(ctx, client.NewSession{Principal: "xena", MaxIdle: 30 * time.Minute, MaxLife: 8 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	id, key := s.ID(), record.Key("default", events.HashID(s.ID()))
	var inUS *client.Session
	eventually(t, "the session reaches us by replication", func() (bool, string) {
		inUS, err = usApp.Load(ctx, id)
		return err == nil, fmt.Sprint(err)
	})

	if err := st.Replicator.Partition(euRegion, usRegion); err != nil {
		t.Fatal(err)
	}
	if err := euApp.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, "eu's table has the logout", func() (bool, string) { return refused(euReader, id) })
	inUS.Set("cart", []byte("after the logout"))
	if err := usApp.Save(ctx, inUS); err != nil {
		t.Fatal(err)
	}
	eventually(t, "us's sessionop applies the save, the link being cut", func() (bool, string) {
		got, err := table(us).Read(ctx, key)
		if err != nil || got.Session == nil {
			return false, fmt.Sprint(got.Session, err)
		}
		return got.Logout == nil && string(got.Session.Attrs["cart"]) == "after the logout", fmt.Sprintf("%+v", got)
	})
	if ok, why := refused(euReader, id); !ok {
		t.Fatalf("eu serves its logged-out session while the link is cut: %s", why)
	}

	if err := st.Replicator.Heal(euRegion, usRegion); err != nil {
		t.Fatal(err)
	}
	quiet, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.Replicator.Quiesce(quiet); err != nil {
		t.Fatal(err)
	}
	// What the design is for: us's later save won over eu's tombstone, in both regions.
	for _, at := range []*site.Site{eu, us} {
		got, err := table(at).Read(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Logout == nil {
			t.Fatalf("%s: no logout item after the heal", at.Topology.Site.Name)
		}
		if got.Session == nil || got.Session.State != record.Active || string(got.Session.Attrs["cart"]) != "after the logout" {
			t.Fatalf("%s: the session item after the heal is %+v; want us's save, written after eu's tombstone, to have won (last writer wins), which is what this test is about",
				at.Topology.Site.Name, got.Session)
		}
	}
	for _, r := range []*client.Store{euReader, usReader} {
		if ok, why := refused(r, id); !ok {
			t.Fatalf("a direct Load after the heal returns the logged-out session: %s", why)
		}
	}
	for _, r := range []*client.Store{euReader, usReader} {
		got, err := r.List(ctx, "xena")
		if err != nil || slices.ContainsFunc(got, func(i client.SessionInfo) bool { return i.Handle == client.Handle(id) }) {
			t.Fatalf("List after the heal: %+v %v, want the logged-out session left out", got, err)
		}
	}

	// And it stays so: a further save from us (the instance's copy) is not merged; the
	// session item becomes a tombstone again, in both regions.
	inUS.Set("cart", []byte("still trying"))
	if err := usApp.Save(ctx, inUS); err != nil && !errors.Is(err, client.ErrNotFound) {
		t.Fatal(err)
	}
	eventually(t, "both regions hold the tombstone again", func() (bool, string) {
		for _, at := range []*site.Site{eu, us} {
			got, err := table(at).Read(ctx, key)
			if err != nil || got.Session == nil || got.Session.State != record.Destroyed || got.Logout == nil {
				return false, fmt.Sprintf("%s: %+v %v", at.Topology.Site.Name, got, err)
			}
		}
		return true, ""
	})
	quiet, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.Replicator.Quiesce(quiet); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*client.Store{euReader, usReader} {
		if ok, why := refused(r, id); !ok {
			t.Fatalf("a direct Load returns the logged-out session: %s", why)
		}
	}
}
