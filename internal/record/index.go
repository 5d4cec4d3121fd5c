package record

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// IndexByPrincipal is the per-user index: cluster#principal, then creation time. Only
// active sessions with a principal carry its key, so tombstones, pending items and
// sessions of no known user are not in it.
const IndexByPrincipal = "byPrincipal"

// Querier is the DynamoDB call that reads the per-user index.
type Querier interface {
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Entry is one session as the per-user index projects it: enough to list it and to tell
// whether it has expired, without its attributes.
type Entry struct {
	Key        string // cluster#hash of the session id
	Group      string
	Site       string
	Created    int64 // unix ms
	LastAccess int64 // unix ms
	MaxIdle    int64 // seconds
	MaxLife    int64 // seconds
}

// Hash is the hashed session id part of the key: a handle that names the session
// without being a credential.
func (e Entry) Hash() string { _, h, _ := strings.Cut(e.Key, "#"); return h }

// Deadline is when the session stops being valid.
func (e Entry) Deadline() time.Time {
	return time.UnixMilli(min(e.LastAccess+e.MaxIdle*1000, e.Created+e.MaxLife*1000))
}

// ByPrincipal lists the sessions of principal in cluster that are active and not expired
// at now, oldest first. The index is eventually consistent: a session created or
// destroyed a moment ago may be missing or still listed.
func ByPrincipal(ctx context.Context, q Querier, table, cluster, principal string, now time.Time) ([]Entry, error) {
	if principal == "" {
		return nil, errors.New("query index " + IndexByPrincipal + ": a principal is required (sessions without one are not in the index)")
	}
	in := &dynamodb.QueryInput{
		TableName:              aws.String(table),
		IndexName:              aws.String(IndexByPrincipal),
		KeyConditionExpression: aws.String("upk = :u"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":u": &types.AttributeValueMemberS{Value: cluster + "#" + principal},
		},
	}
	var out []Entry
	for {
		res, err := q.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("query index %s: %w", IndexByPrincipal, err)
		}
		for _, m := range res.Items {
			e, st, err := parseEntry(m)
			if err != nil {
				return nil, err
			}
			if st == Active && now.Before(e.Deadline()) {
				out = append(out, e)
			}
		}
		if len(res.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
}

func parseEntry(m map[string]types.AttributeValue) (Entry, State, error) {
	var e Entry
	str := func(name string) string {
		if v, ok := m[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	num := func(name string) int64 {
		if v, ok := m[name].(*types.AttributeValueMemberN); ok {
			n, _ := strconv.ParseInt(v.Value, 10, 64)
			return n
		}
		return 0
	}
	e.Key, e.Group, e.Site = str(attrKey), str(attrGroup), str(attrSite)
	e.Created, e.LastAccess, e.MaxIdle, e.MaxLife = num(attrCreated), num(attrLastAccess), num(attrMaxIdle), num(attrMaxLife)
	if e.Key == "" || e.Created == 0 {
		return e, "", fmt.Errorf("%w: index entry without key or creation time", ErrCorrupt)
	}
	return e, State(str(attrState)), nil
}
