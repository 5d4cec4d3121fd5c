// Package record is the session item as stored in DynamoDB: its layout, the merge that
// applies an operation to it, and the conditional write that makes the merge safe when
// several function instances apply operations to one session at once.
//
// # Design: a state-based CRDT, applied by read-merge-conditional-put
//
// SNS and SQS deliver at least once and in any order, and several function instances
// apply ops at once. The stored item is therefore a state that every op is merged into,
// and the merge is commutative, associative and idempotent, so that the result does not
// depend on delivery order or duplicates. The reference it must equal (the "model") is:
// sort a session's ops by version and apply them one by one, where a snapshot (create,
// save) replaces all attributes, a delta sets and removes some, a destroy is final, the
// metadata (principal, group, created, max idle, max life, site, writer) is the newest
// op's, and the last access is the greatest any op carried; under the time rules below.
//
// The item holds:
//   - Floor: the version of the newest snapshot merged (none yet: the item is Pending,
//     made by deltas whose create has not arrived, and no read returns it);
//   - per attribute written by a delta newer than Floor, that delta's version (AttrVers),
//     and per attribute removed by such a delta a versioned removal (Removed): together,
//     one last-writer-wins register per name;
//   - the metadata as one last-writer-wins register whose version is the item's Version
//     (every op merged into a live item carries the whole metadata, so the newest op's
//     wins; of two deliveries of one op, clamped differently, the later creation time);
//   - the last access, a max register;
//   - the session tombstone (State Destroyed), terminal; it keeps who destroyed the
//     session, from which site and why, as the destroy of the lowest version merged
//     said (a register like the metadata, but the earliest wins: the first end is the
//     end), so that the table's stream can tell how the session ended.
//
// Merging a snapshot newer than Floor takes its attributes, then re-applies the registers
// newer than it (they come later in version order) and drops the older ones; a snapshot
// not newer than Floor changes no attribute. Merging a delta not newer than Floor changes
// no attribute (a newer snapshot already replaced what it set); otherwise each of its
// names wins if the delta is newer than that name's register (an attribute without a
// register dates from Floor, which the delta is newer than). Any op may still move the
// last access and, if it is the newest, the metadata. A destroy turns the item into a
// tombstone whatever came before or comes after.
//
// Registers are bounded by the writers, not here: a snapshot drops every register older
// than itself, so a writer that sends deltas sends a snapshot instead once the registers
// it caused since its last one pass a budget (registerBudget in client/send.go). Such a
// snapshot is a snapshot like any other: it replaces what concurrent writers changed and
// it did not see, as scope "session" does on every save. MaxItemBytes is the backstop: an
// op whose merged item would not fit is refused with ErrTooLarge.
//
// # Time: the function's clock rules
//
// An op's times come from its writer's clock, which may be off. Merge holds them to the
// clock of the function applying the op (now):
//   - created and last access are clamped to at most now + Tolerance, so a writer whose
//     clock is ahead cannot stretch a session past its limits by more than that;
//   - an item whose deadline (min(last access + max idle, created + max life)) has passed
//     is over: no op brings it back, so a writer whose clock is behind, and which still
//     serves the session, cannot make it readable again; an op that arrives after the
//     deadline is too late, even if it was made before it (a change held back for longer
//     than its session had left, by a long outage, ends with the session);
//   - an op that would make a new item already past its own deadline writes nothing.
//
// DynamoDB may delete an item any time after its TTL (ExpiresAt), so Merge treats an
// item past its TTL as gone. An item is therefore kept until its deadline plus Grace, and
// a tombstone until the session's latest possible deadline plus Grace: created + max life
// as the stored item, the destroy (Op.Until: the destroying writer's knowledge, or its
// upper bound when it knows nothing of the session) and every later op of the session
// tell it, and at least Grace after the destroy. Grace therefore bounds the clock skew
// between writers that these rules absorb: a late op of a writer whose clock was ahead of
// the others' by less than Grace finds the item or tombstone still there. The default
// (DefaultGrace, 30 min) covers writers within ±10 minutes of the functions' clock.
//
// Every write is conditioned on the item's revision (Rev) as read, so a writer that lost
// a race reads again and merges again: one strongly consistent read and one conditional
// write per op, more only under contention, and a bounded number of rounds.
//
// # Across regions: the logout item
//
// With sites in several regions the table is a DynamoDB global table in multi-region
// eventual consistency (MREC): each region's replica takes writes and replicates them in
// about a second, concurrent writes to one item are resolved by last writer wins on write
// time, and a condition is evaluated against the local replica only. The read-merge-put
// above therefore protects one region, not two: a save applied in region B within the
// replication lag of a logout in region A is the later write of the session item,
// overwrites A's tombstone in both regions, and the session is readable again; a split
// between the regions stretches that window to the split's length.
//
// So a logout does not rest on the session item. A destroy first inserts the session's
// logout item: a key of its own in the same table (LogoutKey: the session's key and
// "#logout"; no key schema change, and clear-store's cluster prefix covers it), put on
// attribute_not_exists (a second logout of the session writes nothing) and never written
// by a save or a delta, so that no last-writer-wins outcome undoes it; then it writes the
// tombstone as before. Every merge (Apply) reads both items with one strongly consistent
// BatchGetItem and, when the logout item exists, merges no op: it turns a live session
// item back into a tombstone (another region's save may have won over it) and makes the
// logout item last as long as the op's session could (plan). Every read (Get: the
// client's direct Load, sessionquery's answer, sessionctl get) takes both items in one
// call and holds the logout item final whatever the session item says; listings of the
// per-user index, which projects session items, read the listed sessions' logout items,
// 100 to a BatchGetItem (LoggedOut). Hence: once a destroy is applied in a region, no
// read there returns the session; once its logout item has replicated to another region,
// no read there does either, whatever saves, deltas and duplicates are applied in any
// region, in any order, across splits that heal later; and the replicas converge item by
// item (last writer wins on each, and every writer of a logout item writes a logout).
// test/replay's TestCrossRegion proves it on two replicas replicated like MREC, with
// splits; with the tombstone alone it fails within a few hundred histories.
//
// A logout item is kept until its session's latest possible deadline plus Grace, as the
// tombstone, and at least LogoutKeep (7 days) after it is written. The floor is for
// splits: in a split longer than Grace, the far region, which has not heard of the
// logout, may keep a sliding session alive (scs commits "created now, for another idle
// timeout"); once the split heals, no op need come that would tell the table how long
// that session item lives, and the logout item must outlive it. A logout holds across a
// split shorter than LogoutKeep less the session's idle timeout; one item of about 150
// bytes (and DynamoDB's 100 bytes of per-item overhead) per logout and region pays for it.
//
// Costs: a read is a strongly consistent read of two small items, two read units where
// the session item alone was one (a key that finds nothing is billed a unit too): each
// failover Load, each sessionquery answer, each SaveApplied poll and each merge. A
// destroy writes one more item. A create of a new session is still put without a read;
// it does not see a logout item then, which it can only meet when the logout's tombstone
// is not written yet, and which reads and merges hold final anyway.
//
// Why not rewrite the tombstone in every region when a destroy notice arrives: the
// rewrite is only as good as the notice, a fast path delivered at least once but in its
// own time, over a network the split may cut too. A save of the far region applied during
// a split replicates, once the split heals, as the later write of the session item, and
// the session is readable in the logging-out region until the far region's rewrite
// replicates back; a notice that never comes (a lost subscription, a region whose notice
// consumer is down) leaves it readable for good. The logout item needs replication only,
// which global tables deliver.
//
// Why not multi-region strong consistency (MRSC), where a condition holds across regions
// and the tombstone alone would do: an MRSC global table has exactly three replicas, or
// two and a witness, all in one Region set (US: us-east-1, us-east-2, us-west-2; EU:
// eu-west-1, eu-west-2, eu-west-3, eu-central-1; AP: ap-northeast-1, -2, -3: AWS
// CloudFormation User Guide, AWS::DynamoDB::GlobalTable GlobalTableWitness,
// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-dynamodb-globaltable-globaltablewitness.html),
// so cdk.json's sites, eu-west-1 and us-east-1, cannot be one; and the mode is chosen
// when the global table is made, from an empty table (AWS's MRSC example:
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/example_dynamodb_Scenario_MRSCGlobalTables_section.html).
// Expiry rests on TTL (expiresAt). Whether MRSC tables take TTL could not be read from
// AWS's own page here: the stored copies of the developer guide that could be searched
// did not return the MRSC limits of "How DynamoDB global tables work"
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/V2globaltables_HowItWorks.html);
// two public secondary sources (a deployment guide's README, an exam note quoting the
// guide) say MRSC does not support TTL, as DESIGN.md does, so it is taken as unsupported
// until checked there. MRSC could at most be an option, for sites that fit one Region
// set; it is not built.
package record

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// State of a session.
type State string

