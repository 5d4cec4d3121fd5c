// Package tablespec creates, or checks and completes, the session table through
// DynamoDB calls: its key, its TTL attribute and its indexes. The local provisioner
// (local/provision) and the operator CLI (client/cmd/sessionctl create-store) both call
// Ensure, so the table a laptop gets and the one an operator makes by hand are the same.
//
// On AWS the CDK stack owns the table (a global table with point-in-time recovery and
// deletion protection); Ensure there only finds it in order and says so, or makes a
// plain regional table when there is none.
package tablespec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Spec describes the table (infra/topology.Table in this package's own terms: internal
// packages import nothing of ours).
type Spec struct {
	Name         string
	PartitionKey string // string key
	TTLAttribute string // epoch seconds
	Indexes      []Index
}

// Index is a global secondary index: string partition key, number sort key.
type Index struct {
	Name         string
	PartitionKey string
	SortKey      string
	Include      []string // non-key attributes projected
}

// API is the part of the DynamoDB API Ensure needs; *dynamodb.Client has it.
type API interface {
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTimeToLive(context.Context, *dynamodb.DescribeTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(context.Context, *dynamodb.UpdateTimeToLiveInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// IndexAdder is implemented by clients that can add an index to an existing table
// (*dynamodb.Client can). With an API that cannot, a missing index is an error.
type IndexAdder interface {
	UpdateTable(context.Context, *dynamodb.UpdateTableInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error)
}

// Report says what Ensure found and did.
type Report struct {
	Created      bool     // the table did not exist and was created
	TTLEnabled   bool     // TTL was off (or on another attribute) and was turned on
	IndexesAdded []string // indexes that were missing and were added
	ItemCount    int64    // DescribeTable's ItemCount (approximate on AWS: updated every few hours)
	Streams      bool     // the table has a stream (cross-region replication needs it)
}

// Ensure makes the table match s: it creates it if missing (on-demand capacity, a stream
// of new and old images, s's key and indexes) and waits until it is active; on an
// existing table it checks the key, adds missing indexes (if db is an IndexAdder) and
// turns TTL on s.TTLAttribute. A table whose key differs from s cannot be fixed and is
// an error. Running it again changes nothing.
func Ensure(ctx context.Context, db API, s Spec) (Report, error) {
	var rep Report
	desc, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Name)})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		_, err = db.CreateTable(ctx, createInput(s))
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return rep, err
		}
		rep.Created = err == nil
		if desc, err = waitActive(ctx, db, s.Name); err != nil {
			return rep, err
		}
	case err != nil:
		return rep, err
	}
	t := desc.Table
	rep.ItemCount = aws.ToInt64(t.ItemCount)
	rep.Streams = t.StreamSpecification != nil && aws.ToBool(t.StreamSpecification.StreamEnabled)
	if err := checkKey(t.KeySchema, s.PartitionKey); err != nil {
		return rep, err
	}
	for _, ix := range s.Indexes {
		i := slices.IndexFunc(t.GlobalSecondaryIndexes, func(g types.GlobalSecondaryIndexDescription) bool {
			return aws.ToString(g.IndexName) == ix.Name
		})
		if i >= 0 {
			g := t.GlobalSecondaryIndexes[i]
			if err := checkIndexKey(g.KeySchema, ix); err != nil {
				return rep, err
			}
			continue
		}
		if err := addIndex(ctx, db, s, ix); err != nil {
			return rep, err
		}
		rep.IndexesAdded = append(rep.IndexesAdded, ix.Name)
	}
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.Name)})
	if err != nil {
		return rep, err
	}
	d := ttl.TimeToLiveDescription
	if d != nil && (d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) &&
		aws.ToString(d.AttributeName) == s.TTLAttribute {
		return rep, nil
	}
	if d != nil && d.TimeToLiveStatus == types.TimeToLiveStatusEnabled {
		return rep, fmt.Errorf("table %s has TTL on %q, not %q: turn it off first (DynamoDB allows one TTL attribute)",
			s.Name, aws.ToString(d.AttributeName), s.TTLAttribute)
	}
	if _, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(s.Name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(s.TTLAttribute), Enabled: aws.Bool(true)},
	}); err != nil {
		return rep, err
	}
	rep.TTLEnabled = true
	return rep, nil
}

