// Command authserver is a stand-in auth server instance for the end-to-end tests: a
// separate OS process that uses the client exactly as an auth server would, configured
// from SESSIONHA_* variables, driven by one JSON command per line on stdin and answering
// one JSON line per command on stdout. The tests SIGKILL it to fail it over.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sessionha/sessionha/client"
	_ "github.com/sessionha/sessionha/client/kmskeys" // tests that seal give it SESSIONHA_SEAL_KMS_KEYS
)

// Command is one request from the test.
type Command struct {
	Cmd       string            `json:"cmd"` // create, load, set, delete, destroy, stats
	ID        string            `json:"id,omitempty"`
	Principal string            `json:"principal,omitempty"`
	MaxIdle   string            `json:"maxIdle,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"` // create: initial; set: to set
	Name      string            `json:"name,omitempty"`
}

// Reply is the answer to one command.
type Reply struct {
	OK        bool              `json:"ok"`
	Err       string            `json:"err,omitempty"`
	NotFound  bool              `json:"notFound,omitempty"`
	ID        string            `json:"id,omitempty"`
	Principal string            `json:"principal,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"`
	Mode      string            `json:"mode,omitempty"`
	// stats: the store's counters the tests read.
	Notices     int64 `json:"notices,omitempty"`
	BusQueries  int64 `json:"busQueries,omitempty"`
	BusTimeouts int64 `json:"busTimeouts,omitempty"`
}

func main() {
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authserver:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	store, err := client.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authserver:", err)
		os.Exit(2)
	}
	defer store.Close()
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	_ = out.Encode(Reply{OK: true, Mode: store.Mode().String()}) // ready
	for in.Scan() {
		var c Command
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			_ = out.Encode(Reply{Err: err.Error()})
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		r := do(cctx, store, c)
		cancel()
		r.Mode = store.Mode().String()
		_ = out.Encode(r)
	}
}

func do(ctx context.Context, store *client.Store, c Command) Reply {
	fail := func(err error) Reply {
		return Reply{Err: err.Error(), NotFound: errors.Is(err, client.ErrNotFound)}
	}
	switch c.Cmd {
	case "create":
		n := client.NewSession{Principal: c.Principal, Attrs: map[string][]byte{}}
		if c.MaxIdle != "" {
			d, err := time.ParseDuration(c.MaxIdle)
			if err != nil {
				return fail(err)
			}
			n.MaxIdle = d
		}
		for k, v := range c.Attrs {
			n.Attrs[k] = []byte(v)
		}
		s, err := store.Create(ctx, n)
		if err != nil {
			return fail(err)
		}
		return describe(s)
	case "load":
		s, err := store.Load(ctx, c.ID)
		if err != nil {
			return fail(err)
		}
		return describe(s)
	case "set", "delete":
		s, err := store.Load(ctx, c.ID)
		if err != nil {
			return fail(err)
		}
		if c.Cmd == "delete" {
			s.Delete(c.Name)
		}
		for k, v := range c.Attrs {
			s.Set(k, []byte(v))
		}
		if err := store.Save(ctx, s); err != nil {
			return fail(err)
		}
		return describe(s)
	case "destroy":
		if err := store.Destroy(ctx, c.ID); err != nil {
			return fail(err)
		}
		return Reply{OK: true}
	case "stats":
		st := store.Stats()
		return Reply{OK: true, Notices: st.Notices, BusQueries: st.BusQueries, BusTimeouts: st.BusTimeouts}
	}
	return Reply{Err: fmt.Sprintf("unknown command %q", c.Cmd)}
}

func describe(s *client.Session) Reply {
	r := Reply{OK: true, ID: s.ID(), Principal: s.Principal(), Attrs: map[string]string{}}
	for _, n := range s.Names() {
		v, _ := s.Get(n)
		r.Attrs[n] = string(v)
	}
	return r
}