const (
	Active    State = "active"
	Destroyed State = "destroyed" // a tombstone: final
	Pending   State = "pending"   // deltas only, no snapshot yet: never readable
)

// Attribute names in the table. Short, since every byte of them is stored in every item.
const (
	attrKey        = "pk"
	attrRev        = "rev"
	attrVersion    = "ver"
	attrState      = "st"
	attrPrincipal  = "pr"
	attrGroup      = "grp"
	attrCreated    = "cr"
	attrLastAccess = "la"
	attrMaxIdle    = "mi"
	attrMaxLife    = "ml"
	attrSite       = "site"
	attrWriter     = "wr"
	attrAttrs      = "a"
	attrFloor      = "fl" // version of the newest snapshot merged
	attrAttrVers   = "av" // name -> version, for attributes set by deltas newer than fl
	attrRemoved    = "rm" // name -> version, for attributes removed by deltas newer than fl
	// attrReason and attrDestroyVersion are a tombstone's: why the session was destroyed
	// (the destroy op's reason, e.g. "logout", "revoked", "session-cap", "sso-group",
	// "renew"), and the version of the destroy that said so. With the tombstone's writer
	// and site (the destroy's), they tell the table's stream, and so the lifecycle
	// events, why and by whom a session ended.
	attrReason         = "why"
	attrDestroyVersion = "dv"
	// attrUserKey is the per-user index's key: cluster#principal, on active items with a
	// principal only.
	attrUserKey = "upk"
	// AttrExpiresAt is the table's TTL attribute (epoch seconds).
	AttrExpiresAt = "expiresAt"
)

