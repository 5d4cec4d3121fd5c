package record

import (
	"context"
	"errors"
	"fmt"
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
	DB    DB
	Name  string
	Grace time.Duration    // least life of a tombstone
	Now   func() time.Time // default time.Now
	// MaxAttempts bounds read-merge-put rounds when other writers keep winning. Default 5.
	MaxAttempts int
}

// ErrContended means the item kept changing under us for MaxAttempts rounds: the caller
// should fail the message so that the queue delivers it again later.
var ErrContended = errors.New("record: lost the conditional write too many times")

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
	for range attempts {
		cur, err := t.Get(ctx, op.Key)
		st.Reads++
		if err != nil {
			return Unchanged, st, err
		}
		next, changed := Merge(cur, op, now(), t.Grace)
		if !changed {
			return Unchanged, st, nil
		}
		in := &dynamodb.PutItemInput{TableName: aws.String(t.Name)}
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
		_, err = t.DB.PutItem(ctx, in)
		st.Writes++
		var lost *types.ConditionalCheckFailedException
		if errors.As(err, &lost) {
			st.Conflicts++
			continue
		}
		if err != nil {
			return Unchanged, st, fmt.Errorf("put item: %w", err)
		}
		return Written, st, nil
	}
	return Unchanged, st, ErrContended
}
