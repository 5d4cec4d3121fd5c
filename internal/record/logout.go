package record

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// LogoutSuffix ends the key of a session's logout item: <cluster>#<hash>#logout. A
// session key ends in its hash (base64url, no '#'), so no session key ends so, and the
// cluster prefix that clear-store deletes by covers both.
const LogoutSuffix = "#logout"

// LogoutKey is the key of the logout item of the session whose key is key.
func LogoutKey(key string) string { return key + LogoutSuffix }

// IsLogoutKey reports whether k is the key of a logout item.
func IsLogoutKey(k string) bool { return strings.HasSuffix(k, LogoutSuffix) }

// Stored is what the table holds of one session: its item and its logout item, each nil
// if there is none.
type Stored struct{ Session, Logout *Item }

// Item is the session as a reader must see it: a logout item makes it a tombstone (the
// later version of the two, kept as long as either), whatever the session item says; else
// the session item (nil if none).
func (s Stored) Item() *Item {
	if s.Logout == nil {
		return s.Session
	}
	t := &Item{Key: strings.TrimSuffix(s.Logout.Key, LogoutSuffix), Version: s.Logout.Version, State: Destroyed,
		ExpiresAt: s.Logout.ExpiresAt}
	t.takeDestroy(s.Logout.destroy(t.Key))
	if c := s.Session; c != nil {
		t.Rev, t.Version = c.Rev, max(t.Version, c.Version)
		if c.State == Destroyed {
			t.ExpiresAt = max(t.ExpiresAt, c.ExpiresAt)
			if c.DestroyVersion != "" && c.DestroyVersion < t.DestroyVersion {
				t.Reason, t.Site, t.Writer, t.DestroyVersion = c.Reason, c.Site, c.Writer, c.DestroyVersion
			}
		}
	}
	return t
}

// Read reads a session's item and its logout item with one strongly consistent
// BatchGetItem: a consistent read of two small items, two read units (the session item
// alone was one).
func (t *Table) Read(ctx context.Context, key string) (Stored, error) {
	items, err := t.batchGet(ctx, []string{key, LogoutKey(key)}, "")
	if err != nil {
		return Stored{}, err
	}
	var s Stored
	for _, m := range items {
		it, err := Unmarshal(m)
		if err != nil {
			return Stored{}, err
		}
		switch it.Key {
		case key:
			s.Session = it
		case LogoutKey(key):
			s.Logout = it
		}
	}
	return s, nil
}

// maxBatchGet is DynamoDB's limit on the keys of one BatchGetItem.
const maxBatchGet = 100

// LoggedOut returns which of the session keys have a logout item, reading the logout
// keys 100 to a strongly consistent BatchGetItem (one read unit each): listings of the
// per-user index, which projects session items only, leave these out.
func (t *Table) LoggedOut(ctx context.Context, keys []string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; start < len(keys); start += maxBatchGet {
		var lk []string
		for _, k := range keys[start:min(start+maxBatchGet, len(keys))] {
			lk = append(lk, LogoutKey(k))
		}
		items, err := t.batchGet(ctx, lk, attrKey)
		if err != nil {
			return nil, err
		}
		for _, m := range items {
			if v, ok := m[attrKey].(*types.AttributeValueMemberS); ok {
				out[strings.TrimSuffix(v.Value, LogoutSuffix)] = true
			}
		}
	}
	return out, nil
}

// batchGet reads keys (at most 100, no duplicates) of the table with strongly consistent
// BatchGetItem calls: one, and more only for keys DynamoDB leaves unprocessed (it does
// under throttling), after a growing random wait. projection, if set, is the
// ProjectionExpression.
func (t *Table) batchGet(ctx context.Context, keys []string, projection string) ([]map[string]types.AttributeValue, error) {
	ka := types.KeysAndAttributes{ConsistentRead: aws.Bool(true)}
	for _, k := range keys {
		ka.Keys = append(ka.Keys, map[string]types.AttributeValue{attrKey: &types.AttributeValueMemberS{Value: k}})
	}
	if projection != "" {
		ka.ProjectionExpression = aws.String(projection)
	}
	in := &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{t.Name: ka}}
	var items []map[string]types.AttributeValue
	for attempt := 1; ; attempt++ {
		out, err := t.DB.BatchGetItem(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("batch get items: %w", err)
		}
		items = append(items, out.Responses[t.Name]...)
		left := out.UnprocessedKeys[t.Name]
		if len(left.Keys) == 0 {
			return items, nil
		}
		if attempt == 8 {
			return nil, fmt.Errorf("batch get items: %d of %d keys still unprocessed after %d calls (throttled)", len(left.Keys), len(keys), attempt)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(rand.N(min(10*time.Millisecond<<attempt, time.Second))):
		}
		in.RequestItems = map[string]types.KeysAndAttributes{t.Name: left}
	}
}

