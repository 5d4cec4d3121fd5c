package scsstore_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/scsstore"
)

// An existing scs application gets failover by changing one line: its session
// manager's Store. With persistence ha (the default, configured by
// client.ConfigFromEnv from local/.run/site.env or the CDK outputs) every instance of the
// site then reads every session; this example keeps them in memory so that it runs
// anywhere.
func Example() {
	store, err := client.Open(context.Background(), client.Config{Persistence: client.PersistenceMemory})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	sessionManager := scs.New()
	sessionManager.Store = scsstore.New(store) // the one line

	mux := http.NewServeMux()
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		sessionManager.Put(r.Context(), "message", "hello from a failover-safe session")
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sessionManager.GetString(r.Context(), "message"))
	})
	srv := httptest.NewServer(sessionManager.LoadAndSave(mux))
	defer srv.Close()

	browser := &http.Client{}
	browser.Jar, _ = cookiejar.New(nil)
	put, err := browser.Post(srv.URL+"/put", "", nil)
	if err != nil {
		panic(err)
	}
	put.Body.Close()
	resp, err := browser.Get(srv.URL + "/get")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: hello from a failover-safe session
}
