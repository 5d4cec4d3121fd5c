package dynamo

import (
	"context"
	"encoding/json"
	"maps"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TestRequestCounts: successful requests are counted by table and operation, as
// CloudWatch's SuccessfulRequestLatency counts them: a batch or a transaction once per
// table it names; failed requests, requests of no table and the replica's own reads and
// writes (TTL sweeps, replication) not at all.
func TestRequestCounts(t *testing.T) {
	ctx := context.Background()
	r, db, _ := start(t, Options{})
	sessions(t, db, "a")
	sessions(t, db, "b")
	key := func(v string) map[string]types.AttributeValue { return map[string]types.AttributeValue{"pk": s(v)} }

	for range 3 {
		if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("a"), Key: key("k"), ConsistentRead: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("a"), Item: key("k")}); err != nil {
		t.Fatal(err)
	}
	// A failed conditional write is not a successful request.
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("a"), Item: key("k"),
		ConditionExpression: aws.String("attribute_not_exists(pk)")}); apiCode(err) != "ConditionalCheckFailedException" {
		t.Fatalf("conditional put: %v", err)
	}
	// Nor is a request of an unknown table.
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("nope"), Key: key("k")}); err == nil {
		t.Fatal("GetItem of an unknown table succeeded")
	}
	if _, err := db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
		"a": {Keys: []map[string]types.AttributeValue{key("k")}}, "b": {Keys: []map[string]types.AttributeValue{key("k")}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String("b"), Item: key("t1")}},
		{Put: &types.Put{TableName: aws.String("b"), Item: key("t2")}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("a"), IndexName: aws.String("byPrincipal"),
		KeyConditionExpression: aws.String("upk = :u"), ExpressionAttributeValues: map[string]types.AttributeValue{":u": s("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ListTables(ctx, &dynamodb.ListTablesInput{}); err != nil {
		t.Fatal(err)
	}
	// What the replica does by itself is no request.
	r.Sweep()
	if _, err := r.getItem("a", Item{"pk": json.RawMessage(`{"S":"k"}`)}); err != nil {
		t.Fatal(err)
	}

	got := r.RequestCounts()
	want := map[string]map[string]int64{
		"a": {"CreateTable": 1, "GetItem": 3, "PutItem": 1, "BatchGetItem": 1, "Query": 1},
		"b": {"CreateTable": 1, "BatchGetItem": 1, "TransactWriteItems": 1},
	}
	if len(got) != len(want) {
		t.Errorf("tables %v, want %v", got, want)
	}
	for table, ops := range want {
		if !maps.Equal(got[table], ops) {
			t.Errorf("table %s: %v, want %v", table, got[table], ops)
		}
	}
	// The answer is a copy.
	got["a"]["GetItem"] = 100
	if r.RequestCounts()["a"]["GetItem"] != 3 {
		t.Error("RequestCounts handed out the replica's own map")
	}
}
