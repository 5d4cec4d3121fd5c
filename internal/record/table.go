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
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// Table reads and writes session items.
type Table struct {
	DB   DB
	Name string
	// Grace and Tolerance are the merge's Policy (defaults DefaultGrace, 30 min, and
	// DefaultTolerance, 30 s); only Apply uses them.
	Grace, Tolerance time.Duration
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

// Get reads a session item with a strongly consistent read; nil, nil if there is none.
func (t *Table) Get(ctx context.Context, key string) (*Item, error) {
	out, err := t.DB.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(t.Name),
		Key:            map[string]types.AttributeValue{attrKey: &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get item: %w", err)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return Unmarshal(out.Item)
}

// Apply merges op into its stored item: one consistent read and at most one conditional
// write per round, a new round only when another writer changed the item in between.
//
// Two shortcuts spare the read. A create that would write a fresh item (the usual case:
// nothing of the session is stored yet) is put at once, on the condition that no item
// exists; and a conditional write that loses returns the item that beat it
// (ReturnValuesOnConditionCheckFailure), which the next round merges into without
// reading again. Either way the round that writes merged op into the item as stored, so
// the result is the read-merge-put's. From its second lost write on, Apply waits a random,
// growing while (at most 64 ms) and reads afresh, so that writers racing on a busy item
// stop colliding round after round.
func (t *Table) Apply(ctx context.Context, op Op) (Result, Stats, error) {
	var st Stats
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	attempts := t.MaxAttempts
	if attempts == 0 {
		attempts = 5
	}
	p := Policy{Grace: t.Grace, Tolerance: t.Tolerance}
	var (
		cur   *Item
		known bool // cur is the stored item as of a call just made: no need to read it
	)
	if op.Kind == Create {
		// Optimistic: assume nothing is stored. If Merge would not write a fresh item
		// (a create expired on arrival), read as usual: a tombstone may need extending.
		if _, changed := Merge(nil, op, now(), p); changed {
			known = true
		}
	}
	for range attempts {
		if !known {
			var err error
			cur, err = t.Get(ctx, op.Key)
			st.Reads++
			if err != nil {
				return Unchanged, st, err
			}
		}
		if t.Observe != nil && cur != nil {
			if err := t.Observe(ctx, cur, op); err != nil {
				return Unchanged, st, err
			}
		}
		known = false
		next, changed := Merge(cur, op, now(), p)
		if !changed {
			return Unchanged, st, nil
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
			in.ExpressionAttributeValues = map[string]types.AttributeValue{
				":rev": &types.AttributeValueMemberN{Value: strconv.FormatInt(cur.Rev, 10)},
			}
			next.Rev = cur.Rev + 1
		}
		in.Item = Marshal(next)
		if n := ItemSize(in.Item); n > MaxItemBytes {
			return Unchanged, st, fmt.Errorf("%w: %d bytes, over DynamoDB's limit of %d (attributes %d bytes, %d attribute registers)",
				ErrTooLarge, n, MaxItemBytes, attrBytes(next.Attrs), len(next.AttrVers)+len(next.Removed))
		}
		_, err := t.DB.PutItem(ctx, in)
		st.Writes++
		var lost *types.ConditionalCheckFailedException
		if errors.As(err, &lost) {
			st.Conflicts++
			// Merge into the item that beat us next round; if the answer does not carry it
			// (deleted meanwhile, or a store without ReturnValuesOnConditionCheckFailure),
			// read it.
			if len(lost.Item) > 0 {
				if cur, err = Unmarshal(lost.Item); err != nil {
					return Unchanged, st, err
				}
				known = true
			}
			if st.Conflicts > 1 {
				// A busy item: step aside for a random while, growing, and read it afresh,
				// so that racing writers stop colliding round after round.
				wait := min(time.Millisecond<<st.Conflicts, 64*time.Millisecond)
				select {
				case <-ctx.Done():
					return Unchanged, st, ctx.Err()
				case <-time.After(rand.N(wait)):
				}
				known = false
			}
			continue
		}
		if err != nil {
			return Unchanged, st, fmt.Errorf("put item: %w", err)
		}
		return Written, st, nil
	}
	return Unchanged, st, ErrContended
}