// Item is one session as stored.
type Item struct {
	Key        string // cluster#hash of the session id
	Rev        int64  // revision: +1 on every write, the condition of the next
	Version    string // version of the last applied op: Version(hlc, writer)
	State      State
	Principal  string // "" for none: the session is then not in the per-user index
	Group      string
	Created    int64 // unix ms
	LastAccess int64 // unix ms
	MaxIdle    int64 // seconds
	MaxLife    int64 // seconds
	Site       string
	Writer     string
	Attrs      map[string][]byte
	Floor      string            // version of the newest snapshot merged; "" while Pending
	AttrVers   map[string]string // registers of attributes set by deltas newer than Floor
	Removed    map[string]string // registers of attributes removed by deltas newer than Floor
	ExpiresAt  int64             // epoch seconds: the TTL
	// Reason and DestroyVersion are a tombstone's (State Destroyed): the reason its
	// destroy gave ("" for none) and that destroy's version. Of several destroys of one
	// session the one with the lowest version is kept (Writer and Site are its too), so
	// that the tombstone does not depend on the order they arrive in. (Across regions,
	// two destroys applied in two regions within a replication lag each write a logout
	// item, and last writer wins keeps one of them, the same in both: either's reason.)
	// A tombstone written before these fields has neither.
	Reason         string
	DestroyVersion string
}

// Key is the partition key of a session: its cluster and the hash of its id.
func Key(cluster, hashedID string) string { return cluster + "#" + hashedID }

