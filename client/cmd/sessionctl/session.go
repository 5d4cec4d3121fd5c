package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

func init() {
	commands = append(commands, &command{
		name: "get", args: "ID|- [--values] [--cluster NAME]",
		summary: "show a session: principal, times, state, attribute names and sizes",
		help: `
Shows what the table holds for a session: its state (active, expired, destroyed, or
pending: changes whose create has not arrived), principal, SSO group, created, last
access, expiry, origin site, last writer, and its attributes' names and sizes; and its
logout item, if it has one (a logout is final whatever the session item says: another
region's save may have overwritten the tombstone, last writer winning). It reads the
table directly (a strongly consistent read of both items), so it shows expired and
destroyed sessions too, which no client read returns.

The id is never printed. Attribute values are printed only with --values (quoted as Go
strings; they may be secrets). A sealed value shows the id of the key that sealed it;
with --values it is opened with the keyring the environment configures (SESSIONHA_SEAL_*),
or the line says why it cannot be: no keyring, a key the keyring lacks, or a value
changed since it was sealed. Pass - to read the id from stdin. Exit status 1 when the
table has no item for the id.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			values := fs.Bool("values", false, "print the attribute values too")
			cluster := fs.String("cluster", "", "the session's cluster `NAME` (default SESSIONHA_CLUSTER, else default)")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := a.idArg("get", args)
				if err != nil {
					return err
				}
				return a.get(ctx, id, *cluster, *values)
			}
		},
	}, &command{
		name: "destroy", args: "ID|- [--wait DURATION] [--cluster NAME]",
		summary: "log a session out everywhere, as a logout does",
		help: `
Destroys a session through the client library, as an auth server's logout does: a
tombstone op on the ops topic (final: nothing brings the session back). Then it waits until the tombstone is in the table (--wait, default 30s; 0 does
not wait). Destroying an unknown id is not an error. Pass - to read the id from stdin.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			wait := fs.Duration("wait", 30*time.Second, "how long to wait for the tombstone to be applied (0: do not wait)")
			cluster := fs.String("cluster", "", "the session's cluster `NAME` (default SESSIONHA_CLUSTER, else default)")
			return func(ctx context.Context, a *app, args []string) error {
				id, err := a.idArg("destroy", args)
				if err != nil {
					return err
				}
				return a.destroy(ctx, id, *cluster, *wait)
			}
		},
	}, &command{
		name: "list", args: "--principal P [--cluster NAME]",
		summary: "list a user's live sessions",
		help: `
Lists the live sessions of principal P in the cluster, oldest first (the client library's
List, which reads the table's byPrincipal index): each session's handle (its hashed id,
which names it without being a credential: revoke --handle takes it), created, last
access, expiry, site of its last writer and SSO group. The index lags writes by about a
second: a session created or ended a moment ago may be missing or still listed.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			principal := fs.String("principal", "", "the user `P` whose sessions to list (required)")
			cluster := fs.String("cluster", "", "the cluster `NAME` (default SESSIONHA_CLUSTER, else default)")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("list takes no arguments, got %q (the user goes in --principal)", args[0])
				}
				if *principal == "" {
					return usagef("list: --principal P is required")
				}
				return a.list(ctx, *principal, *cluster)
			}
		},
	}, &command{
		name: "revoke", args: "--principal P [--handle H] [--yes] [--wait DURATION] [--cluster NAME]",
		summary: "log every session of a user out, or one by its handle",
		help: `
Destroys every live session of principal P in the cluster (the client library's
DestroyAll: for each, the tombstone op and the destroy notice a logout publishes), or with
--handle only the session that list shows with that handle (Revoke). Then it waits until
the tombstones are in the table (--wait, default 30s; 0 does not wait). From a terminal it
wants --yes.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			principal := fs.String("principal", "", "the user `P` whose sessions to destroy (required)")
			handle := fs.String("handle", "", "destroy only the session with handle `H` (from list)")
			cluster := fs.String("cluster", "", "the cluster `NAME` (default SESSIONHA_CLUSTER, else default)")
			yes := fs.Bool("yes", false, "do it without asking (needed when stdin is a terminal)")
			wait := fs.Duration("wait", 30*time.Second, "how long to wait for the tombstones to be applied (0: do not wait)")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("revoke takes no arguments, got %q (the user goes in --principal)", args[0])
				}
				if *principal == "" {
					return usagef("revoke: --principal P is required")
				}
				return a.revoke(ctx, *principal, *handle, *cluster, *yes, *wait)
			}
		},
	})
}

// validID reports whether id has the form of the client's ids: 32 bytes, base64url.
func validID(id string) bool {
	if len(id) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(b) == 32
}

