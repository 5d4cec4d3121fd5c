package client_test

import (
	"context"
	"errors"
	"fmt"
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
