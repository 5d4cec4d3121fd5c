package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sessionha/sessionha/client"
)

// The shortest working path. With persistence ha (the default) the configuration comes
// from the environment that `make local` writes to local/.run/site.env; this example
// keeps sessions in memory so that it runs anywhere.
func Example() {
	ctx := context.Background()
	store, err := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	s, err := store.Create(ctx, client.NewSession{Principal: "alice", MaxIdle: 30 * time.Minute, MaxLife: 8 * time.Hour})
	if err != nil {
		panic(err)
	}
	s.Set("cart", []byte(`["book"]`))
	if err := store.Save(ctx, s); err != nil {
		panic(err)
	}

	got, err := store.Load(ctx, s.ID()) // s.ID() is the cookie value
	if err != nil {
		panic(err)
	}
	cart, _ := got.Get("cart")
	fmt.Println(got.Principal(), string(cart))

	_ = store.Destroy(ctx, s.ID()) // logout
	_, err = store.Load(ctx, s.ID())
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// alice ["book"]
	// true
}

// An auth server configured from SESSIONHA_* variables, as written by `make local` in
// local/.run/site.env or by the CDK stack's outputs.
func ExampleConfigFromEnv() {
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		fmt.Println(err) // names the variable and the accepted values
		return
	}
	store, err := client.Open(context.Background(), cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	fmt.Println(store.Mode())
}

// Persistence file: a restarted process on the same host gets its sessions back. Here the
// "restart" is a second Store on the same directory.
func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sessions-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	cfg := client.Config{Persistence: client.PersistenceFile, Dir: dir}

	store, err := client.Open(ctx, cfg)
	if err != nil {
		panic(err)
	}
	s, err := store.Create(ctx, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"lang": []byte("en")}})
	if err != nil {
		panic(err)
	}
	store.Close()

	restarted, err := client.Open(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer restarted.Close()
	got, err := restarted.Load(ctx, s.ID())
	if err != nil {
		panic(err)
	}
	lang, _ := got.Get("lang")
	fmt.Println(got.Principal(), string(lang), restarted.Mode())
	// Output: alice en local
}

// An instance reacts when its sessions end elsewhere (a revoke by another instance, the
// per-user cap, an SSO group's logout), expire, or move to another instance.
func ExampleStore_OnLifecycle() {
	cfg, err := client.ConfigFromEnv() // with SESSIONHA_LIFECYCLE_TOPIC_ARN and persistence ha
	if err != nil {
		panic(err)
	}
	store, err := client.Open(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	perSession := map[string]string{} // the app's own state, by session handle
	var mu sync.Mutex
	remove := store.OnLifecycle(func(e client.LifecycleEvent) {
		switch e.Kind {
		case client.LifecycleDestroyed, client.LifecycleExpired:
			mu.Lock()
			delete(perSession, e.Handle) // e.Handle is client.Handle(s.ID())
			mu.Unlock()
			fmt.Println(e.Kind, e.Reason, "at", e.At)
		case client.LifecycleMoved:
			fmt.Println("now served by", e.By, "of site", e.BySite)
		}
	})
	defer remove()
}

// The failover knobs set in code rather than from SESSIONHA_* variables: sessions sent
// every 5 s, each once however often it changed, as deltas of the attributes that
// changed. Table and topic come from the stack's outputs.
func ExampleConfig() {
	ctx := context.Background()
	store, err := client.Open(ctx, client.Config{
		Table:         "sessionha-sessions",
		OpsTopicARN:   "arn:aws:sns:eu-west-1:123456789012:sessionha-eu-ops",
		InstanceID:    "auth-1",
		Frequency:     client.FrequencyTimeBased,
		FlushInterval: 5 * time.Second,
		Scope:         client.ScopeModifiedAttribute,
		MaxSessions:   50000,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close() // sends what the last interval holds
}

// Save sends what the scope says; a Session knows whether it changed since it was
// loaded or saved.
func ExampleStore_Save() {
	ctx := context.Background()
	store, _ := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory})
	defer store.Close()
	s, _ := store.Create(ctx, client.NewSession{Principal: "alice", Attrs: map[string][]byte{"lang": []byte("en")}})

	s.Set("lang", []byte("en")) // the value it has: no change
	fmt.Println(s.Modified())
	s.Set("lang", []byte("fr"))
	s.Delete("cart") // absent: no change
	fmt.Println(s.Modified())
	if err := store.Save(ctx, s); err != nil {
		fmt.Println(err)
	}
	fmt.Println(s.Modified())
	// Output:
	// false
	// true
	// false
}

// Load tells a session that is unknown, expired or destroyed by ErrNotFound (the three
// alike); any other error means the store could not answer.
func ExampleStore_Load() {
	ctx := context.Background()
	store, _ := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory})
	defer store.Close()

	cookie := "not-a-session-id"
	s, err := store.Load(ctx, cookie)
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("log in again")
	case err != nil:
		fmt.Println("try later:", err)
	default:
		fmt.Println("welcome back", s.Principal())
	}
	// Output: log in again
}

// Stats has amsessiondb's four counters and the ones failover adds.
func ExampleStore_Stats() {
	ctx := context.Background()
	store, _ := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory})
	defer store.Close()
	s, _ := store.Create(ctx, client.NewSession{Principal: "alice"})
	_, _ = store.Load(ctx, s.ID())
	_ = store.Destroy(ctx, s.ID())

	st := store.Stats()
	fmt.Printf("requests %d, reads %d, writes %d, deletes %d, cache hits %d, mode %s\n",
		st.Requests, st.Reads, st.Writes, st.Deletes, st.CacheHits, st.Mode)
	// Output: requests 3, reads 1, writes 1, deletes 1, cache hits 1, mode local
}
