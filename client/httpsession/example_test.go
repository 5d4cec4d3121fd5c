package httpsession_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/httpsession"
)

// The shortest working path: a store, a Manager with the secure defaults, Login, a
// handler that changes the session, and one that reads it. With persistence ha (the
// default, configured by client.ConfigFromEnv from local/.run/site.env or the CDK
// outputs) every instance of the site sees the same sessions; this example keeps them in
// memory so that it runs anywhere.
func Example() {
	ctx := context.Background()
	store, err := client.Open(ctx, client.Config{Persistence: client.PersistenceMemory})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	sessions, err := httpsession.New(store, httpsession.Config{})
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// ... check the user's credentials, then:
		if _, err := sessions.Login(w, r, "alice", client.NewSession{}); err != nil {
			http.Error(w, "try again", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "welcome")
	})
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		s := httpsession.FromContext(r.Context())
		if s == nil {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		s.Set("cart", []byte(`["book"]`)) // saved before the response begins
		fmt.Fprint(w, "added")
	})
	mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		s := httpsession.FromContext(r.Context())
		if s == nil {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		cart, _ := s.Get("cart")
		fmt.Fprintf(w, "%s: %s", s.Principal(), cart)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = sessions.Logout(w, r) // destroyed everywhere, cookie cleared
		fmt.Fprint(w, "bye")
	})

	// The default cookie is __Host-sessionha: Secure, so serve https.
	srv := httptest.NewTLSServer(sessions.Handler(mux))
	defer srv.Close()
	browser := srv.Client()
	browser.Jar, _ = cookiejar.New(nil)

	get := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := browser.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(method, path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	get("POST", "/login")
	get("POST", "/cart")
	get("GET", "/cart")
	get("POST", "/logout")
	get("GET", "/cart")
	// Output:
	// POST /login 200 welcome
	// POST /cart 200 added
	// GET /cart 200 alice: ["book"]
	// POST /logout 200 bye
	// GET /cart 401 log in first
}
