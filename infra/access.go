package main

import "github.com/sessionha/sessionha/infra/topology"

// access is what one function does with its site's resources beyond consuming its own
// queue (the SQS event source grants that): the IAM actions it is given, and the metrics
// it emits for the dashboard. The topology says which functions exist and what feeds
// them; what they may call is an AWS matter, so it is written down here, next to the
// code that grants it. A topology function missing here stops the synth: a new function
// must not deploy with guessed permissions.
type access struct {
	// TableActions on the session table's replica in the site's region.
	TableActions []string
	// Publish lists the topic IDs the function publishes to: sns:Publish on each, and the
	// topic key's kms:GenerateDataKey and kms:Decrypt that publishing to an encrypted
	// topic needs.
	Publish []string
	// DeadLetters: the function sends what can never apply to its own queue's
	// dead-letter queue itself (sqs:SendMessage on that DLQ, nothing else), rather than
	// waiting for the queue's redrive policy (internal/batch). Hiding a failed message
	// for its retry (sqs:ChangeMessageVisibility on its own queue) comes with consuming it.
	DeadLetters bool
	// Metrics are the names the function emits in CloudWatch's embedded metric format
	// (namespace metricsNamespace, dimension "function" = the function's topology ID).
	Metrics []string
}

// metricsNamespace and metricsDimension are where the functions' EMF counters land (see
// internal/batch.Emit).
const (
	metricsNamespace = "sessionha"
	metricsDimension = "function"
)

// functionAccess is every function's access, by topology function ID.
var functionAccess = map[string]access{
	// sessionop applies operations as read-merge-conditional-put (internal/record): a
	// BatchGetItem of the session item and its logout item, then PutItem with a
	// condition; it never deletes (TTL does) and never scans. It publishes superseded
	// notices on the notice topic (functions/sessionop/handler/owner.go).
	topology.FunctionSessionOp: {
		TableActions: []string{"dynamodb:BatchGetItem", "dynamodb:PutItem"},
		DeadLetters:  true,
		Publish:      []string{topology.TopicNotice},
		Metrics:      []string{"Applied", "Unchanged", "Rejected", "DeadLettered", "Failed", "Reads", "Writes", "Conflicts", "Destroyed", "Superseded", "SupersededFailed"},
	},
	// sessionquery answers a query with a consistent BatchGetItem of the session item and
	// its logout item and publishes the reply on the reply topic.
	topology.FunctionSessionQuery: {
		TableActions: []string{"dynamodb:BatchGetItem"},
		Publish:      []string{topology.TopicReply},
		DeadLetters:  true,
		Metrics:      []string{"Queries", "Found", "Missing", "Destroyed", "Rejected", "DeadLettered", "Failed", "Expired"},
	},
	// lifecycle reads the table's stream (its event source grants that) and publishes
	// lifecycle events on the lifecycle topic; it never touches the table itself. Its
	// metrics are functions/lifecycle/handler.MetricNames.
	topology.FunctionLifecycle: {
		Publish: []string{topology.TopicLifecycle},
		Metrics: []string{"Records", "Created", "Destroyed", "Expired", "Moved", "OtherSite", "NoEvent", "Unknown", "Failed"},
	},
}
