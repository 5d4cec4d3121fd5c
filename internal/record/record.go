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
// save) replaces all attributes, a delta sets and removes some, a destroy is final, and
// the last access is the greatest any op carried.
//
// The item holds:
//   - Floor: the version of the newest snapshot merged (none yet: the item is Pending,
//     made by deltas whose create has not arrived, and no read returns it);
//   - per attribute written by a delta newer than Floor, that delta's version (AttrVers),
//     and per attribute removed by such a delta a versioned removal (Removed): together,
//     one last-writer-wins register per name;
//   - the session tombstone (State Destroyed), terminal.
//
// Merging a snapshot newer than Floor takes its attributes, then re-applies the registers
// newer than it (they come later in version order) and drops the older ones; a snapshot
// not newer than Floor changes nothing but the last access. Merging a delta not newer than
// Floor changes nothing but the last access (a newer snapshot already replaced what it
// set); otherwise each of its names wins if the delta is newer than that name's register
// (an attribute without a register dates from Floor, which the delta is newer than).
// A destroy turns the item into a tombstone whatever came before or comes after.
//
// A tombstone is kept at least until created + max life of the session (no op of the
// session can be valid later, so none can bring it back) and at least a grace period
// after the destroy (for a destroy that arrives before anything else of its session).
//
// Every write is conditioned on the item's revision (Rev) as read, so a writer that lost
// a race reads again and merges again: one strongly consistent read and one conditional
// write per op, more only under contention, and a bounded number of rounds.
package record

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
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
}

// Key is the partition key of a session: its cluster and the hash of its id.
func Key(cluster, hashedID string) string { return cluster + "#" + hashedID }

// Version makes the comparable form of a version: the 16 hex digits of a hybrid logical
// clock, then the writer id, so that string order is (clock, writer) order.
func Version(hlc, writer string) string { return hlc + "/" + writer }

// Deadline is when the session stops being valid: min(last access + max idle,
// created + max life).
func (it *Item) Deadline() time.Time {
	idle := it.LastAccess + it.MaxIdle*1000
	life := it.Created + it.MaxLife*1000
	return time.UnixMilli(min(idle, life))
}

// Readable reports whether a read may return the item: active and not expired. DynamoDB
// deletes expired items lazily (often days later), so every read must check.
func (it *Item) Readable(now time.Time) bool {
	return it != nil && it.State == Active && now.Before(it.Deadline())
}

// ttl is the epoch second at which DynamoDB may delete the item.
func (it *Item) ttl() int64 {
	d := it.Deadline().UnixMilli()
	return (d + 999) / 1000
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
	// (no Attrs) for Delta. Key, Rev, Version, State and ExpiresAt are set by Merge.
	Session *Item
	// Set and Remove are a Delta's changes.
	Set    map[string][]byte
	Remove []string
}

// Merge applies op to the stored item cur (nil if none) at time now and returns the item
// to store, or changed=false if the stored item already reflects op. grace is the least
// time a tombstone is kept.
func Merge(cur *Item, op Op, now time.Time, grace time.Duration) (next *Item, changed bool) {
	switch op.Kind {
	case Destroy:
		tomb := &Item{Key: op.Key, Version: op.Version, State: Destroyed, ExpiresAt: now.Add(grace).Unix()}
		if cur != nil {
			if cur.State == Destroyed {
				return cur, false
			}
			// Outlive every op of the session: none can be valid after created + max life.
			tomb.ExpiresAt = max(tomb.ExpiresAt, cur.ExpiresAt, (cur.Created+cur.MaxLife*1000)/1000+1)
			tomb.Version = max(cur.Version, op.Version)
			tomb.Rev = cur.Rev
		}
		return tomb, true
	case Create, Save, Delta:
		s := op.Session
		if cur != nil && cur.State == Destroyed {
			// Terminal; only make sure the tombstone outlives this session's ops.
			if end := (s.Created+s.MaxLife*1000)/1000 + 1; end > cur.ExpiresAt {
				n := *cur
				n.ExpiresAt = end
				return &n, true
			}
			return cur, false
		}
		fresh := cur == nil
		if fresh {
			if !now.Before(s.Deadline()) {
				return nil, false // expired on arrival: nothing a read could return
			}
			cur = &Item{Key: op.Key, State: Pending, Principal: s.Principal, Group: s.Group,
				Created: s.Created, LastAccess: s.LastAccess, MaxIdle: s.MaxIdle, MaxLife: s.MaxLife,
				Site: s.Site, Writer: s.Writer}
		}
		n := cur.clone()
		if op.Kind == Delta {
			n.mergeDelta(op)
		} else {
			n.mergeSnapshot(op)
		}
		n.LastAccess = max(n.LastAccess, s.LastAccess)
		n.Version = max(n.Version, op.Version)
		n.ExpiresAt = n.ttl()
		if !fresh && n.equal(cur) {
			return cur, false // stale or duplicate
		}
		return n, true
	}
	return cur, false
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
	n.Site, n.Writer = s.Site, s.Writer
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
		return m // a tombstone keeps nothing of the session
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
		return &it, err
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
