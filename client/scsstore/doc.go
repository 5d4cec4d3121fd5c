// Package scsstore is a session store for github.com/alexedwards/scs/v2 backed by
// sessionha, so that an existing scs application gets session failover by changing one
// line: every instance of the site reads every session, and a logout (Destroy) anywhere
// is a logout everywhere.
//
//	store, err := client.Open(ctx, cfg)          // cfg from client.ConfigFromEnv()
//	defer store.Close()
//
//	sessionManager := scs.New()
//	sessionManager.Store = scsstore.New(store)   // the one line
//	http.ListenAndServe(addr, sessionManager.LoadAndSave(mux))
//
// *Store implements scs.Store and scs.CtxStore (scs then passes each request's context).
// It does not implement scs.IterableStore: the table is not meant to be scanned.
//
// How scs's calls map onto the client:
//
//   - scs makes its own tokens (32 random bytes in base64url, the same form as sessionha
//     ids; with HashTokenInStore, their SHA-256 in the same form). Commit stores the
//     session under that token with client.Store.SaveAs, hashed like any id: the token
//     never leaves the process in clear. A token of any other form is refused.
//   - scs's encoded session data is one opaque attribute, Attr ("scs"). scs has no user,
//     so the session has no principal: it is not in the per-user index, and List,
//     Revoke, DestroyAll and MaxSessionsPerPrincipal leave it alone.
//   - scs gives Commit an absolute expiry. The session is stored as created now with
//     MaxLife = MaxIdle = expiry - now (whole seconds, rounded up), so it expires in the
//     table when scs says; scs's IdleTimeout and Lifetime work as with any store because
//     scs recomputes the expiry on every commit. A past expiry deletes the session, and a
//     commit racing a logout elsewhere is dropped: the logout wins.
//   - Find returns found=false, never an error, for a malformed token or a session that is
//     unknown, expired or destroyed; errors are for a store that does not answer.
//   - Delete (sessionManager.Destroy, RenewToken) destroys the session everywhere.
//
// Commit returns once the change is published; other instances read it once the site's
// sessionop function has applied it (well under a second on the local site), the same
// instance at once.
package scsstore