// Version makes the comparable form of a version: the 16 hex digits of a hybrid logical
// clock, then the writer id, so that string order is (clock, writer) order.
func Version(hlc, writer string) string { return hlc + "/" + writer }

// Deadline is when the session stops being valid: min(last access + max idle,
// created + max life).
func (it *Item) Deadline() time.Time { return time.UnixMilli(it.deadline()) }

func (it *Item) deadline() int64 {
	return min(addSeconds(it.LastAccess, it.MaxIdle), addSeconds(it.Created, it.MaxLife))
}

// Over reports whether the session has ended by now without a logout: past its deadline,
// so that Merge takes no op of it any more.
func (it *Item) Over(now time.Time) bool {
	return it != nil && it.State != Destroyed && !now.Before(it.Deadline())
}

// Readable reports whether a read may return the item: active and not expired. DynamoDB
// deletes expired items lazily (often days later), so every read must check.
func (it *Item) Readable(now time.Time) bool {
	return it != nil && it.State == Active && now.Before(it.Deadline())
}

// addSeconds is ms + sec seconds in milliseconds, saturating instead of overflowing (the
// wire allows limits up to MaxInt64 seconds).
func addSeconds(ms, sec int64) int64 {
	const maxMs = math.MaxInt64 / 2
	if sec > (maxMs-ms)/1000 {
		return maxMs
	}
	return ms + sec*1000
}

// Defaults of Policy.
const (
	DefaultGrace      = 30 * time.Minute
	DefaultTolerance  = 30 * time.Second
	DefaultLogoutKeep = 7 * 24 * time.Hour
)

// Policy is what a merge needs besides the op and the time: see the package doc.
type Policy struct {
	// Grace is how long an item is kept past its deadline, and a tombstone past the
	// session's latest possible deadline and past its destroy; it bounds the clock skew
	// between writers that the merge absorbs. Default DefaultGrace (30 min).
	Grace time.Duration
	// Tolerance is how far ahead of the function's clock an op's created and last access
	// may be; later times are clamped to it. Default DefaultTolerance (30 s).
	Tolerance time.Duration
	// LogoutKeep is the least time a logout item is kept after it is written, whatever its
	// session's deadline: the longest split between regions (with the session still in
	// use on the far side) after which a logout still holds (see "Across regions").
	// Default DefaultLogoutKeep (7 days).
	LogoutKeep time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.Grace <= 0 {
		p.Grace = DefaultGrace
	}
	if p.Tolerance <= 0 {
		p.Tolerance = DefaultTolerance
	}
	if p.LogoutKeep <= 0 {
		p.LogoutKeep = DefaultLogoutKeep
	}
	return p
}

// keep is the TTL (epoch seconds) that keeps an item until ms plus the grace.
func (p Policy) keep(ms int64) int64 {
	return (addSeconds(ms, int64(p.Grace/time.Second)) + 999) / 1000
}

// OpKind is what an operation does.
type OpKind int

const (
	Create OpKind = iota + 1
	Save
	Destroy
	Delta
)

// Op is one operation to apply, in the record's own terms.
type Op struct {
	Kind    OpKind
	Key     string
	Version string // Version(hlc, writer)
	// Session is the whole new state for Create and Save, and the session's metadata
	// (no Attrs) for Delta, as its writer's clock tells it. Merge never changes it. Key,
	// Rev, Version, State and ExpiresAt are set by Merge.
	Session *Item
	// Set and Remove are a Delta's changes.
	Set    map[string][]byte
	Remove []string
	// Until is a Destroy's latest possible deadline of the session (unix ms), which its
	// tombstone outlives; 0 if unknown.
	Until int64
	// Reason and Site are a Destroy's: why (the op's reason, "" for none) and its writer's
	// site. The tombstone keeps them, with the writer (from Version).
	Reason, Site string
}

