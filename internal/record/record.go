// Package record is the session item as stored in DynamoDB: its layout, the merge that
// applies an operation to it, and the conditional write that makes the merge safe when
// several function instances apply operations to one session at once.
//
// # Why it converges
//
// Every item carries a revision (rev) that grows with every write, and every write is
// conditioned on the revision it read. Applying an operation is therefore
// read-merge-conditional-put: a writer that lost a race reads again and merges again.
// Merge itself is order-insensitive for the operations it knows:
//
//   - a whole-session operation (create, save) replaces the state only if its version is
//     greater than the stored one; versions are hybrid logical clocks with the writer id as
//     tie-break, so "greater" is a total order and duplicates change nothing;
//   - destroy turns the item into a tombstone, and a tombstone is terminal: every later
//     operation, older or newer, leaves it a tombstone (it may only lengthen its life);
//   - a tombstone lives at least until the session could no longer be valid anyway
//     (created + max life) and at least a grace period, so late messages still find it.
//
// Hence the stored item equals applying the operations one by one in version order, for
// any delivery order with duplicates, and a destroyed session is never readable again.
package record

import (
	"errors"
	"fmt"
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
	// attrUserKey is the per-user index's key: cluster#principal, on active items only.
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
	Principal  string
	Group      string
	Created    int64 // unix ms
	LastAccess int64 // unix ms
	MaxIdle    int64 // seconds
	MaxLife    int64 // seconds
	Site       string
	Writer     string
	Attrs      map[string][]byte
	ExpiresAt  int64 // epoch seconds: the TTL
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
)

// Op is one operation to apply, in the record's own terms.
type Op struct {
	Kind    OpKind
	Key     string
	Version string // Version(hlc, writer)
	// Session is the whole new state, for Create and Save (Key, Rev, Version, State and
	// ExpiresAt are set by Merge).
	Session *Item
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
	case Create, Save:
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
		if cur == nil && !now.Before(s.Deadline()) {
			return nil, false // expired on arrival: nothing a read could return
		}
		if cur != nil && op.Version <= cur.Version {
			return cur, false // stale or duplicate
		}
		n := *s
		n.Key, n.Version, n.State = op.Key, op.Version, Active
		n.ExpiresAt = n.ttl()
		if cur != nil {
			n.Rev = cur.Rev
		}
		return &n, true
	}
	return cur, false
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
	m[attrPrincipal] = s(it.Principal)
	if cluster, _, ok := strings.Cut(it.Key, "#"); ok {
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
	case Active:
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
	if err != nil {
		return nil, err
	}
	return &it, nil
}