// stamp prints a time with how long ago or ahead it is.
func stamp(t, now time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	rel := "now"
	switch {
	case d > 0:
		rel = "in " + d.String()
	case d < 0:
		rel = (-d).String() + " ago"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST") + " (" + rel + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) get(ctx context.Context, id, cluster string, values bool) error {
	cluster, table, err := clusterTable(cluster)
	if err != nil {
		return err
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	tb := &record.Table{DB: c.dynamodb(), Name: table}
	stored, err := tb.Read(ctx, record.Key(cluster, events.HashID(id)))
	if err != nil {
		return explain(err, "get")
	}
	it := stored.Session
	if it == nil && stored.Logout == nil {
		return fmt.Errorf("get: table %s has no session with this id in cluster %s (never stored there, or deleted by TTL since)", table, cluster)
	}
	now := a.now()
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	state := "none"
	switch {
	case it == nil:
	case it.State == record.Active && !it.Readable(now):
		state = "expired (no read returns it; TTL deletes it later)"
	case it.State == record.Pending:
		state = "pending (changes whose create has not arrived: no read returns it)"
	case it.State == record.Destroyed:
		state = "destroyed (a tombstone: final)"
	default:
		state = string(it.State)
	}
	row("cluster", cluster)
	if lo := stored.Logout; lo != nil {
		row("state", "logged out (its logout item: final, whatever the session item says)")
		row("logout item kept until", stamp(time.Unix(lo.ExpiresAt, 0), now))
		row("logout version", lo.Version)
		row("session item", state)
		if it == nil {
			return nil
		}
	} else {
		row("state", state)
	}
	if it.State == record.Destroyed {
		row("tombstone kept until", stamp(time.Unix(it.ExpiresAt, 0), now))
		row("version", it.Version)
		return nil
	}
	row("principal", it.Principal)
	row("group", orDash(it.Group))
	row("created", stamp(time.UnixMilli(it.Created), now))
	row("last access", stamp(time.UnixMilli(it.LastAccess), now))
	row("max idle", (time.Duration(it.MaxIdle) * time.Second).String())
	row("max life", (time.Duration(it.MaxLife) * time.Second).String())
	row("expires", stamp(it.Deadline(), now))
	row("site", orDash(it.Site))
	row("writer", orDash(it.Writer))
	row("version", it.Version)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range it.Attrs {
			if !yield(n) {
				return
			}
		}
	})
	size := 0
	for _, n := range names {
		size += len(it.Attrs[n])
	}
	row("attributes", fmt.Sprintf("%d (%d bytes of values)", len(names), size))
	var (
		ring    *client.Keyring
		ringErr error
	)
	if values {
		ring, ringErr = keyring(ctx) // seal.go
		if ringErr == nil && ring == nil {
			ringErr = errors.New("set SESSIONHA_SEAL_KEYS, SESSIONHA_SEAL_KEY_FILE or SESSIONHA_SEAL_KMS_KEYS")
		}
	}
	for _, n := range names {
		v := it.Attrs[n]
		sealedBy, shown := showStored(ring, ringErr, cluster, id, n, v, values)
		line := fmt.Sprintf("%d bytes%s", len(v), sealedBy)
		if values {
			line += "\t" + shown
		}
		row("  "+printable(n), line)
	}
	return nil
}

// printable escapes what a terminal would interpret in an attribute name.
func printable(name string) string {
	q := strconv.Quote(name)
	return q[1 : len(q)-1]
}

// showValue quotes a value: as a Go string if it is text, else as base64.
func showValue(v []byte) string {
	if utf8.Valid(v) {
		return strconv.Quote(string(v))
	}
	return "base64:" + base64.StdEncoding.EncodeToString(v)
}

// openStore opens the client library as an auth server would, for the cluster. With
// notices false it neither publishes nor takes destroy notices, so that it makes no queue
// of its own. A store with notices makes one at Open; without SESSIONHA_INSTANCE_ID the
// client makes the instance id up, and then removes the queue at Close (no later run has
// that id), rather than leave one per run for the sweep.
func (a *app) openStore(ctx context.Context, cluster string, notices bool) (*client.Store, error) {
	cfg, err := client.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.Cluster = cluster
	cfg.ReadPath = client.ReadDirect // sessionctl reads the table itself
	// It destroys and lists, which carry no attribute value: no keyring, so that an
	// operator's role needs no kms:Decrypt for it (get --values opens values itself).
	cfg.Keyring, cfg.KeyringSource, cfg.SealWith = nil, nil, ""
	if !notices {
		cfg.NoticeScope = client.NoticeOff
	}
	cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if cfg.Persistence != "" && cfg.Persistence != client.PersistenceHA {
		return nil, fmt.Errorf("SESSIONHA_PERSISTENCE=%s: sessionctl works on the shared store (ha) only", cfg.Persistence)
	}
	s, err := client.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open the session store: %w\n  %s", err, configHint)
	}
	return s, nil
}

