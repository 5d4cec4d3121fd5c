package replication_test

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/replication"
)

// Two regions replicating like a global table: a write in one is readable in the other
// once the replicator is quiet.
func Example() {
	ctx := context.Background()
	dbs := map[string]*dynamodb.Client{}
	var replicas []*dynamo.Replica
	for _, region := range []string{"eu-west-1", "us-east-1"} {
		r := dynamo.New(dynamo.Options{Region: region})
		defer r.Close()
		srv, err := r.Listen("127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		defer srv.Close()
		db := dynamodb.New(dynamodb.Options{Region: region, BaseEndpoint: aws.String(srv.URL()),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
		// The table exists in every region, as a global table has a replica in each.
		if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName: aws.String("t"), BillingMode: types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		}); err != nil {
			panic(err)
		}
		dbs[region], replicas = db, append(replicas, r)
	}

	rep, err := replication.New(replicas, replication.Options{Lag: 50 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer rep.Close()

	if _, err := dbs["eu-west-1"].PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"),
		Item: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}, "v": &types.AttributeValueMemberS{Value: "hello"}}}); err != nil {
		panic(err)
	}
	if err := rep.Quiesce(ctx); err != nil {
		panic(err)
	}
	out, err := dbs["us-east-1"].GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("t"),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}}})
	if err != nil {
		panic(err)
	}
	fmt.Println("us-east-1 reads:", out.Item["v"].(*types.AttributeValueMemberS).Value)
	st := rep.Stats()
	fmt.Println("applied:", st.Applied, "lost:", st.Lost)
	// Output:
	// us-east-1 reads: hello
	// applied: 1 lost: 0
}
