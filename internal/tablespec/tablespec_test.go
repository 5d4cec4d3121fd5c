package tablespec

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/local/dynamo"
)

var db *dynamodb.Client

// TestMain runs Ensure against the local DynamoDB: no mocks.
func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	r := dynamo.New(dynamo.Options{})
	defer r.Close()
	ddb, err := r.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ddb.Close()
	db = dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(ddb.URL()),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	return m.Run()
}

func spec(name string) Spec {
	return Spec{Name: name, PartitionKey: "pk", TTLAttribute: "expiresAt", Indexes: []Index{{
		Name: "byPrincipal", PartitionKey: "upk", SortKey: "cr", Include: []string{"st", "la"},
	}}}
}

// check asserts that the table has s's TTL and indexes.
func check(t *testing.T, s Spec) {
	t.Helper()
	ctx := context.Background()
	d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(d.Table.GlobalSecondaryIndexes); n != 1 || aws.ToString(d.Table.GlobalSecondaryIndexes[0].IndexName) != "byPrincipal" {
		t.Errorf("indexes: %d, want byPrincipal", n)
	}
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || d.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(d.AttributeName) != "expiresAt" {
		t.Errorf("TTL: %+v, want enabled on expiresAt", d)
	}
}

// TestEnsureCreatesThenChangesNothing: a missing table is made whole; a second run
// changes nothing.
func TestEnsureCreatesThenChangesNothing(t *testing.T) {
	s := spec("fresh")
	rep, err := Ensure(context.Background(), db, s)
	if err != nil || !rep.Created || !rep.TTLEnabled || !rep.Streams {
		t.Fatalf("first Ensure: %+v %v; want created, TTL enabled, streams", rep, err)
	}
	check(t, s)
	rep, err = Ensure(context.Background(), db, s)
	if err != nil || rep.Created || rep.TTLEnabled || len(rep.IndexesAdded) > 0 {
		t.Fatalf("second Ensure: %+v %v; want no change", rep, err)
	}
}

// TestEnsureCompletes: a table made without the index and TTL gets both.
func TestEnsureCompletes(t *testing.T) {
	s := spec("bare")
	bare := s
	bare.Indexes = nil
	if _, err := db.CreateTable(context.Background(), createInput(bare)); err != nil {
		t.Fatal(err)
	}
	rep, err := Ensure(context.Background(), db, s)
	if err != nil || rep.Created || !rep.TTLEnabled || len(rep.IndexesAdded) != 1 {
		t.Fatalf("Ensure: %+v %v; want the index added and TTL enabled", rep, err)
	}
	check(t, s)
}

// TestEnsureRefusesOtherKey: a table with another key is not ours: an error that says so.
func TestEnsureRefusesOtherKey(t *testing.T) {
	other := spec("otherkey")
	other.PartitionKey, other.Indexes = "id", nil
	if _, err := db.CreateTable(context.Background(), createInput(other)); err != nil {
		t.Fatal(err)
	}
	_, err := Ensure(context.Background(), db, spec("otherkey"))
	if err == nil || !strings.Contains(err.Error(), "not a sessionha table") {
		t.Fatalf("Ensure on a table keyed on id: %v, want an error naming the key", err)
	}
}
