package edge_test

import (
	"fmt"
	"maps"
	"slices"

	"github.com/sessionha/sessionha/local/edge"
)

// Two sites in two regions, each with its own DynamoDB replica, and fauxqs serving SNS
// and SQS in both: the edge picks the replica by the region the SDK signed for.
func ExampleNewGateway() {
	g, err := edge.NewGateway(edge.Options{Routes: []edge.Route{
		{Service: "dynamodb", Region: "eu-west-1", URL: "http://127.0.0.1:8001"},
		{Service: "dynamodb", Region: "us-east-1", URL: "http://127.0.0.1:8002"},
		{Service: "sns", URL: "http://127.0.0.1:9324"}, // every region
		{Service: "sqs", URL: "http://127.0.0.1:9324"},
	}})
	if err != nil {
		fmt.Println(err)
		return
	}
	g.EnforceAWSRules(true)                             // queue reuse, purges, message sizes as on AWS
	g.SetRegionFault("", "eu-west-1", edge.FaultRefuse) // eu-west-1 is down, every service of it
	g.SetRegionFault("", "eu-west-1", edge.FaultNone)   // and back
	// Serve it with edge.Listen("127.0.0.1:4566", g).
	fmt.Println(slices.Sorted(maps.Keys(g.Stats())))
	// Output: [dynamodb dynamodb/eu-west-1 dynamodb/us-east-1 sns sqs unroutable]
}
