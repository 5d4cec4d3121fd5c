package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sessionha/sessionha/events"
)

// Lifecycle events: an instance hears when its sessions end or move away, as the old
// products' session listeners did (OpenAM's SessionListener, the servlet containers'
// HttpSessionListener).
//
// The site's lifecycle function publishes every session's events on the lifecycle topic
// (functions/lifecycle: created, destroyed, expired, moved, each with an idempotency
// key). With Config.LifecycleTopicARN set, this instance's queue (inbox.go) subscribes to
// the topic with a filter on its own instance id and the kinds an instance cares about:
// destroyed and expired (its sessions ended, maybe by another instance: a revoke, the
// per-user cap, an SSO group's logout), and moved (another instance took one over). The
// inbox hands them to one goroutine that calls the listeners in turn, so that a slow
// listener never holds up failover replies; when that goroutine is too far behind, the
// message stays in the queue and comes again. Events come at least once, mostly once:
// the store drops a repeat of any of its last recentLifecycleKeys keys.
//
// For every session of a site (auditing, analytics), subscribe a queue of your own to the
// topic; see the README.

// LifecycleKind says what happened to a session.
type LifecycleKind string

// The kinds of LifecycleEvent (events.Lifecycle's).
const (
	LifecycleCreated   LifecycleKind = LifecycleKind(events.LifecycleCreated)
	LifecycleDestroyed LifecycleKind = LifecycleKind(events.LifecycleDestroyed)
	LifecycleExpired   LifecycleKind = LifecycleKind(events.LifecycleExpired)
	LifecycleMoved     LifecycleKind = LifecycleKind(events.LifecycleMoved)
)

// LifecycleEvent is one event of one of this instance's sessions. It never carries the
// session id: Handle (Handle(id)) names the session.
type LifecycleEvent struct {
	Kind LifecycleKind
	// Key is the event's idempotency key: every delivery of one event has the same, and
	// a session's destroyed and expired events share one (a session ends once).
	Key string
	// Handle names the session: Handle(s.ID()).
	Handle           string
	Principal, Group string
	// Instance and Site: the instance whose session it was (this one, for the events
	// OnLifecycle hands over) and its site.
	Instance, Site string
	// By and BySite: who destroyed the session, or took it over (moved).
	By, BySite string
	// Reason: why it was destroyed (the destroy's reason: "logout", "revoked",
	// "revoke-all", "session-cap", "sso-group", "renew", or "deleted" for a deletion from
	// the table), or "idle" or "max-life" for an expiry.
	Reason string
	// At is when it happened: the destroy, the move, or the deadline the session
	// expired at (the event may come much later: the table notices expiry lazily).
	At time.Time
	// Created is when the session was created; zero if unknown.
	Created time.Time
}

// OnLifecycle registers fn to be called with each lifecycle event of this instance's
// sessions: destroyed, expired and moved (see the top of lifecycle.go). It needs
// persistence ha and LifecycleTopicARN (SESSIONHA_LIFECYCLE_TOPIC_ARN); without them fn
// is never called. Events are delivered at least once and in no particular order; fn is
// called from one goroutine, one event at a time, and should return quickly. The
// returned func removes fn.
func (s *Store) OnLifecycle(fn func(LifecycleEvent)) (remove func()) {
	h := &s.lifecycle
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fns == nil {
		h.fns = map[int]func(LifecycleEvent){}
	}
	id := h.next
	h.next++
	h.fns[id] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.fns, id)
	}
}

// recentLifecycleKeys is how many event keys the store remembers to drop repeats.
const recentLifecycleKeys = 4096

// lifecycleBacklog is how many events may wait for the listeners before the inbox leaves
// further ones in the queue.
const lifecycleBacklog = 256

// lifecycleHub holds the listeners and the events on their way to them.
type lifecycleHub struct {
	mu    sync.Mutex
	fns   map[int]func(LifecycleEvent)
	next  int
	seen  map[string]bool // keys of the recent events
	order []string        // the same keys, oldest first
	queue chan LifecycleEvent
}

// lifecycleFilter is the inbox's filter policy on the lifecycle topic: this instance's
// sessions' ends and moves.
func lifecycleFilter(cfg Config) string {
	return fmt.Sprintf(`{%q:[%q],%q:[%q,%q,%q]}`, events.LifecycleAttrInstance, cfg.InstanceID, events.LifecycleAttrKind,
		events.LifecycleDestroyed, events.LifecycleExpired, events.LifecycleMoved)
}

// takeLifecycle takes a message of the lifecycle topic from the inbox; false leaves it
// in the queue, to come again (the listeners are too far behind).
func (s *Store) takeLifecycle(body []byte) bool {
	e, err := events.DecodeLifecycle(body)
	if err != nil {
		s.log.Warn("bad lifecycle event ignored", "kind", events.ErrorKind(err), "reason", err.Error())
		return true
	}
	if e.Cluster != s.cfg.Cluster {
		return true
	}
	h := &s.lifecycle
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[e.Key] || h.queue == nil {
		return true
	}
	ev := LifecycleEvent{
		Kind: LifecycleKind(e.Kind), Key: e.Key, Handle: e.ID, Principal: e.Principal, Group: e.Group,
		Instance: e.Instance, Site: e.Site, By: e.By, BySite: e.BySite, Reason: e.Reason, At: time.UnixMilli(e.At),
	}
	if e.Created > 0 {
		ev.Created = time.UnixMilli(e.Created)
	}
	select {
	case h.queue <- ev:
	default:
		return false
	}
	if h.seen == nil {
		h.seen = map[string]bool{}
	}
	h.seen[e.Key] = true
	h.order = append(h.order, e.Key)
	if len(h.order) > recentLifecycleKeys {
		delete(h.seen, h.order[0])
		h.order = h.order[1:]
	}
	return true
}

// startLifecycle makes the queue the inbox hands events to; dispatchLifecycle calls the
// listeners with them until ctx ends.
func (s *Store) startLifecycle() {
	s.lifecycle.mu.Lock()
	s.lifecycle.queue = make(chan LifecycleEvent, lifecycleBacklog)
	s.lifecycle.mu.Unlock()
}

func (s *Store) dispatchLifecycle(ctx context.Context) {
	h := &s.lifecycle
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-h.queue:
			h.mu.Lock()
			fns := make([]func(LifecycleEvent), 0, len(h.fns))
			for _, fn := range h.fns {
				fns = append(fns, fn)
			}
			h.mu.Unlock()
			for _, fn := range fns {
				s.callListener(fn, ev)
			}
		}
	}
}

// callListener calls fn, surviving its panic: a listener's bug must not stop the inbox.
func (s *Store) callListener(fn func(LifecycleEvent), ev LifecycleEvent) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("a lifecycle listener panicked", "kind", string(ev.Kind), "panic", fmt.Sprint(p))
		}
	}()
	fn(ev)
}
