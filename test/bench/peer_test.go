package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessionha/sessionha/client"
)

// The peer: what a Go team picks instead, alexedwards/scs with its Redis store
// (goredisstore on go-redis v9), against redis-server from Debian, which the bench starts
// on 127.0.0.1 (a free port, no persistence) and stops by its PID. Both hold the
// reference session at the same concurrency; scs's Find is its SessionManager.Load (the
// store's GET and the decoding of the session), its Commit the encoding and the SET.

type redisRig struct {
	cmd    *exec.Cmd
	client *redis.Client
}

// startRedis starts redis-server, or fails the bench saying how to get it.
func startRedis(t *testing.T) *redisRig {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server not found: make bench installs it (Debian: apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cmd := exec.Command(path, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r := &redisRig{cmd: cmd, client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port, PoolSize: 32})}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(15 * time.Second)
	for r.client.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// stop ends redis-server by its PID: SIGTERM, then SIGKILL if it lingers.
func (r *redisRig) stop() {
	r.client.Close()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

// peerResult holds the runs of the comparison, each interleaved with scs's in one run.
type peerResult struct {
	Redis                  string // redis-server's version
	Owned, FindWithOwned   run    // sessionha's owned Load, scs Find
	Failover, FindWithFail run    // sessionha's failover Load (direct), scs Find
	Save, Commit           run    // sessionha's Save (publish only), scs Commit
}

func (b *bencher) peer(conc, n int) peerResult {
	rig := startRedis(b.t)
	var res peerResult
	if info, err := rig.client.InfoMap(b.ctx, "server").Result(); err == nil {
		res.Redis = info["Server"]["redis_version"]
	}
	sm := scs.New()
	sm.Store = goredisstore.New(rig.client)
	sm.Lifetime, sm.IdleTimeout = 8*time.Hour, 30*time.Minute
	const sessions = 2000
	tokens := make([]string, sessions)
	for i := range tokens {
		ctx, err := sm.Load(b.ctx, "")
		if err != nil {
			b.t.Fatal(err)
		}
		for name, v := range refAttributes() {
			sm.Put(ctx, name, v)
		}
		if tokens[i], _, err = sm.Commit(ctx); err != nil {
			b.t.Fatalf("scs Commit: %v", err)
		}
	}
	find := func(i int) error {
		ctx, err := sm.Load(b.ctx, tokens[i%sessions])
		if err == nil && sm.GetBytes(ctx, "attr01") == nil {
			err = errors.New("scs: the session has no attr01")
		}
		return err
	}
	a, bb := b.writer, b.reader
	runs := b.interleaved(conc, n, []int{1, 1}, func(i int) error {
		_, err := a.Load(b.ctx, b.ids[i%len(b.ids)])
		return err
	}, find)
	res.Owned, res.FindWithOwned = runs[0], runs[1]
	runs = b.interleaved(conc, n/2, []int{1, 1}, func(i int) error {
		_, err := bb.Load(b.ctx, b.ids[(i+n)%len(b.ids)])
		return err
	}, find)
	res.Failover, res.FindWithFail = runs[0], runs[1]

	// Saves: copies loaded (sessionha's from the owner's memory) and contexts loaded
	// (scs's) beforehand; each sample changes one attribute and saves.
	m := n / 4
	sess := make([]*client.Session, m)
	ctxs := make([]context.Context, m)
	for i := range m {
		s, err := a.Load(b.ctx, b.ids[i%len(b.ids)])
		if err != nil {
			b.t.Fatal(err)
		}
		sess[i] = s
		if ctxs[i], err = sm.Load(b.ctx, tokens[i%sessions]); err != nil {
			b.t.Fatal(err)
		}
	}
	runs = b.interleaved(conc, m, []int{1, 1}, func(i int) error {
		sess[i].Set("attr01", []byte(fmt.Sprint("peer", i)))
		return a.Save(b.ctx, sess[i])
	}, func(i int) error {
		sm.Put(ctxs[i], "attr01", []byte(fmt.Sprint("peer", i)))
		_, _, err := sm.Commit(ctxs[i])
		return err
	})
	res.Save, res.Commit = runs[0], runs[1]
	b.t.Logf("peer (scs + Redis %s), by %d: owned Load p50 %s p99 %s vs Find p50 %s p99 %s; failover Load p99 %s vs Find p99 %s; Save p99 %s vs Commit p99 %s",
		res.Redis, conc, res.Owned.Lat.pct(50), res.Owned.Lat.pct(99), res.FindWithOwned.Lat.pct(50), res.FindWithOwned.Lat.pct(99),
		res.Failover.Lat.pct(99), res.FindWithFail.Lat.pct(99), res.Save.Lat.pct(99), res.Commit.Lat.pct(99))
	return res
}
