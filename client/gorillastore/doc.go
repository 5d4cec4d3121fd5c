// Package gorillastore is a github.com/gorilla/sessions Store backed by sessionha, so
// that an existing gorilla/sessions application gets session failover by changing the
// line that makes its store: every instance of the site reads every session, and a
// logout (MaxAge < 0) anywhere is a logout everywhere.
//
//	store, err := client.Open(ctx, cfg)          // cfg from client.ConfigFromEnv()
//	defer store.Close()
//	sessionStore, err := gorillastore.New(store, gorillastore.Config{}) // instead of sessions.NewCookieStore(key)
//
//	session, err := sessionStore.Get(r, "app")   // as with any gorilla store
//	session.Values["user"] = "alice"
//	err = session.Save(r, w)                     // published before it returns
//
//	session.Options.MaxAge = -1                  // logout, on every instance
//	err = session.Save(r, w)
//
// How gorilla's Store maps onto the client:
//
//   - The cookie holds the sessionha session id (256 random bits, base64url), nothing
//     else: the id is the credential, and it is hashed before it leaves the process. No
//     signing or encryption keys are needed, since nothing is stored in the cookie.
//     Session.ID is that id: a bearer credential, never to be logged.
//   - Values: every key must be a string, since it becomes the name of a session
//     attribute (1-128 bytes of UTF-8, at most 256 per session); any other key makes
//     Save fail with an error wrapping ErrKey, and nothing is saved. Each value is
//     encoded with encoding/gob, the codec gorilla's own stores use (through
//     securecookie), so that a value comes back as the type it was stored as: an int
//     stays an int, a struct the same struct, flashes a []interface{}. JSON would turn
//     numbers into float64 and structs into maps. As with gorilla's stores, a value of
//     your own type inside an interface needs gob.Register(T{}); an unregistered one
//     fails Save with an error wrapping ErrValue that names the key.
//   - Each key is an attribute of its own, so with Scope modified-attribute (client
//     Config) a Save sends only the keys the request set or deleted, and two requests
//     changing different keys of one session at once both keep their change. Other
//     scopes send the whole session, as every gorilla store does.
//   - MaxAge is the cookie's lifetime from each Save (gorilla's meaning), and so the
//     session's MaxIdle: MaxAge > 0 stores the session with MaxIdle = MaxAge and
//     MaxLife = max(Config.MaxLife, MaxAge) ("remember me" for 30 days outlives the
//     default 8 hours); MaxAge = 0 (the default: a browser-session cookie) uses
//     Config.MaxIdle and Config.MaxLife; MaxAge < 0 destroys the session everywhere
//     (a logout: tombstone and destroy notice) and clears the cookie. Limits are kept
//     with the session: a later request sees the MaxAge it was saved with, and a Save
//     with another MaxAge re-stores the session (same id) with the new limits.
//   - New (and Get, through gorilla's per-request registry) loads the session named by
//     the cookie. A cookie that names no session (malformed, unknown, expired or logged
//     out) gives a new, empty session and no error. A store that does not answer gives
//     a new session and the error (gorilla's contract: never a nil session).
//   - Save of a new session makes the id and stores it (client Store.SaveAs, with no
//     principal: gorilla knows no user, so the session stays out of the per-user index);
//     Save of a loaded one applies the request's changes to it (client Store.Save). A
//     session logged out on another instance between New and Save stays logged out: the
//     logout wins, the cookie is cleared, and Save returns nil.
//
// The cookie defaults are the secure ones httpsession uses: HttpOnly, Secure,
// SameSite=Lax, Path "/", host-only, no Max-Age; and the name is "__Host-" + the
// session name whenever the cookie qualifies (Secure, Path "/", no Domain), so that a
// sibling domain or plain http cannot set it. Config.Options replaces the defaults.
//
// Save returns once the change is published (web-method frequency); other instances
// read it once the site's sessionop function has applied it (well under a second on the
// local site), the same instance at once.
package gorillastore
