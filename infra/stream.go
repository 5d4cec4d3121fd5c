package main

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/customresources"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/sessionha/sessionha/infra/topology"
)

// The table's stream in a site's region feeds the functions the topology says (the
// lifecycle function). A global table has a stream per replica, each with its own ARN,
// whose label (a timestamp) is only known once the replica exists; CloudFormation gives
// the primary region's (Fn::GetAtt StreamArn) and no other. So the primary site's stack
// takes it from the table, and every other site's stack reads its replica's
// LatestStreamArn with DescribeTable at deploy time (a custom resource: the stacks of the
// other regions are deployed after the primary's, so the replica exists by then).

// streamTable is the table whose stream feeds this site's functions: the global table in
// the primary's stack, its replica in this region otherwise.
func (s *site) streamTable() awsdynamodb.ITable {
	if s.stream != nil {
		return s.stream
	}
	if s.table != nil {
		s.stream = s.table
		return s.stream
	}
	name := s.topo.Table.Name
	lookup := customresources.NewAwsCustomResource(s.stack, jsii.String("ReplicaStream"), &customresources.AwsCustomResourceProps{
		OnCreate:            describeTable(name),
		OnUpdate:            describeTable(name),
		Policy:              customresources.AwsCustomResourcePolicy_FromSdkCalls(&customresources.SdkCallsPolicyOptions{Resources: &[]*string{s.tableARN}}),
		InstallLatestAwsSdk: jsii.Bool(false),
	})
	// The CDK's provider of such lookups (one Lambda function per stack, Node.js) runs
	// with the managed basic execution role, which nag flags.
	provider := "AWS" + strings.ReplaceAll(*customresources.AwsCustomResource_PROVIDER_FUNCTION_UUID(), "-", "")
	cdknag.NagSuppressions_AddResourceSuppressionsByPath(s.stack, jsii.String("/"+*s.stack.StackName()+"/"+provider+"/ServiceRole/Resource"), &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-IAM4"),
		Reason: jsii.String("The CDK's AwsCustomResource provider reads this region's replica's stream ARN once per deploy (DescribeTable on the session table only, see ReplicaStream's policy); " +
			"its role takes AWSLambdaBasicExecutionRole for its own logs, which the CDK attaches and no stack can narrow."),
		AppliesTo: &[]any{"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"},
	}}, jsii.Bool(false))
	s.stream = awsdynamodb.TableV2_FromTableAttributes(s.stack, jsii.String("ReplicaTable"), &awsdynamodb.TableAttributesV2{
		TableName:      jsii.String(name),
		TableStreamArn: lookup.GetResponseField(jsii.String("Table.LatestStreamArn")),
	})
	return s.stream
}

// describeTable is the custom resource's call: the replica of this region, as it is now.
func describeTable(name string) *customresources.AwsSdkCall {
	return &customresources.AwsSdkCall{
		Service: jsii.String("DynamoDB"), Action: jsii.String("describeTable"),
		Parameters:         map[string]any{"TableName": name},
		PhysicalResourceId: customresources.PhysicalResourceId_FromResponse(jsii.String("Table.LatestStreamArn")),
		OutputPaths:        jsii.Strings("Table.LatestStreamArn"),
	}
}

// streamSource is the event source mapping of a stream-fed function: the topology's
// starting position, batch, retries, age limit and bisection, its on-failure destination
// (an SQS queue: the batches given up on), and partial batch failures. The CDK grants the
// function reading the stream (and dynamodb:ListStreams, which has no resource-level
// permission) and sending to the destination.
func (s *site) streamSource(f topology.Function) (awslambda.IEventSource, error) {
	src := f.Stream
	dlq := s.queues[src.OnFailure]
	if dlq == nil {
		return nil, fmt.Errorf("function %s: its stream's on-failure queue %q is not in the topology", f.ID, src.OnFailure)
	}
	// nag knows a dead-letter queue only by a redrive policy that names it.
	cdknag.NagSuppressions_AddResourceSuppressions(dlq, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-SQS3"),
		Reason: jsii.String("This queue is the on-failure destination of function " + f.ID + "'s stream event source mapping: a dead-letter queue itself, " +
			"with a depth alarm like the others, though no redrive policy names it."),
	}}, jsii.Bool(false))
	start := awslambda.StartingPosition_TRIM_HORIZON
	if src.StartingPosition == "LATEST" {
		start = awslambda.StartingPosition_LATEST
	}
	return awslambdaeventsources.NewDynamoEventSource(s.streamTable(), &awslambdaeventsources.DynamoEventSourceProps{
		StartingPosition:        start,
		BatchSize:               jsii.Number(f.BatchSize),
		MaxBatchingWindow:       seconds(f.BatchingWindow),
		BisectBatchOnError:      jsii.Bool(src.BisectOnError),
		RetryAttempts:           jsii.Number(src.RetryAttempts),
		MaxRecordAge:            seconds(src.MaxRecordAge),
		OnFailure:               awslambdaeventsources.NewSqsDlq(dlq),
		ReportBatchItemFailures: jsii.Bool(true), // a record's failure is retried from it, not its batch-mates before it
	}), nil
}
