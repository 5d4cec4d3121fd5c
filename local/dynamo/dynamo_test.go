package dynamo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// start runs a replica on a free 127.0.0.1 port and returns an SDK client for it. The
// client checks the answers' CRC32, as against AWS.
func start(t *testing.T, o Options) (*Replica, *dynamodb.Client, string) {
	t.Helper()
	r := New(o)
	srv, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); r.Close() })
	return r, client(srv.URL(), r.Region()), srv.URL()
}

func client(url, region string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region: region, BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }

// sessions makes a table shaped like the session table: key pk, index byPrincipal on
// upk and a number sort key cr, projecting a few attributes.
func sessions(t *testing.T, db *dynamodb.Client, name string) {
	t.Helper()
	_, err := db.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName: aws.String(name), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("upk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("cr"), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String("byPrincipal"),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String("upk"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("cr"), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: []string{"a", "st"}},
		}},
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewAndOldImages},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// A wait for ACTIVE ends, and the description carries what DynamoDB's does.
func TestDescribeTable(t *testing.T) {
	_, db, _ := start(t, Options{Region: "eu-west-1"})
	ctx := context.Background()
	sessions(t, db, "s")
	w := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) { o.MinDelay = 10 * time.Millisecond })
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("s")}, 5*time.Second); err != nil {
		t.Fatalf("waiting for ACTIVE: %v", err)
	}
	d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("s")})
	if err != nil {
		t.Fatal(err)
	}
	tb := d.Table
	if tb.TableStatus != types.TableStatusActive {
		t.Errorf("TableStatus %q, want ACTIVE", tb.TableStatus)
	}
	if got, want := aws.ToString(tb.TableArn), "arn:aws:dynamodb:eu-west-1:000000000000:table/s"; got != want {
		t.Errorf("TableArn %q, want %q", got, want)
	}
	if len(tb.AttributeDefinitions) != 3 {
		t.Errorf("AttributeDefinitions %v, want pk, upk and cr", tb.AttributeDefinitions)
	}
	if tb.StreamSpecification == nil || !aws.ToBool(tb.StreamSpecification.StreamEnabled) ||
		tb.StreamSpecification.StreamViewType != types.StreamViewTypeNewAndOldImages || aws.ToString(tb.LatestStreamArn) == "" {
		t.Errorf("stream: %+v, arn %q", tb.StreamSpecification, aws.ToString(tb.LatestStreamArn))
	}
	if len(tb.GlobalSecondaryIndexes) != 1 || tb.GlobalSecondaryIndexes[0].IndexStatus != types.IndexStatusActive {
		t.Errorf("indexes %+v, want byPrincipal ACTIVE", tb.GlobalSecondaryIndexes)
	}
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("nope")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("missing table: %v, want ResourceNotFoundException", err)
	}
}

// PutItem answers ReturnValues with the item as it was, and a failed condition with the
// item that failed it when asked.
func TestPutItemReturnValues(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	key := s("k")
	out, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), ReturnValues: types.ReturnValueAllOld,
		Item: map[string]types.AttributeValue{"pk": key, "v": s("one")}})
	if err != nil || len(out.Attributes) != 0 {
		t.Fatalf("first put ALL_OLD: %v, attributes %v: want none (there was no item)", err, out.Attributes)
	}
	out, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), ReturnValues: types.ReturnValueAllOld,
		Item: map[string]types.AttributeValue{"pk": key, "v": s("two")}})
	if err != nil || out.Attributes["v"].(*types.AttributeValueMemberS).Value != "one" {
		t.Fatalf("second put ALL_OLD: %v, attributes %v: want the old item (v=one)", err, out.Attributes)
	}
	out, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
		Item: map[string]types.AttributeValue{"pk": key, "v": s("three")}})
	if err != nil || len(out.Attributes) != 0 {
		t.Fatalf("put without ReturnValues: %v, attributes %v: want none", err, out.Attributes)
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
		Item:                                map[string]types.AttributeValue{"pk": key, "v": s("four")},
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		t.Fatalf("conditional put: %v, want ConditionalCheckFailedException", err)
	}
	if v, ok := ccf.Item["v"].(*types.AttributeValueMemberS); !ok || v.Value != "three" {
		t.Errorf("failed condition carries %v, want the stored item (v=three)", ccf.Item)
	}
	_, err = db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": key},
		ConditionExpression: aws.String("v = :x"), ExpressionAttributeValues: map[string]types.AttributeValue{":x": s("other")},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
	if !errors.As(err, &ccf) || ccf.Item["v"] == nil {
		t.Errorf("conditional delete: %v (item %v), want ConditionalCheckFailedException with the item", err, ccf)
	}
	_, err = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": key},
		UpdateExpression: aws.String("SET v = :n"), ConditionExpression: aws.String("v = :x"),
		ExpressionAttributeValues:           map[string]types.AttributeValue{":x": s("other"), ":n": s("five")},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld})
	if !errors.As(err, &ccf) || ccf.Item["v"] == nil {
		t.Errorf("conditional update: %v (item %v), want ConditionalCheckFailedException with the item", err, ccf)
	}
}