// logoutKeep is the TTL (epoch seconds) of a logout item written at now for a session
// valid until at most until (unix ms): until plus the grace, and at least LogoutKeep
// from now.
func logoutKeep(p Policy, now time.Time, until int64) int64 {
	return max(p.keep(until), (now.Add(p.LogoutKeep).UnixMilli()+999)/1000)
}

// putLogout writes the logout item next over old (nil: there is none yet), on the
// condition that the stored one is still old; lost reports that it was not.
func (t *Table) putLogout(ctx context.Context, old, next *Item) (lost bool, err error) {
	in := &dynamodb.PutItemInput{TableName: aws.String(t.Name)}
	if old == nil {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
		next.Rev = 1
	} else {
		in.ConditionExpression = aws.String("rev = :rev")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":rev": revValue(old.Rev)}
		next.Rev = old.Rev + 1
	}
	in.Item = Marshal(next)
	_, err = t.DB.PutItem(ctx, in)
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("put logout item: %w", err)
	}
	return false, nil
}

// WriteLogout writes the logout item of the destroy op and nothing else: insert-only
// (attribute_not_exists), kept until op.Until (the session's latest possible deadline,
// or now if later) plus Grace, and at least LogoutKeep. It is for writers that may write nothing but logout items,
// the auth servers in degraded mode (their policy grants PutItem on logout keys only);
// the functions apply the destroy itself when it reaches them, and make the logout item
// last as long as the session needs. A session already logged out is Unchanged.
func (t *Table) WriteLogout(ctx context.Context, op Op) (Result, error) {
	if op.Kind != Destroy {
		return Unchanged, fmt.Errorf("record: WriteLogout of a %v op: only a destroy writes a logout item", op.Kind)
	}
	now := t.now()
	it := &Item{Key: LogoutKey(op.Key), Version: op.Version, State: Destroyed,
		ExpiresAt: logoutKeep(t.policy(), now, max(now.UnixMilli(), op.Until))}
	it.takeDestroy(op)
	lost, err := t.putLogout(ctx, nil, it)
	if err != nil || lost {
		return Unchanged, err
	}
	return Written, nil
}

// plan decides what op makes of a session whose stored item is cur and whose logout item
// is logout (either nil): the logout item to write (nil for none), and the session item
// to write (changed false for none).
//
// Without a logout item, an op other than a destroy is merged as ever. A destroy, or any
// op once a logout item exists, ends the session for good: its tombstone is the session
// item merged with the destroy (this one, or the logout item's), then with op, which can
// only make it last longer; the logout item is inserted if missing (kept as long as that
// tombstone, and at least LogoutKeep), or made to last as long as that tombstone. A session item a destroy has not reached yet (here a save of
// another region overwrote the tombstone, last writer winning) becomes a tombstone again;
// with no session item, an op after a logout writes none (the logout item holds the end
// of the session alone).
func plan(cur, logout *Item, op Op, now time.Time, p Policy) (nextLogout, next *Item, changed bool) {
	if logout == nil && op.Kind != Destroy {
		next, changed = Merge(cur, op, now, p)
		return nil, next, changed
	}
	// The tombstone takes the logout item's destroy first (a session item written over
	// the tombstone by another region's save has lost it), then op: of several destroys
	// the lowest version tells why, whatever the order they came in (Merge).
	tomb := cur
	if logout != nil {
		tomb, _ = Merge(tomb, logout.destroy(op.Key), now, p)
	}
	tomb, _ = Merge(tomb, op, now, p)
	switch {
	case logout == nil:
		nextLogout = &Item{Key: LogoutKey(op.Key), Version: op.Version, State: Destroyed,
			ExpiresAt: max(tomb.ExpiresAt, logoutKeep(p, now, 0))}
		nextLogout.takeDestroy(op)
	case tomb.ExpiresAt > logout.ExpiresAt || tomb.DestroyVersion != logout.destroy(op.Key).Version:
		n := *logout
		n.ExpiresAt = max(tomb.ExpiresAt, logout.ExpiresAt)
		n.Reason, n.Site, n.Writer, n.DestroyVersion = tomb.Reason, tomb.Site, tomb.Writer, tomb.DestroyVersion
		nextLogout = &n
	}
	switch {
	case cur == nil && op.Kind != Destroy:
		return nextLogout, nil, false
	case cur != nil && tomb.equal(cur):
		return nextLogout, cur, false
	}
	return nextLogout, tomb, true
}

// destroy is the destroy op a logout item holds: its version, and the reason, writer and
// site it was written with (a logout item written before they were kept has none).
func (l *Item) destroy(key string) Op {
	v := l.DestroyVersion
	if v == "" {
		v = l.Version
	}
	return Op{Kind: Destroy, Key: key, Version: v, Reason: l.Reason, Site: l.Site}
}