func createInput(s Spec) *dynamodb.CreateTableInput {
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(s.Name),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(s.PartitionKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(s.PartitionKey), KeyType: types.KeyTypeHash}},
		StreamSpecification:  &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewAndOldImages},
	}
	for _, ix := range s.Indexes {
		in.AttributeDefinitions = appendDefs(in.AttributeDefinitions, ix)
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, gsi(ix))
	}
	return in
}

// appendDefs adds the index's key attributes to defs, each once.
func appendDefs(defs []types.AttributeDefinition, ix Index) []types.AttributeDefinition {
	for _, d := range []types.AttributeDefinition{
		{AttributeName: aws.String(ix.PartitionKey), AttributeType: types.ScalarAttributeTypeS},
		{AttributeName: aws.String(ix.SortKey), AttributeType: types.ScalarAttributeTypeN},
	} {
		if !slices.ContainsFunc(defs, func(o types.AttributeDefinition) bool {
			return aws.ToString(o.AttributeName) == aws.ToString(d.AttributeName)
		}) {
			defs = append(defs, d)
		}
	}
	return defs
}

func gsi(ix Index) types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName: aws.String(ix.Name),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(ix.PartitionKey), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(ix.SortKey), KeyType: types.KeyTypeRange},
		},
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: ix.Include},
	}
}

func checkKey(ks []types.KeySchemaElement, pk string) error {
	if len(ks) != 1 || aws.ToString(ks[0].AttributeName) != pk || ks[0].KeyType != types.KeyTypeHash {
		return fmt.Errorf("the table's key is %s, want the partition key %q alone: it is not a sessionha table, or one of another layout; use another table name", keyString(ks), pk)
	}
	return nil
}

func checkIndexKey(ks []types.KeySchemaElement, ix Index) error {
	if len(ks) != 2 || aws.ToString(ks[0].AttributeName) != ix.PartitionKey || aws.ToString(ks[1].AttributeName) != ix.SortKey {
		return fmt.Errorf("index %s has the key %s, want %s then %s: delete the index and run again", ix.Name, keyString(ks), ix.PartitionKey, ix.SortKey)
	}
	return nil
}

func keyString(ks []types.KeySchemaElement) string {
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%s (%s)", aws.ToString(k.AttributeName), k.KeyType))
	}
	return fmt.Sprint(out)
}

func addIndex(ctx context.Context, db API, s Spec, ix Index) error {
	up, ok := db.(IndexAdder)
	if !ok {
		return fmt.Errorf("index %s is missing and this client cannot add it (UpdateTable)", ix.Name)
	}
	if _, err := up.UpdateTable(ctx, &dynamodb.UpdateTableInput{
		TableName:                   aws.String(s.Name),
		AttributeDefinitions:        appendDefs(nil, ix),
		GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{IndexName: aws.String(ix.Name), KeySchema: gsi(ix).KeySchema, Projection: gsi(ix).Projection}}},
	}); err != nil {
		return fmt.Errorf("add index %s: %w", ix.Name, err)
	}
	_, err := waitActive(ctx, db, s.Name)
	return err
}

// waitActive waits until the table and its indexes are active, at most 5 minutes (an
// index added to a big table on AWS backfills for a while).
func waitActive(ctx context.Context, db API, name string) (*dynamodb.DescribeTableOutput, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err == nil && d.Table.TableStatus == types.TableStatusActive && indexesActive(d.Table) {
			return d, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("table %s not active within 5 minutes (last error: %v)", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func indexesActive(t *types.TableDescription) bool {
	for _, g := range t.GlobalSecondaryIndexes {
		if g.IndexStatus != types.IndexStatusActive {
			return false
		}
	}
	return true
}