// Merge applies op to the stored item cur (nil if none) at the function's time now and
// returns the item to store, or changed=false if the stored item already reflects op.
func Merge(cur *Item, op Op, now time.Time, p Policy) (next *Item, changed bool) {
	p = p.withDefaults()
	nowMs := now.UnixMilli()
	if cur != nil && cur.ExpiresAt*1000 <= nowMs {
		cur = nil // past its TTL: it may be gone any moment, so it counts as gone already
	}
	switch op.Kind {
	case Destroy:
		keep := p.keep(max(nowMs, op.Until))
		switch {
		case cur == nil:
			t := &Item{Key: op.Key, Version: op.Version, State: Destroyed, ExpiresAt: keep}
			t.takeDestroy(op)
			return t, true
		case cur.State == Destroyed:
			first := cur.DestroyVersion == "" || op.Version < cur.DestroyVersion
			if keep <= cur.ExpiresAt && !first {
				return cur, false
			}
			n := *cur
			n.ExpiresAt = max(keep, cur.ExpiresAt)
			if first {
				n.takeDestroy(op)
			}
			return &n, true
		}
		// Outlive every op of the session: none can be valid after created + max life.
		t := &Item{Key: op.Key, Rev: cur.Rev, Version: max(cur.Version, op.Version), State: Destroyed,
			ExpiresAt: max(keep, cur.ExpiresAt, p.keep(addSeconds(cur.Created, cur.MaxLife)))}
		t.takeDestroy(op)
		return t, true
	case Create, Save, Delta:
		s := clamp(op.Session, nowMs+p.Tolerance.Milliseconds())
		if cur != nil && cur.State == Destroyed {
			// Terminal; only make sure the tombstone outlives this op's session.
			if end := p.keep(addSeconds(s.Created, s.MaxLife)); end > cur.ExpiresAt {
				n := *cur
				n.ExpiresAt = end
				return &n, true
			}
			return cur, false
		}
		fresh := cur == nil
		switch {
		case fresh && nowMs >= s.deadline():
			return nil, false // expired on arrival: nothing a read could return
		case fresh:
			cur = &Item{Key: op.Key, State: Pending}
		case nowMs >= cur.deadline():
			return cur, false // over: nothing brings it back
		}
		n := cur.clone()
		switch {
		case op.Version > n.Version: // the newest op's metadata wins
			n.Principal, n.Group, n.Site, n.Writer = s.Principal, s.Group, s.Site, s.Writer
			n.Created, n.MaxIdle, n.MaxLife = s.Created, s.MaxIdle, s.MaxLife
		case op.Version == n.Version: // the same op, clamped later: keep the later time
			n.Created = max(n.Created, s.Created)
		}
		if op.Kind == Delta {
			n.mergeDelta(op)
		} else {
			n.mergeSnapshot(op)
		}
		n.LastAccess = max(n.LastAccess, s.LastAccess)
		n.Version = max(n.Version, op.Version)
		n.ExpiresAt = p.keep(n.deadline())
		if !fresh && n.equal(cur) {
			return cur, false // stale or duplicate
		}
		return n, true
	}
	return cur, false
}

// takeDestroy makes the tombstone t say what the destroy op said: its reason, writer,
// site and version.
func (t *Item) takeDestroy(op Op) {
	t.Reason, t.Site, t.DestroyVersion = op.Reason, op.Site, op.Version
	_, t.Writer, _ = strings.Cut(op.Version, "/")
}

// clamp returns s with its times held to at most limit (unix ms).
func clamp(s *Item, limit int64) *Item {
	if s.Created <= limit && s.LastAccess <= limit {
		return s
	}
	c := *s
	c.Created, c.LastAccess = min(c.Created, limit), min(c.LastAccess, limit)
	return &c
}

// mergeSnapshot merges a create or save into n.
func (n *Item) mergeSnapshot(op Op) {
	if n.Floor != "" && op.Version <= n.Floor {
		return // a newer snapshot is already merged
	}
	s := op.Session
	attrs := make(map[string][]byte, len(s.Attrs))
	for k, v := range s.Attrs {
		attrs[k] = v
	}
	// Registers newer than the snapshot come after it in version order: keep them.
	for name, v := range n.AttrVers {
		if v > op.Version {
			attrs[name] = n.Attrs[name]
		} else {
			delete(n.AttrVers, name)
		}
	}
	for name, v := range n.Removed {
		if v > op.Version {
			delete(attrs, name)
		} else {
			delete(n.Removed, name)
		}
	}
	n.Attrs, n.Floor, n.State = attrs, op.Version, Active
}