// Empty binaries, lists and maps are values like any other: stored, read back with their
// type, and no obstacle to conditions or to a Query of an index holding them.
func TestEmptyValues(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	item := map[string]types.AttributeValue{
		"pk": s("k"), "upk": s("u"), "cr": n("1"), "st": s("active"),
		"a": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"empty": &types.AttributeValueMemberB{Value: []byte{}}}},
		"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}},
		"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{}},
		"b": &types.AttributeValueMemberB{Value: []byte{}},
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: item}); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": s("k")}})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := got.Item["a"].(*types.AttributeValueMemberM); !ok {
		t.Errorf("a = %#v, want a map", got.Item["a"])
	} else if b, ok := a.Value["empty"].(*types.AttributeValueMemberB); !ok || len(b.Value) != 0 {
		t.Errorf("a.empty = %#v, want an empty binary", a.Value["empty"])
	}
	if _, ok := got.Item["m"].(*types.AttributeValueMemberM); !ok {
		t.Errorf("m = %#v, want an empty map", got.Item["m"])
	}
	if _, ok := got.Item["l"].(*types.AttributeValueMemberL); !ok {
		t.Errorf("l = %#v, want an empty list", got.Item["l"])
	}
	if _, ok := got.Item["b"].(*types.AttributeValueMemberB); !ok {
		t.Errorf("b = %#v, want an empty binary", got.Item["b"])
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: item, ConditionExpression: aws.String("attribute_exists(pk)")})
	if err != nil {
		t.Errorf("conditional put over an item with empty values: %v", err)
	}
	q, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("s"), IndexName: aws.String("byPrincipal"),
		KeyConditionExpression:    aws.String("upk = :u"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":u": s("u")}})
	if err != nil || len(q.Items) != 1 {
		t.Fatalf("query of the index: %v, %v, want 1 item", err, q)
	}
}

