package gorillastore_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/gorillastore"
)

// An existing gorilla/sessions application gets failover by changing the line that makes
// its store. With persistence ha (the default, configured by client.ConfigFromEnv from
// local/.run/site.env or the CDK outputs) every instance of the site then reads every
// session; this example keeps them in memory so that it runs anywhere. The cookie is
// Secure by default, hence https.
func Example() {
	store, err := client.Open(context.Background(), client.Config{Persistence: client.PersistenceMemory})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	sessionStore, err := gorillastore.New(store, gorillastore.Config{}) // was: sessions.NewCookieStore(key)
	if err != nil {
		panic(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		session, _ := sessionStore.Get(r, "app")
		session.Values["user"] = "alice"
		session.Values["visits"] = 1
		if err := session.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		session, _ := sessionStore.Get(r, "app")
		fmt.Fprintf(w, "hello %v, visit %d", session.Values["user"], session.Values["visits"].(int))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		session, _ := sessionStore.Get(r, "app")
		session.Options.MaxAge = -1 // ends the session on every instance
		if err := session.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	browser := srv.Client()
	browser.Jar, _ = cookiejar.New(nil)
	get := func(method, path string) string {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := browser.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	get("POST", "/login")
	fmt.Println(get("GET", "/hello"))
	get("POST", "/logout")
	fmt.Println(len(browser.Jar.Cookies(must(srv.URL))), "cookies after logout")
	// Output:
	// hello alice, visit 1
	// 0 cookies after logout
}

func must(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}