// mergeDelta merges a delta into n: each name is a last-writer-wins register.
func (n *Item) mergeDelta(op Op) {
	if n.Floor != "" && op.Version <= n.Floor {
		return // a newer snapshot replaced whatever this delta set
	}
	older := func(name string) bool { return max(n.AttrVers[name], n.Removed[name]) < op.Version }
	for name, v := range op.Set {
		if older(name) {
			if n.Attrs == nil {
				n.Attrs = map[string][]byte{}
			}
			n.Attrs[name] = v
			setReg(&n.AttrVers, name, op.Version)
			delete(n.Removed, name)
		}
	}
	for _, name := range op.Remove {
		if older(name) {
			delete(n.Attrs, name)
			setReg(&n.Removed, name, op.Version)
			delete(n.AttrVers, name)
		}
	}
}

func setReg(m *map[string]string, name, version string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[name] = version
}

// clone copies n deeply enough for a merge to change the copy only.
func (it *Item) clone() *Item {
	c := *it
	c.Attrs = maps.Clone(it.Attrs)
	c.AttrVers = maps.Clone(it.AttrVers)
	c.Removed = maps.Clone(it.Removed)
	return &c
}

// equal compares the stored state (Rev aside).
func (it *Item) equal(o *Item) bool {
	return it.Key == o.Key && it.Version == o.Version && it.State == o.State &&
		it.Principal == o.Principal && it.Group == o.Group && it.Created == o.Created &&
		it.LastAccess == o.LastAccess && it.MaxIdle == o.MaxIdle && it.MaxLife == o.MaxLife &&
		it.Site == o.Site && it.Writer == o.Writer && it.Floor == o.Floor && it.ExpiresAt == o.ExpiresAt &&
		it.Reason == o.Reason && it.DestroyVersion == o.DestroyVersion &&
		maps.EqualFunc(it.Attrs, o.Attrs, bytes.Equal) &&
		maps.Equal(it.AttrVers, o.AttrVers) && maps.Equal(it.Removed, o.Removed)
}

// Marshal renders the item as DynamoDB attributes.
func Marshal(it *Item) map[string]types.AttributeValue {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v int64) types.AttributeValue {
		return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
	}
	m := map[string]types.AttributeValue{
		attrKey:       s(it.Key),
		attrRev:       n(it.Rev),
		attrVersion:   s(it.Version),
		attrState:     s(string(it.State)),
		AttrExpiresAt: n(it.ExpiresAt),
	}
	if it.State == Destroyed {
		// A tombstone keeps nothing of the session: only who destroyed it, and why.
		for name, v := range map[string]string{attrWriter: it.Writer, attrSite: it.Site, attrReason: it.Reason, attrDestroyVersion: it.DestroyVersion} {
			if v != "" {
				m[name] = s(v)
			}
		}
		return m
	}
	m[attrPrincipal] = s(it.Principal) // "" (no principal) too, so that every build reads the item
	// Only an active session of a known user is in the per-user index: sessions without
	// a principal (an scs app's) would otherwise all share one index key, one hot
	// partition for a whole site.
	if cluster, _, ok := strings.Cut(it.Key, "#"); ok && it.State == Active && it.Principal != "" {
		m[attrUserKey] = s(cluster + "#" + it.Principal)
	}
	if it.Group != "" {
		m[attrGroup] = s(it.Group)
	}
	m[attrCreated], m[attrLastAccess] = n(it.Created), n(it.LastAccess)
	m[attrMaxIdle], m[attrMaxLife] = n(it.MaxIdle), n(it.MaxLife)
	m[attrSite], m[attrWriter] = s(it.Site), s(it.Writer)
	attrs := make(map[string]types.AttributeValue, len(it.Attrs))
	for k, v := range it.Attrs {
		attrs[k] = &types.AttributeValueMemberB{Value: v}
	}
	m[attrAttrs] = &types.AttributeValueMemberM{Value: attrs}
	if it.Floor != "" {
		m[attrFloor] = s(it.Floor)
	}
	for name, regs := range map[string]map[string]string{attrAttrVers: it.AttrVers, attrRemoved: it.Removed} {
		if len(regs) == 0 {
			continue
		}
		mv := make(map[string]types.AttributeValue, len(regs))
		for k, v := range regs {
			mv[k] = s(v)
		}
		m[name] = &types.AttributeValueMemberM{Value: mv}
	}
	return m
}