// An index with a number sort key sorts by number, both ways, and pages in that order.
func TestNumericSortKey(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	crs := []string{"9", "10", "100", "2", "-5", "2.5", "1e3"}
	for i, cr := range crs {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
			Item: map[string]types.AttributeValue{"pk": s(fmt.Sprint("k", i)), "upk": s("u"), "cr": n(cr)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"-5", "2", "2.5", "9", "10", "100", "1e3"}
	query := func(forward bool, limit int32) []string {
		var got []string
		in := &dynamodb.QueryInput{TableName: aws.String("s"), IndexName: aws.String("byPrincipal"),
			KeyConditionExpression:    aws.String("upk = :u"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":u": s("u")}, ScanIndexForward: aws.Bool(forward)}
		if limit > 0 {
			in.Limit = aws.Int32(limit)
		}
		for range 20 {
			out, err := db.Query(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range out.Items {
				got = append(got, it["cr"].(*types.AttributeValueMemberN).Value)
			}
			if len(out.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
		return got
	}
	if got := query(true, 0); !slices.Equal(got, want) {
		t.Errorf("forward: %v, want %v", got, want)
	}
	rev := slices.Clone(want)
	slices.Reverse(rev)
	if got := query(false, 0); !slices.Equal(got, rev) {
		t.Errorf("backward: %v, want %v", got, rev)
	}
	if got := query(true, 2); !slices.Equal(got, want) {
		t.Errorf("forward in pages of 2: %v, want %v", got, want)
	}
}

// Numbers that are equal are one key, however they are written.
func TestNumberKeysByValue(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String("n"), BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeN}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "1.0", "10e-1"} {
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("n"), Item: map[string]types.AttributeValue{"id": n(v), "v": s(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("n")})
	if err != nil || len(out.Items) != 1 {
		t.Fatalf("scan: %v, %d items, want 1 (1, 1.0 and 10e-1 are one key)", err, len(out.Items))
	}
}

// Table operations racing item operations do not corrupt the engine (it does not lock
// its table list itself). Run with -race to see the difference.
func TestConcurrentTableOperations(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				name := fmt.Sprintf("t%d-%d", g, i)
				_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{TableName: aws.String(name), BillingMode: types.BillingModePayPerRequest,
					AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
					KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}}})
				if err == nil {
					_, err = db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
				}
				if err == nil {
					_, err = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for i := range 100 {
				_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
					Item: map[string]types.AttributeValue{"pk": s(fmt.Sprint(g, "-", i))}})
				if err == nil {
					_, err = db.ListTables(ctx, &dynamodb.ListTablesInput{})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A large answer comes whole with a Content-Length, never chunked.
func TestContentLength(t *testing.T) {
	_, db, url := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	for i := range 300 {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
			Item: map[string]types.AttributeValue{"pk": s(fmt.Sprint("k", i)), "v": s(strings.Repeat("x", 1000))}})
		if err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"TableName":"s"}`))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.Scan")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength < 300_000 || len(resp.TransferEncoding) > 0 {
		t.Errorf("scan answer: %s, Content-Length %d, Transfer-Encoding %v: want 200 with a length of at least 300 KB, not chunked",
			resp.Status, resp.ContentLength, resp.TransferEncoding)
	}
	if resp.Header.Get("X-Amz-Crc32") == "" {
		t.Error("no X-Amz-Crc32 header")
	}
}

// An operation the emulator does not know gets a JSON error the SDK understands.
func TestUnknownOperation(t *testing.T) {
	_, db, url := start(t, Options{})
	_, err := db.DescribeContinuousBackups(context.Background(), &dynamodb.DescribeContinuousBackupsInput{TableName: aws.String("s")})
	if apiCode(err) != "UnknownOperationException" {
		t.Errorf("DescribeContinuousBackups: %v, want UnknownOperationException", err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.Nonsense")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-amz-json") {
		t.Errorf("unknown operation: %s %s, want 400 in JSON", resp.Status, resp.Header.Get("Content-Type"))
	}
}

func large(size int) types.AttributeValue { return s(strings.Repeat("x", size)) }

// Items over 400 KB are refused whichever call writes them, and nothing is written.
func TestItemSizeLimit(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	tooLarge := func(what string, err error) {
		t.Helper()
		if apiCode(err) != "ValidationException" || !strings.Contains(err.Error(), "Item size has exceeded") {
			t.Errorf("%s: %v, want ValidationException: Item size has exceeded the maximum allowed size", what, err)
		}
	}
	key := map[string]types.AttributeValue{"pk": s("k")}
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("k"), "v": large(MaxItemSize)}})
	tooLarge("PutItem", err)
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("k"), "v": large(300 << 10)}}); err != nil {
		t.Fatalf("a 300 KB item: %v", err)
	}
	_, err = db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String("s"), Key: key, UpdateExpression: aws.String("SET w = :w"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":w": large(200 << 10)}})
	tooLarge("UpdateItem to 500 KB", err)
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("s"), Key: key})
	if err != nil || got.Item["w"] != nil || got.Item["v"] == nil {
		t.Errorf("after the refused update: %v, w set %v, v set %v: want the item as it was", err, got.Item["w"] != nil, got.Item["v"] != nil)
	}
	_, err = db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"s": {
		{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s("b1")}}},
		{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s("b2"), "v": large(MaxItemSize)}}},
	}}})
	tooLarge("BatchWriteItem", err)
	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("t1"), "v": large(MaxItemSize)}}},
	}})
	tooLarge("TransactWriteItems", err)
	out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("s")})
	if err != nil || len(out.Items) != 1 {
		t.Errorf("scan: %v, %d items, want only k", err, len(out.Items))
	}
}

// A Scan or Query returns at most 1 MB per page, and paging returns everything.
func TestPageLimit(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	const items = 30 // 100 KB each: 3 MB
	for i := range items {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
			Item: map[string]types.AttributeValue{"pk": s(fmt.Sprintf("k%02d", i)), "upk": s("u"), "cr": n(strconv.Itoa(i)), "a": large(100 << 10)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	in := &dynamodb.ScanInput{TableName: aws.String("s")}
	seen, pages := 0, 0
	for {
		out, err := db.Scan(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(out.Items) > 10 {
			t.Errorf("page %d holds %d items of 100 KB: more than 1 MB", pages, len(out.Items))
		}
		seen += len(out.Items)
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	if seen != items || pages < 3 {
		t.Errorf("scan saw %d items in %d pages, want %d in at least 3", seen, pages, items)
	}
	q, err := db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String("s"), IndexName: aws.String("byPrincipal"),
		KeyConditionExpression: aws.String("upk = :u"), ExpressionAttributeValues: map[string]types.AttributeValue{":u": s("u")}})
	if err != nil || len(q.Items) > 10 || len(q.LastEvaluatedKey) == 0 {
		t.Errorf("query: %v, %d items, last key %v: want at most 1 MB and a next page", err, len(q.Items), q.LastEvaluatedKey)
	}
}

func TestListTables(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	for _, name := range []string{"c", "a", "b"} {
		sessions(t, db, name)
	}
	out, err := db.ListTables(ctx, &dynamodb.ListTablesInput{Limit: aws.Int32(2)})
	if err != nil || !slices.Equal(out.TableNames, []string{"a", "b"}) || aws.ToString(out.LastEvaluatedTableName) != "b" {
		t.Fatalf("first page: %v %v %v", err, out.TableNames, aws.ToString(out.LastEvaluatedTableName))
	}
	out, err = db.ListTables(ctx, &dynamodb.ListTablesInput{ExclusiveStartTableName: out.LastEvaluatedTableName})
	if err != nil || !slices.Equal(out.TableNames, []string{"c"}) || out.LastEvaluatedTableName != nil {
		t.Fatalf("second page: %v %v %v", err, out.TableNames, out.LastEvaluatedTableName)
	}
}

// TTL: on and off by DynamoDB's rules; an expired item stays readable until the sweep,
// which deletes it late and says so on the change feed.
func TestTTL(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	r, db, _ := start(t, Options{TTLPeriod: time.Hour, TTLDelay: time.Minute, Now: clock.Now})
	ctx := context.Background()
	sessions(t, db, "s")
	var mu sync.Mutex
	var changes []Change
	r.Subscribe(func(c Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	d, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String("s")})
	if err != nil || d.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusDisabled {
		t.Fatalf("before: %v %+v", err, d)
	}
	put := func(k string, exp int64) {
		t.Helper()
		if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"),
			Item: map[string]types.AttributeValue{"pk": s(k), "exp": n(strconv.FormatInt(exp, 10))}}); err != nil {
			t.Fatal(err)
		}
	}
	now := clock.Now().Unix()
	put("early", now-10) // in the table before TTL is turned on: swept all the same
	on := &types.TimeToLiveSpecification{AttributeName: aws.String("exp"), Enabled: aws.Bool(true)}
	if _, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("s"), TimeToLiveSpecification: on}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String("s"), TimeToLiveSpecification: on}); apiCode(err) != "ValidationException" {
		t.Errorf("enabling twice: %v, want ValidationException", err)
	}
	d, err = db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String("s")})
	if err != nil || d.TimeToLiveDescription.TimeToLiveStatus != types.TimeToLiveStatusEnabled || aws.ToString(d.TimeToLiveDescription.AttributeName) != "exp" {
		t.Fatalf("after: %v %+v", err, d.TimeToLiveDescription)
	}
	put("later", now+30)
	put("never", now-int64(6*365*24*3600)) // more than five years ago: TTL leaves it
	put("rewritten", now-30)
	put("rewritten", now+3600)
	if got := r.Sweep(); got != 0 {
		t.Errorf("sweep within TTLDelay of expiry deleted %d items, want 0", got)
	}
	clock.Add(61 * time.Second)
	if _, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": s("early")}}); err != nil {
		t.Fatal(err)
	}
	if got := r.Sweep(); got != 1 {
		t.Errorf("sweep deleted %d items, want 1 (early)", got)
	}
	clock.Add(time.Minute)
	if got := r.Sweep(); got != 1 {
		t.Errorf("second sweep deleted %d items, want 1 (later)", got)
	}
	out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("s")})
	if err != nil || len(out.Items) != 2 {
		t.Errorf("left: %v, %d items, want never and rewritten", err, len(out.Items))
	}
	mu.Lock()
	defer mu.Unlock()
	ttl := 0
	for _, c := range changes {
		if c.Cause == CauseTTL {
			ttl++
			if c.New != nil || c.Old == nil {
				t.Errorf("TTL change %+v: want the old image and no new one", c)
			}
		}
	}
	if ttl != 2 {
		t.Errorf("%d TTL changes on the feed, want 2", ttl)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Every write that changes an item is on the change feed once, in order, with its
// images; one that changes nothing is not.
func TestChangeFeed(t *testing.T) {
	r, db, _ := start(t, Options{Region: "eu-west-1"})
	ctx := context.Background()
	sessions(t, db, "s")
	var mu sync.Mutex
	var changes []Change
	cancel := r.Subscribe(func(c Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	defer cancel()
	k := map[string]types.AttributeValue{"pk": s("k")}
	steps := []func() error{
		func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("k"), "v": s("1")}})
			return err
		},
		func() error { // the same again: no change
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("k"), "v": s("1")}})
			return err
		},
		func() error {
			_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String("s"), Key: k, UpdateExpression: aws.String("SET v = :v"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("2")}})
			return err
		},
		func() error {
			_, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{"s": {
				{PutRequest: &types.PutRequest{Item: map[string]types.AttributeValue{"pk": s("b")}}},
				{DeleteRequest: &types.DeleteRequest{Key: k}},
			}}})
			return err
		},
		func() error {
			_, err := db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
				{Put: &types.Put{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("t")}}},
				{Delete: &types.Delete{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": s("b")}}},
			}})
			return err
		},
		func() error { // a failed condition changes nothing
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("t")},
				ConditionExpression: aws.String("attribute_not_exists(pk)")})
			if err == nil {
				return errors.New("conditional put succeeded")
			}
			return nil
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	type summary struct {
		key      string
		old, new bool
	}
	var got []summary
	for i, c := range changes {
		if c.Seq != uint64(i+1) || c.Origin != "eu-west-1" || c.Cause != CauseWrite || c.Table != "s" {
			t.Errorf("change %d: seq %d origin %s cause %s table %s", i, c.Seq, c.Origin, c.Cause, c.Table)
		}
		if i > 0 && !changes[i-1].At.Before(c.At) && string(changes[i-1].Key["pk"]) == string(c.Key["pk"]) {
			t.Errorf("change %d of one item not later than the one before", i)
		}
		got = append(got, summary{string(c.Key["pk"]), c.Old != nil, c.New != nil})
	}
	want := []summary{
		{`{"S":"k"}`, false, true}, {`{"S":"k"}`, true, true},
		{`{"S":"b"}`, false, true}, {`{"S":"k"}`, true, false},
		{`{"S":"t"}`, false, true}, {`{"S":"b"}`, true, false},
	}
	if len(got) != len(want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	// A batch's or a transaction's changes may come in any order among themselves.
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing change %v in %v", w, got)
		}
	}
}

// Replicate applies a change from another region only if it is later than the item's
// last write: per item, the last writer wins, whatever the order of arrival.
func TestReplicateLastWriterWins(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	r, db, _ := start(t, Options{Region: "us-east-1", Now: clock.Now})
	ctx := context.Background()
	sessions(t, db, "s")
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("k"), "v": s("local")}}); err != nil {
		t.Fatal(err)
	}
	key := Item{"pk": []byte(`{"S":"k"}`)}
	get := func() string {
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": s("k")}})
		if err != nil {
			t.Fatal(err)
		}
		if out.Item == nil {
			return "<none>"
		}
		return out.Item["v"].(*types.AttributeValueMemberS).Value
	}
	older := Change{Table: "s", Key: key, New: Item{"pk": key["pk"], "v": []byte(`{"S":"older"}`)}, At: clock.Now().Add(-time.Second), Origin: "eu-west-1"}
	if ok, err := r.Replicate(older); ok || err != nil || get() != "local" {
		t.Errorf("older remote write: applied %v, %v; item %s: want the local write kept", ok, err, get())
	}
	newer := Change{Table: "s", Key: key, New: Item{"pk": key["pk"], "v": []byte(`{"S":"newer"}`)}, At: clock.Now().Add(time.Second), Origin: "eu-west-1"}
	if ok, err := r.Replicate(newer); !ok || err != nil || get() != "newer" {
		t.Errorf("newer remote write: applied %v, %v; item %s: want it applied", ok, err, get())
	}
	del := Change{Table: "s", Key: key, At: clock.Now().Add(2 * time.Second), Origin: "ap-south-1"}
	if ok, err := r.Replicate(del); !ok || err != nil || get() != "<none>" {
		t.Errorf("newer remote delete: applied %v, %v; item %s: want it deleted", ok, err, get())
	}
	if ok, _ := r.Replicate(newer); ok || get() != "<none>" {
		t.Errorf("the older write again after the delete: applied %v, item %s: want the delete kept", ok, get())
	}
	// At equal times the greater region wins, in every replica alike.
	tie := Change{Table: "s", Key: key, New: Item{"pk": key["pk"], "v": []byte(`{"S":"tie"}`)}, At: del.At, Origin: "af-south-1"}
	if ok, _ := r.Replicate(tie); ok {
		t.Error("a tie with a smaller region name applied")
	}
	if _, err := r.Replicate(Change{Table: "nope", Key: key, At: clock.Now()}); !errors.Is(err, ErrNoTable) {
		t.Errorf("missing table: %v, want ErrNoTable", err)
	}
}

// Functions of a condition or filter over an attribute an item lacks are false, as in
// DynamoDB, not an error: a conditional write fails its condition, a filter skips the item.
func TestFunctionsOnMissingAttribute(t *testing.T) {
	_, db, _ := start(t, Options{})
	ctx := context.Background()
	sessions(t, db, "s")
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("without")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("s"), Item: map[string]types.AttributeValue{"pk": s("with"), "v": s("xyz"), "l": &types.AttributeValueMemberSS{Value: []string{"x"}}}}); err != nil {
		t.Fatal(err)
	}
	for _, cond := range []string{"begins_with(v, :p)", "contains(l, :p)", "size(v) > :n"} {
		vals := map[string]types.AttributeValue{":p": s("x")}
		if strings.Contains(cond, ":n") {
			vals = map[string]types.AttributeValue{":n": n("1")}
		}
		_, err := db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String("s"), Key: map[string]types.AttributeValue{"pk": s("without")},
			ConditionExpression: aws.String(cond), ExpressionAttributeValues: vals})
		var ccf *types.ConditionalCheckFailedException
		if !errors.As(err, &ccf) {
			t.Errorf("%s on a missing attribute: %v, want ConditionalCheckFailedException", cond, err)
		}
		out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("s"), FilterExpression: aws.String(cond), ExpressionAttributeValues: vals})
		if err != nil || len(out.Items) != 1 {
			t.Errorf("scan filtering on %s: %v, %v: want the one item that has it", cond, err, out)
		}
	}
}
