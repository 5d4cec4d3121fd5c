package client

import (
	"fmt"
	"strings"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// Owner reads. An instance owns a session when it wrote the newest version it knows of
// (buildLocked marks the entry) and no superseded notice has said that another instance
// wrote since; with Reads owner it serves Load of an owned session from memory, with no
// AWS call, as the old products' home server did. Ownership moves by writing: an
// instance that takes a session over (a failover, or a load balancer that is not sticky)
// writes a newer version, and the sessionop function, which merges every op into the
// stored item and so alone knows both writers at once, publishes a superseded notice
// (events.Superseded) to the writer whose copy that makes stale, routed to its queue by
// the "owner" clause of the queue's filter policy. The old owner marks its copy not
// owned, and its next Load reads.
//
// The bound: after another instance's write is applied, the old owner stops serving its
// copy once the notice reaches its queue and its long poll returns: the notice is
// published just before the write, so that is the fan-out from the notice topic to the
// queue and one receive (make bench measures it, "ownership moves"). Reads never make an
// instance the owner, so a notice that comes before the write it announces cannot be
// undone by a read of the older item.
//
// Owner reads stop (every Load reads) while the instance cannot hear notices: while it is
// degraded, before its queue is subscribed to every site's notice topic (another
// region's may be out of reach: inbox.go), and while receives from its queue fail; after
// such a gap it owns nothing until it writes again, since notices may have been lost.

// ownerReads reports whether Load may serve an owned session from memory now.
func (s *Store) ownerReads() bool {
	return s.cfg.Reads == ReadsOwner && s.inbox != nil && s.Mode() == ModeFailover && s.inbox.listening()
}

// listening reports whether notices reach this instance: subscribed to every site's
// notice topic, and receiving.
func (b *inbox) listening() bool { return !b.failing.Load() && b.ready() }

// noticeFilter is the filter policy of this instance's subscriptions to every site's
// notice topic (Config.NoticeTopicARNs), the same on each: destroy notices of its scope
// (the "site" attribute, the origin site: its own site's, or every site's with scope
// all), and superseded notices for this instance alone from any site (the "owner"
// attribute), so that a takeover in another region reaches the old owner too. Instance
// ids should be unique across the deployment: a superseded notice for an instance of the
// same id in another site only makes this one read once more.
func noticeFilter(cfg Config) string {
	destroys := `{"site":[{"exists":true}]}`
	if cfg.NoticeScope == NoticeSite {
		destroys = fmt.Sprintf(`{"site":[%q]}`, cfg.Site)
	}
	return fmt.Sprintf(`{"$or":[%s,{"owner":[%q]}]}`, destroys, cfg.InstanceID)
}

// superseded takes a superseded notice: the copy it names is no longer the newest, so
// this instance stops serving it from memory (unless it wrote a newer one since).
func (s *Store) superseded(body []byte) {
	n, err := events.DecodeSuperseded(body)
	if err != nil {
		s.log.Warn("bad superseded notice ignored", "kind", events.ErrorKind(err), "reason", err.Error())
		return
	}
	if n.Cluster != s.cfg.Cluster {
		return
	}
	s.stats.superseded.Add(1)
	s.clock.observe(n.Version) // this instance's next write is newer than the one that superseded it
	newer := record.Version(n.Version, n.Writer)
	key := record.Key(n.Cluster, n.ID)
	s.mu.Lock()
	if e := s.cache.get(key); e != nil && e.owned && (n.Destroyed || e.ver < newer) {
		e.owned = false
	}
	s.mu.Unlock()
}

// disownAll makes this instance own nothing: after a gap in which it could not hear
// notices (its queue keeps them for 5 minutes only), any copy may have been superseded.
// Its next write of a session makes it the owner again.
func (s *Store) disownAll() {
	s.mu.Lock()
	s.disownAllLocked()
	s.mu.Unlock()
}

func (s *Store) disownAllLocked() {
	for _, e := range s.cache.entries {
		e.owned = false
	}
}

// writerOf is the writer part of a record version (hlc/writer).
func writerOf(version string) string {
	_, w, _ := strings.Cut(version, "/")
	return w
}
