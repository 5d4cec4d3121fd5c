// Package dynamo is the local stack's DynamoDB, built from open-source parts only:
// github.com/truora/minidyn (MIT, pure Go) is the engine, and this package is the layer
// in front of it that makes it answer as DynamoDB does where the project and its tools
// need it to.
//
// The engine keeps the items, evaluates condition, update, key, filter and projection
// expressions, and maintains secondary indexes. The layer adds what it lacks:
// ListTables, DescribeTimeToLive and UpdateTimeToLive with a TTL sweeper that deletes
// expired items late (they stay readable until swept, as on AWS), tagging, the parts of
// DescribeTable a waiter and an operator read (status, ARN, attribute definitions,
// stream), PutItem's and DeleteItem's ReturnValues and
// ReturnValuesOnConditionCheckFailure, DynamoDB's limits (400 KB items, 1 MB pages,
// 16 MB requests, no duplicate keys in a batch), answers with a Content-Length and a
// CRC32 as DynamoDB sends them, a JSON error for an unknown operation, and locking of
// table operations, which the engine does without.
//
// Every item write is captured with its images before and after, in order, as a Change:
// the replica's change feed (what DynamoDB Streams carries on AWS), which the
// replication stand-in (local/replication) uses to make several replicas behave like a
// global table, and Replicate applies a change from another region by last-writer-wins.
//
// Where only a change inside the engine could fix it, the engine carries a small patch
// (third_party/minidyn, PATCHES.md there): empty binaries, lists and maps keep their
// type, numeric and binary key values sort as numbers and bytes, and functions over a
// missing attribute are false.
package dynamo
