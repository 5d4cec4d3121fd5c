// Package localtest starts what tests need from the local stack, the same way in every
// package: the local DynamoDB (local/dynamo, in the test process) with a client, fauxqs with SNS and SQS clients, or a whole site
// with the short timeouts tests want; and it polls for conditions with one generous
// deadline. Everything it starts is stopped by the func it returns.
package localtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/local/dynamo"
	"github.com/sessionha/sessionha/local/emulator"
	"github.com/sessionha/sessionha/local/site"
)

var creds = credentials.NewStaticCredentialsProvider(site.AccessKeyID, site.SecretAccessKey, "")

// DynamoDB starts the local DynamoDB (one replica, in this process, on a free 127.0.0.1
// port) and returns a client for it and the func that stops it.
func DynamoDB(ctx context.Context) (*dynamodb.Client, func(), error) {
	r := dynamo.New(dynamo.Options{})
	srv, err := r.Listen("127.0.0.1:0")
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	db := dynamodb.New(dynamodb.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: creds})
	return db, func() { srv.Close(); r.Close() }, nil
}

// Bus starts fauxqs and returns SNS and SQS clients for it and the func that stops it.
func Bus(ctx context.Context) (*sns.Client, *sqs.Client, func(), error) {
	fq, err := emulator.StartFauxqs(ctx, emulator.Options{})
	if err != nil {
		return nil, nil, nil, err
	}
	ep := aws.String(fq.Endpoint)
	return sns.New(sns.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds}),
		sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: ep, Credentials: creds}), fq.Stop, nil
}

// CreateSessionTable makes a table keyed like the session table (pk), without the rest
// of the topology.
func CreateSessionTable(ctx context.Context, db *dynamodb.Client, name string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(name), BillingMode: ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String(topology.PartitionKey), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String(topology.PartitionKey), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	return nil
}

// Site starts a whole local site on free ports, with logs and bootstraps in runDir and
// the functions' output also in fnOut (may be nil). It runs the default schedule's shape
// on a shorter clock: the functions' timeout is 2 s (the queues' visibility timeout 6 ×
// that, as AWS advises, so that a slow invocation on a loaded machine is not received
// twice), and a failed op is retried after 1 s, then every 2 s, so that the 20 receives
// before the DLQ take under a minute rather than an hour (a message that can never apply
// goes to the DLQ at its first receive anyway).
func Site(ctx context.Context, runDir string, fnOut io.Writer) (*site.Site, error) {
	return site.Start(ctx, site.Options{
		EdgePort: -1, RunDir: runDir, FunctionOutput: fnOut,
		Settings: topology.Settings{FunctionTimeout: 2 * time.Second, RetryBase: time.Second, RetryMax: 2 * time.Second},
	})
}

// Deadline is how long Eventually waits: generous, for a loaded CI machine.
const Deadline = 45 * time.Second

// Eventually polls cond until it holds, or fails the test after Deadline with what and
// cond's last account of itself.
func Eventually(t testing.TB, what string, cond func() (ok bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, Deadline, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// RunWithSite is a TestMain for packages that share one site: it starts the site (with
// Site's settings, logs in a temporary directory removed afterwards), hands it to set,
// runs the tests and stops the site whatever happened. Use os.Exit(RunWithSite(m, ...)).
func RunWithSite(m *testing.M, fnOut io.Writer, set func(*site.Site)) int {
	tmp, err := os.MkdirTemp("", "sessionha-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	s, err := Site(context.Background(), tmp, fnOut)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local site:", err)
		return 1
	}
	defer s.Stop()
	set(s)
	return m.Run()
}
