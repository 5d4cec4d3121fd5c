// Package browser drives the demo auth site in a real headless Chromium (Debian's
// chromium, through chromedp): log in, fill a cart, kill the instance that served the
// page, reload, and find the same user and cart on the other instance; list and revoke
// sessions; log out.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sessionha/sessionha/local/demo"
	"github.com/sessionha/sessionha/local/emulator"
	"github.com/sessionha/sessionha/local/localtest"
)

var theDemo *demo.Demo

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if _, err := exec.LookPath(chromium()); err != nil {
		fmt.Fprintf(os.Stderr, "browser tests need Chromium (%s): `make test` installs Debian's chromium; or apt-get install chromium\n", chromium())
		return 1
	}
	tmp, err := os.MkdirTemp("", "sessionha-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	ctx := context.Background()
	s, err := localtest.Site(ctx, tmp, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local site:", err)
		return 1
	}
	defer s.Stop()
	dir, err := emulator.LocalDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	theDemo, err = demo.Start(ctx, demo.Options{Addr: "127.0.0.1:0", Env: append(s.Env(), "SESSIONHA_JOURNAL_DIR="+filepath.Join(tmp, "journal")), ModuleRoot: filepath.Dir(dir),
		BinDir: filepath.Join(tmp, "bin"), RestartDelay: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start demo:", err)
		return 1
	}
	defer theDemo.Stop()
	return m.Run()
}

func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// newBrowser starts a headless Chromium with its own profile (a browser of its own,
// cookies included); it is stopped when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium()), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1000, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser actions with a deadline.
func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// try runs browser actions with a deadline and returns their error: for steps that may
// race a navigation still under way (a form just submitted), inside an eventually.
func try(ctx context.Context, actions ...chromedp.Action[chromedp.Void]) error {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return chromedp.Do(tctx, actions...)
}

// get runs one browser action that returns a value, with a deadline.
func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// count returns how many elements match the CSS selector sel.
func count(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	return get(t, ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}

// text returns the text of the first element matching sel, "" if there is none.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	if count(t, ctx, sel) == 0 {
		return ""
	}
	return strings.TrimSpace(get(t, ctx, chromedp.Text(chromedp.CSS(sel))))
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	localtest.Eventually(t, what, cond)
}

// submit clicks a form's button and waits for the page the form leads to: the old
// document is marked, and the wait ends when a document without the mark is complete.
func submit(t *testing.T, ctx context.Context, button string) {
	t.Helper()
	mark := func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](`window.__submitted = true`)(ctx, t)
		return chromedp.Void{}, err
	}
	do(t, ctx, mark, chromedp.Click(chromedp.CSS(button)))
	eventually(t, "the page after "+button, func() (bool, string) {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__submitted !== true && document.readyState === "complete"`))
		return err == nil && v, fmt.Sprint(err)
	})
}

func login(t *testing.T, ctx context.Context, user string) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(theDemo.URL()), chromedp.WaitVisible(chromedp.ID("user-input")),
		chromedp.SendKeys(chromedp.ID("user-input"), user))
	submit(t, ctx, "#login")
	if got := text(t, ctx, "#user"); got != user {
		t.Fatalf("after login the page shows user %q, want %q", got, user)
	}
}

func addToCart(t *testing.T, ctx context.Context, item string) {
	t.Helper()
	do(t, ctx, chromedp.SendKeys(chromedp.ID("item"), item))
	submit(t, ctx, "#add")
}

func TestFailoverInTheBrowser(t *testing.T) {
	b := newBrowser(t)
	login(t, b, "alice")
	addToCart(t, b, "book")
	addToCart(t, b, "lamp")
	if got := text(t, b, "#cart"); got != "book\nlamp" {
		t.Fatalf("cart shows %q, want book and lamp", got)
	}
	first := text(t, b, "#instance")
	pid := theDemo.PIDs()[first]
	if pid == 0 {
		t.Fatalf("instance %q that served the page is not running: %v", first, theDemo.PIDs())
	}

	submit(t, b, "#kill")
	// Reload until another instance answers: the same user and cart, and no login form.
	eventually(t, "after the kill a reload is served by the other instance", func() (bool, string) {
		if err := try(b, chromedp.Navigate(theDemo.URL()), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
			return false, err.Error()
		}
		return text(t, b, "#instance") != first, "served by " + text(t, b, "#instance")
	})
	if got := text(t, b, "#user"); got != "alice" {
		t.Fatalf("after failover the page shows user %q (login form: %v), want alice without a new login",
			got, text(t, b, "#login") != "")
	}
	if got := text(t, b, "#cart"); got != "book\nlamp" {
		t.Fatalf("after failover the cart shows %q, want book and lamp", got)
	}
	shot := get(t, b, chromedp.FullScreenshot(100))
	path := filepath.Join(t.ArtifactDir(), "after-failover.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot after failover: %s (%d bytes)", path, len(shot))

	// The killed instance comes back, and the session works on it too.
	eventually(t, "the killed instance is restarted", func() (bool, string) {
		p := theDemo.PIDs()[first]
		return p != 0 && p != pid, fmt.Sprint(theDemo.PIDs())
	})

	// Logout is a logout everywhere: the login form comes back, whichever instance serves.
	submit(t, b, "#logout")
	do(t, b, chromedp.Navigate(theDemo.URL()), chromedp.WaitReady(chromedp.CSS("body")))
	if text(t, b, "#user") != "" {
		t.Fatal("still signed in after logout")
	}
}

func TestSessionsPageRevokes(t *testing.T) {
	laptop, phone := newBrowser(t), newBrowser(t)
	login(t, laptop, "bob")
	login(t, phone, "bob")
	do(t, laptop, chromedp.Navigate(theDemo.URL()+"/sessions"), chromedp.WaitVisible(chromedp.ID("sessions")))
	eventually(t, "the sessions page lists both of bob's sessions", func() (bool, string) {
		if err := try(laptop, chromedp.Navigate(theDemo.URL()+"/sessions"), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
			return false, err.Error()
		}
		rows := count(t, laptop, "tr.session")
		return rows == 2, fmt.Sprintf("%d rows", rows)
	})
	// Revoke the other one (the phone's): the phone is logged out, the laptop is not.
	submit(t, laptop, "tr.session button")
	eventually(t, "the revoked phone session is logged out", func() (bool, string) {
		if err := try(phone, chromedp.Navigate(theDemo.URL()), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
			return false, err.Error()
		}
		return text(t, phone, "#user-input") != "" || text(t, phone, "#login") != "", "phone still shows " + text(t, phone, "#user")
	})
	do(t, laptop, chromedp.Navigate(theDemo.URL()), chromedp.WaitReady(chromedp.CSS("body")))
	if got := text(t, laptop, "#user"); got != "bob" {
		t.Fatalf("revoking the other session logged out this one too: %q", got)
	}
	// Revoke all: the laptop is logged out as well.
	do(t, laptop, chromedp.Navigate(theDemo.URL()+"/sessions"), chromedp.WaitVisible(chromedp.ID("revoke-all")))
	submit(t, laptop, "#revoke-all")
	eventually(t, "revoke all logs this browser out", func() (bool, string) {
		if err := try(laptop, chromedp.Navigate(theDemo.URL()), chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
			return false, err.Error()
		}
		return text(t, laptop, "#user") == "", "still " + text(t, laptop, "#user")
	})
}
