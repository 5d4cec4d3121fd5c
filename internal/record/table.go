package record

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DB is the part of the DynamoDB API the table calls.
type DB interface {
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// Table reads and writes session items.
type Table struct {
	DB   DB
	Name string
	// Grace, Tolerance and LogoutKeep are the merge's Policy (defaults DefaultGrace, 30
	// min, DefaultTolerance, 30 s, and DefaultLogoutKeep, 7 days); Apply and WriteLogout
	// use them.
	Grace, Tolerance, LogoutKeep time.Duration
	// Now is the function's clock, which the merge holds ops' times to. Default time.Now.
	Now func() time.Time
	// MaxAttempts bounds read-merge-put rounds when other writers keep winning. Default 5.
	MaxAttempts int
	// Observe, if set, is called by Apply in every round that has a stored item (read, or
	// handed back by a lost conditional write), with that item and the op, before the
	// round writes anything; an error ends Apply with nothing written, so that the op is
	// delivered again. It is where both the stored item's writer and the op's are known:
	// sessionop tells an instance from here that its copy is superseded.
	Observe func(ctx context.Context, cur *Item, op Op) error
}

// ErrContended means the item kept changing under us for MaxAttempts rounds: the caller
// should fail the message so that the queue delivers it again later.
var ErrContended = errors.New("record: lost the conditional write too many times")

// ErrTooLarge means the op, merged, would make an item over MaxItemBytes: it can never
// be applied, and the caller should set it aside rather than deliver it again.
var ErrTooLarge = errors.New("record: merged item too large")

// Result says what Apply did.
type Result int

const (
	Unchanged Result = iota // the stored item already reflected the op (stale, duplicate, or after a destroy)
	Written
)

// Stats counts the DynamoDB calls of one Apply.
type Stats struct{ Reads, Writes, Conflicts int }

// Get reads a session as a reader must see it: its item and its logout item with one
// strongly consistent BatchGetItem (Read), a logout item making it a tombstone
// (Stored.Item); nil, nil if there is neither.
func (t *Table) Get(ctx context.Context, key string) (*Item, error) {
	s, err := t.Read(ctx, key)
	if err != nil {
		return nil, err
	}
	return s.Item(), nil
}

func (t *Table) policy() Policy {
	return Policy{Grace: t.Grace, Tolerance: t.Tolerance, LogoutKeep: t.LogoutKeep}.withDefaults()
}

func (t *Table) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func revValue(rev int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(rev, 10)}
}

// Apply merges op into its stored item: one consistent read of the session item and its
// logout item, then at most one conditional write of each, per round; a new round only
// when another writer changed one of them in between.
//
// A destroy writes the logout item first, then the session's tombstone; any op that finds
// a logout item is not merged, and makes sure the session item is a tombstone (see plan
// and the package doc's "Across regions").
//
// Two shortcuts spare the read. A create that would write a fresh item (the usual case:
// nothing of the session is stored yet) is put at once, on the condition that no item
// exists (if one does, the next round reads both); and a conditional write that loses
// returns the item that beat it (ReturnValuesOnConditionCheckFailure), which the next
// round merges into without reading again. Either way the round that writes merged op into the item as stored, so
// the result is the read-merge-put's. (A create put without a read does not see a
// logout item; it can only meet one after a logout whose tombstone is not written yet,
// and reads and merges treat the logout item as final whatever the session item says.)
// From its second lost write on, Apply waits a random, growing while (at most 64 ms)
// and reads afresh, so that writers racing on a busy item stop colliding round after
// round.
func (t *Table) Apply(ctx context.Context, op Op) (Result, Stats, error) {
	var st Stats
	attempts := t.MaxAttempts
	if attempts == 0 {
		attempts = 5
	}
	p := t.policy()
	var (
		cur, logout *Item
		known       bool // cur and logout are as stored as of calls just made: no need to read them
		read        bool // the logout item has been read: a lost write's answer may stand for a read
		res         = Unchanged
	)
	if op.Kind == Create {
		// Optimistic: assume nothing is stored. If Merge would not write a fresh item
		// (a create expired on arrival), read as usual: a tombstone may need extending.
		if _, changed := Merge(nil, op, t.now(), p); changed {
			known = true
		}
	}
	for range attempts {
		if !known {
			s, err := t.Read(ctx, op.Key)
			st.Reads++
			if err != nil {
				return res, st, err
			}
			cur, logout, read = s.Session, s.Logout, true
		}
		if t.Observe != nil && (cur != nil || logout != nil) {
			if err := t.Observe(ctx, Stored{Session: cur, Logout: logout}.Item(), op); err != nil {
				return res, st, err
			}
		}
		known = false
		nextLogout, next, changed := plan(cur, logout, op, t.now(), p)
		if nextLogout != nil {
			// The logout item first: once it is stored, no op in this region gets past it,
			// whatever last-writer-wins replication does to the session item.
			lost, err := t.putLogout(ctx, logout, nextLogout)
			st.Writes++
			if err != nil {
				return res, st, err
			}
			if lost {
				st.Conflicts++ // another destroy of the session, just now: read both again
				continue
			}
			logout, res = nextLogout, Written
		}
		if !changed {
			return res, st, nil
		}
		in := &dynamodb.PutItemInput{
			TableName:                           aws.String(t.Name),
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}
		if cur == nil {
			in.ConditionExpression = aws.String("attribute_not_exists(pk)")
			next.Rev = 1
		} else {
			in.ConditionExpression = aws.String("rev = :rev")
			in.ExpressionAttributeValues = map[string]types.AttributeValue{":rev": revValue(cur.Rev)}
			next.Rev = cur.Rev + 1
		}
		in.Item = Marshal(next)
		if n := ItemSize(in.Item); n > MaxItemBytes {
			return res, st, fmt.Errorf("%w: %d bytes, over DynamoDB's limit of %d (attributes %d bytes, %d attribute registers)",
				ErrTooLarge, n, MaxItemBytes, attrBytes(next.Attrs), len(next.AttrVers)+len(next.Removed))
		}
		_, err := t.DB.PutItem(ctx, in)
		st.Writes++
		var lost *types.ConditionalCheckFailedException
		if errors.As(err, &lost) {
			st.Conflicts++
			// Merge into the item that beat us next round; if the answer does not carry it
			// (deleted meanwhile, or a store without ReturnValuesOnConditionCheckFailure),
			// or the logout item is unknown yet (a create put without a read), read them.
			if len(lost.Item) > 0 && read {
				if cur, err = Unmarshal(lost.Item); err != nil {
					return res, st, err
				}
				known = true
			}
			if st.Conflicts > 1 {
				// A busy item: step aside for a random while, growing, and read it afresh,
				// so that racing writers stop colliding round after round.
				wait := min(time.Millisecond<<st.Conflicts, 64*time.Millisecond)
				select {
				case <-ctx.Done():
					return res, st, ctx.Err()
				case <-time.After(rand.N(wait)):
				}
				known = false
			}
			continue
		}
		if err != nil {
			return res, st, fmt.Errorf("put item: %w", err)
		}
		return Written, st, nil
	}
	return res, st, ErrContended
}