// ErrCorrupt means a stored item does not have the layout this package writes.
var ErrCorrupt = errors.New("record: stored item is corrupt")

// Unmarshal parses an item read from the table.
func Unmarshal(m map[string]types.AttributeValue) (*Item, error) {
	var it Item
	var err error
	str := func(name string, dst *string, required bool) {
		v, ok := m[name].(*types.AttributeValueMemberS)
		if !ok {
			if required && err == nil {
				err = fmt.Errorf("%w: attribute %q missing or not a string", ErrCorrupt, name)
			}
			return
		}
		*dst = v.Value
	}
	num := func(name string, dst *int64) {
		v, ok := m[name].(*types.AttributeValueMemberN)
		if !ok {
			if err == nil {
				err = fmt.Errorf("%w: attribute %q missing or not a number", ErrCorrupt, name)
			}
			return
		}
		x, perr := strconv.ParseInt(v.Value, 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("%w: attribute %q: %v", ErrCorrupt, name, perr)
		}
		*dst = x
	}
	var state string
	str(attrKey, &it.Key, true)
	str(attrVersion, &it.Version, true)
	str(attrState, &state, true)
	num(attrRev, &it.Rev)
	num(AttrExpiresAt, &it.ExpiresAt)
	it.State = State(state)
	switch it.State {
	case Destroyed:
		str(attrWriter, &it.Writer, false)
		str(attrSite, &it.Site, false)
		str(attrReason, &it.Reason, false)
		str(attrDestroyVersion, &it.DestroyVersion, false)
		if err != nil {
			return nil, err
		}
		return &it, nil
	case Active, Pending:
	default:
		if err == nil {
			err = fmt.Errorf("%w: state %q", ErrCorrupt, state)
		}
		return nil, err
	}
	str(attrPrincipal, &it.Principal, true)
	str(attrGroup, &it.Group, false)
	str(attrSite, &it.Site, false)
	str(attrWriter, &it.Writer, false)
	num(attrCreated, &it.Created)
	num(attrLastAccess, &it.LastAccess)
	num(attrMaxIdle, &it.MaxIdle)
	num(attrMaxLife, &it.MaxLife)
	if a, ok := m[attrAttrs].(*types.AttributeValueMemberM); ok {
		it.Attrs = make(map[string][]byte, len(a.Value))
		for k, v := range a.Value {
			b, ok := v.(*types.AttributeValueMemberB)
			if !ok {
				return nil, fmt.Errorf("%w: attribute value %q is not binary", ErrCorrupt, k)
			}
			it.Attrs[k] = b.Value
		}
	}
	str(attrFloor, &it.Floor, false)
	for name, dst := range map[string]*map[string]string{attrAttrVers: &it.AttrVers, attrRemoved: &it.Removed} {
		mv, ok := m[name].(*types.AttributeValueMemberM)
		if !ok {
			continue
		}
		*dst = make(map[string]string, len(mv.Value))
		for k, v := range mv.Value {
			sv, ok := v.(*types.AttributeValueMemberS)
			if !ok {
				return nil, fmt.Errorf("%w: register %q of %q is not a string", ErrCorrupt, k, name)
			}
			(*dst)[k] = sv.Value
		}
	}
	if err != nil {
		return nil, err
	}
	return &it, nil
}
