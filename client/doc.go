// Package client is the Go SDK that authentication servers import to keep their users'
// sessions failover-safe.
//
// An auth server creates a session at login, saves it after each request that changes
// it, loads it by the id in the user's cookie, and destroys it at logout. With
// persistence ha, every change is published on the site's ops topic (SNS), applied to the
// session table (DynamoDB) by the sessionop function, and so readable by every other
// instance: when the instance that created a session dies, the next one loads it by id
// and the user neither logs in again nor loses anything. A logout is final everywhere.
//
// The shortest path, against the local site that `make local` runs:
//
//	set -a; . local/.run/site.env; set +a; export SESSIONHA_INSTANCE_ID=auth-1
//
//	cfg, err := client.ConfigFromEnv()
//	store, err := client.Open(ctx, cfg)
//	defer store.Close()
//	s, err := store.Create(ctx, client.NewSession{Principal: "alice"})
//	s.Set("cart", []byte(`["book"]`))
//	err = store.Save(ctx, s)
//	got, err := store.Load(ctx, s.ID())    // on any instance
//	err = store.Destroy(ctx, s.ID())       // logout everywhere
//
// Session ids are 256 random bits (base64url). They never leave the client in clear:
// the table key and every message carry the cluster and the SHA-256 of the id.
//
// Load returns the newer of this instance's own copy (so an instance reads its own
// writes before they are applied) and the table's strongly consistent copy, and never an
// expired or destroyed session: errors.Is(err, ErrNotFound).
package client
