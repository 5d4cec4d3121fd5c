// Command authserver is the demo auth server that `make local` runs twice behind the
// demo's sticky proxy: a login page, a cart kept in the session, a button that kills the
// serving instance (SIGKILL, as a crash) and a page listing the user's sessions. It uses
// client/httpsession exactly as a real auth server would, configured from the site's
// SESSIONHA_* environment. Passwords are not checked: it is a demo of sessions.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/httpsession"
	_ "github.com/sessionha/sessionha/client/kmskeys" // SESSIONHA_SEAL_KMS_KEYS: the local site's env seals values
)

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Parse(pageHTML))

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "`address` to listen on (127.0.0.1 only)")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(*addr, log); err != nil {
		fmt.Fprintln(os.Stderr, "authserver:", err)
		os.Exit(1)
	}
}

type server struct {
	name  string
	store *client.Store
	mgr   *httpsession.Manager
	log   *slog.Logger
}

func run(addr string, log *slog.Logger) error {
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		return fmt.Errorf("-addr %q: want 127.0.0.1:PORT", addr)
	}
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, err := client.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	// Plain HTTP on loopback: a Secure cookie would never come back.
	mgr, err := httpsession.New(store, httpsession.Config{DisableSecure: true, Logger: log})
	if err != nil {
		return err
	}
	s := &server{name: cfg.InstanceID, store: store, mgr: mgr, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /cart", s.addToCart)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("POST /kill", s.kill)
	mux.HandleFunc("GET /sessions", s.sessions)
	mux.HandleFunc("POST /sessions/revoke", s.revoke)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, s.name, store.Mode()) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mgr.Handler(mux), ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Printf("authserver %s listening on %s\n", s.name, ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type view struct {
	Instance string
	User     string
	Cart     []string
	Sessions []client.SessionInfo
	Current  string // handle of this request's session
	Message  string
}

func (s *server) render(w http.ResponseWriter, r *http.Request, v view) {
	v.Instance = s.name
	if sess := httpsession.FromContext(r.Context()); sess != nil {
		v.User = sess.Principal()
		if c, ok := sess.Get("cart"); ok && len(c) > 0 {
			v.Cart = strings.Split(string(c), "\n")
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := page.Execute(w, v); err != nil {
		s.log.Error("render", "reason", err.Error())
	}
}

func (s *server) home(w http.ResponseWriter, r *http.Request) { s.render(w, r, view{}) }

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	user := strings.TrimSpace(r.FormValue("user"))
	if user == "" || len(user) > 64 {
		s.render(w, r, view{Message: "Enter a user name (1-64 characters)."})
		return
	}
	if _, err := s.mgr.Login(w, r, user, client.NewSession{MaxIdle: 30 * time.Minute, MaxLife: 8 * time.Hour}); err != nil {
		http.Error(w, "login failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) addToCart(w http.ResponseWriter, r *http.Request) {
	sess := httpsession.FromContext(r.Context())
	item := strings.TrimSpace(r.FormValue("item"))
	if sess == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if item != "" && len(item) <= 64 && !strings.Contains(item, "\n") {
		cart, _ := sess.Get("cart")
		if len(cart) > 0 {
			cart = append(cart, '\n')
		}
		sess.Set("cart", append(cart, item...)) // saved by the middleware before the redirect
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.mgr.Logout(w, r); err != nil {
		http.Error(w, "logout failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// kill ends this instance as a crash would, after answering: the supervisor restarts it.
func (s *server) kill(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/", http.StatusSeeOther)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // let the answer leave
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}()
}

func (s *server) sessions(w http.ResponseWriter, r *http.Request) {
	sess := httpsession.FromContext(r.Context())
	if sess == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	list, err := s.store.List(r.Context(), sess.Principal())
	if err != nil {
		http.Error(w, "list sessions: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.render(w, r, view{Sessions: list, Current: client.Handle(sess.ID())})
}

func (s *server) revoke(w http.ResponseWriter, r *http.Request) {
	sess := httpsession.FromContext(r.Context())
	if sess == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	var err error
	if h := r.FormValue("handle"); h == "all" {
		_, err = s.store.DestroyAll(r.Context(), sess.Principal())
	} else {
		err = s.store.Revoke(r.Context(), sess.Principal(), h)
	}
	if err != nil {
		http.Error(w, "revoke: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, "/sessions", http.StatusSeeOther)
}
