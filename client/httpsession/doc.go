// Package httpsession is net/http middleware that keeps an auth server's sessions in a
// sessionha store, so that any instance of the site serves any user: when the instance
// that logged a user in dies, the next one loads the session by the cookie, and the user
// neither logs in again nor loses what the session held.
//
// The shortest working path:
//
//	store, err := client.Open(ctx, cfg)           // cfg from client.ConfigFromEnv()
//	defer store.Close()
//	sessions, err := httpsession.New(store, httpsession.Config{}) // secure defaults
//
//	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
//		// ... check the credentials, then:
//		if _, err := sessions.Login(w, r, "alice", client.NewSession{}); err != nil { ... }
//	})
//	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
//		s := httpsession.FromContext(r.Context()) // nil: not logged in
//		if s == nil { http.Error(w, "log in first", http.StatusUnauthorized); return }
//		s.Set("cart", []byte(`["book"]`))           // saved before the response begins
//	})
//	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
//		err := sessions.Logout(w, r)              // destroyed everywhere, cookie cleared
//	})
//	http.ListenAndServeTLS(addr, cert, key, sessions.Handler(mux))
//
// What Handler does on each request:
//
//   - It loads the session named by the cookie. A cookie whose session is unknown,
//     expired or destroyed gives no session, and the response clears it. A store that
//     does not answer gives 503 (Config.OnError), not a logged-out user.
//   - It saves the session only if the request changed it (web-method frequency, with
//     Session.Modified), or if half its MaxIdle has passed since its last save (so that
//     reading keeps a session alive). A request that only reads publishes nothing.
//   - It saves before the first byte of the response: the ResponseWriter is wrapped, and
//     the first WriteHeader, Write or Flush saves, then lets the response through. So a
//     save error can still become an error response, and when the browser sees the
//     response the change is on the bus, readable by every instance once applied. The
//     wrapper supports http.Flusher, io.ReaderFrom and Unwrap for
//     http.ResponseController.
//
// Login, Renew and Logout defend the session id: Login and Renew always make a new id
// and end the old one everywhere (session fixation) while the rest of its SSO group
// stays; Logout destroys the session everywhere, and with it its SSO group. Call them
// before writing the response, since they set the cookie.
//
// The cookie is by default named "__Host-sessionha", Secure, HttpOnly, SameSite=Lax,
// Path=/, host-only, and lives as long as the browser session; the session's MaxIdle and
// MaxLife bound it on the server. Without Secure (Config.DisableSecure, for plain-http
// development) it is named "sessionha", since browsers refuse a __Host- cookie that is
// not Secure.
//
// The session id is a bearer credential: this package never logs it, nor any cookie.
//
// A session Login made is visible to other instances once the site's sessionop
// function has applied it (well under a second on the local site); until then another
// instance finds no session for the cookie and clears it. Behind a load balancer, keep
// a user on one instance while it lives (sticky sessions) and let failover move them.
package httpsession