func (a *app) destroy(ctx context.Context, id, cluster string, wait time.Duration) error {
	cluster, table, err := clusterTable(cluster)
	if err != nil {
		return err
	}
	store, err := a.openStore(ctx, cluster, true)
	if err != nil {
		return err
	}
	err = store.Destroy(ctx, id)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return explain(err, "destroy")
	}
	if wait <= 0 {
		fmt.Fprintln(a.stdout, "destroy published: the session's tombstone applies within seconds")
		return nil
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	left, err := waitDestroyed(ctx, &record.Table{DB: c.dynamodb(), Name: table}, []string{record.Key(cluster, events.HashID(id))}, wait)
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("destroy published, but the tombstone is not in the table after %s: is sessionop running? See sessionctl dlq list", wait)
	}
	fmt.Fprintln(a.stdout, "session destroyed: its tombstone is in the table, and no instance returns it")
	return nil
}

// waitDestroyed polls the table until every key is a tombstone or wait has passed, and
// returns how many are not.
func waitDestroyed(ctx context.Context, tb *record.Table, keys []string, wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	left := slices.Clone(keys)
	for {
		var still []string
		for _, k := range left {
			it, err := tb.Get(ctx, k)
			if err != nil {
				return len(left), explain(err, "read the table")
			}
			if it == nil || it.State != record.Destroyed {
				still = append(still, k)
			}
		}
		left = still
		if len(left) == 0 || time.Now().After(deadline) {
			return len(left), nil
		}
		select {
		case <-ctx.Done():
			return len(left), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *app) list(ctx context.Context, principal, cluster string) error {
	cluster, _, err := clusterTable(cluster)
	if err != nil {
		return err
	}
	store, err := a.openStore(ctx, cluster, false)
	if err != nil {
		return err
	}
	defer store.Close()
	sessions, err := store.List(ctx, principal)
	if err != nil {
		return explain(err, "list")
	}
	now := a.now()
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HANDLE\tCREATED\tLAST ACCESS\tEXPIRES\tSITE\tGROUP")
	for _, s := range sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Handle, stamp(s.Created, now), stamp(s.LastAccess, now), stamp(s.ExpiresAt, now), orDash(s.Site), orDash(s.Group))
	}
	w.Flush()
	fmt.Fprintf(a.stdout, "%d live sessions of %s in cluster %s\n", len(sessions), principal, cluster)
	return nil
}

func (a *app) revoke(ctx context.Context, principal, handle, cluster string, yes bool, wait time.Duration) error {
	cluster, table, err := clusterTable(cluster)
	if err != nil {
		return err
	}
	if a.stdinTTY && !yes {
		what := "every session"
		if handle != "" {
			what = "a session"
		}
		return usagef("revoke logs %s out of %s in cluster %s: run it again with --yes", principal, what, cluster)
	}
	store, err := a.openStore(ctx, cluster, true)
	if err != nil {
		return err
	}
	// The sessions to wait for: what the index lists now.
	listed, err := store.List(ctx, principal)
	if err != nil {
		store.Close()
		return explain(err, "revoke")
	}
	var keys []string
	for _, s := range listed {
		if handle == "" || s.Handle == handle {
			keys = append(keys, record.Key(cluster, s.Handle))
		}
	}
	n := 1
	if handle == "" {
		n, err = store.DestroyAll(ctx, principal)
	} else {
		err = store.Revoke(ctx, principal, handle)
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, client.ErrNotFound):
		return fmt.Errorf("revoke: %s has no live session with that handle in cluster %s (see sessionctl list --principal)", principal, cluster)
	case err != nil:
		return fmt.Errorf("revoke: %w\n  run it again: destroying twice is harmless", err)
	case n == 0:
		fmt.Fprintf(a.stdout, "%s has no live session in cluster %s\n", principal, cluster)
		return nil
	case wait <= 0:
		fmt.Fprintf(a.stdout, "published %d destroys for %s in cluster %s: they apply within seconds\n", n, principal, cluster)
		return nil
	}
	c, err := newClients(ctx)
	if err != nil {
		return err
	}
	left, err := waitDestroyed(ctx, &record.Table{DB: c.dynamodb(), Name: table}, keys, wait)
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("revoke: %d of %d tombstones are not in the table after %s: is sessionop running? See sessionctl dlq list", left, len(keys), wait)
	}
	fmt.Fprintf(a.stdout, "revoked %d sessions of %s in cluster %s\n", n, principal, cluster)
	return nil
}
