package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/tablespec"
)

func init() {
	commands = append(commands, &command{
		name: "create-store", args: "[--cluster NAME]",
		summary: "check the session table (key, TTL on expiresAt, per-user index), making what is missing",
		help: `
Checks the session table SESSIONHA_TABLE and makes what is missing: the table itself
(on-demand capacity, with a stream), TTL on expiresAt, and the byPrincipal index that
list and revoke use. Running it again changes nothing. A table with another key is
refused. Like Sun ONE's create-session-store, for a cluster: clusters share the table
(each session's key starts with its cluster) and clear apart.

On AWS the CDK stack makes the table (a global table with point-in-time recovery and
deletion protection): there, create-store only checks it; a table it creates is a plain
regional one, fit for LocalStack or a test account.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			cluster := fs.String("cluster", "", "the `NAME` of the cluster the store is for (default SESSIONHA_CLUSTER, else default)")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("create-store takes no arguments, got %q", args[0])
				}
				return a.createStore(ctx, *cluster)
			}
		},
	}, &command{
		name: "clear-store", args: "--cluster NAME [--yes] [--wait D]",
		summary: "delete every session of one cluster",
		help: `
Deletes every item of cluster NAME from the session table (sessions, tombstones and
logout items), and nothing of any other cluster, like Sun ONE's clear-session-store. It
scans the table for keys that start with "NAME#" (a logout item's key is its session's
and "#logout") and deletes them in batches, with a progress bar on a terminal, then
prints how many it deleted. With sites in several regions, the deletes reach the other
regions' replicas by replication, like any write.

A tombstone and a logout item are what keep a logged-out session out for good: an op of
the session still on its way (in the ops queue, or in its dead-letter queue waiting for a
redrive) would bring the session back once they are gone. So clear-store first waits up to
--wait for the site's ops queue to be empty, and refuses (exit status 1, nothing
deleted) while it is not, or while the ops dead-letter queue holds an op of the cluster
(see sessionctl dlq list; redrive or purge it first). Messages that can never apply do
not count. An op that arrives while it clears is reported, and clear-store fails: run it
again once the queue is empty.

Stop the cluster's auth servers first: an instance still running keeps the sessions it
holds in memory and may write them again. From a terminal it wants --yes.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			cluster := fs.String("cluster", "", "the `NAME` of the cluster to clear (required: never a default)")
			yes := fs.Bool("yes", false, "do it without asking (needed when stdin is a terminal)")
			wait := fs.Duration("wait", 30*time.Second, "how long to wait for the ops queue to empty before refusing")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("clear-store takes no arguments, got %q", args[0])
				}
				if *cluster == "" {
					return usagef("clear-store: --cluster NAME is required (which cluster's sessions to delete)")
				}
				if err := checkCluster(*cluster); err != nil {
					return err
				}
				return a.clearStore(ctx, *cluster, *yes, *wait)
			}
		},
	})
}

func (a *app) createStore(ctx context.Context, cluster string) error {
	cluster, table, err := clusterTable(cluster)
	if err != nil {
		return err
	}
	c, topo, err := siteClients(ctx)
	if err != nil {
		return err
	}
	t := topo.Table
	spec := tablespec.Spec{Name: table, PartitionKey: t.PartitionKey, TTLAttribute: t.TTLAttribute}
	for _, ix := range t.Indexes {
		spec.Indexes = append(spec.Indexes, tablespec.Index{Name: ix.Name, PartitionKey: ix.PartitionKey, SortKey: ix.SortKey, Include: ix.Include})
	}
	rep, err := tablespec.Ensure(ctx, c.dynamodb(), spec)
	if err != nil {
		return explain(err, "create-store: table "+table)
	}
	state := "in order"
	if rep.Created {
		state = "created (on-demand capacity, stream of new and old images)"
	}
	fmt.Fprintf(a.stdout, "table %s: %s\n", table, state)
	ttl := "on"
	if rep.TTLEnabled {
		ttl = "turned on"
	}
	fmt.Fprintf(a.stdout, "  TTL on %s: %s\n", spec.TTLAttribute, ttl)
	for _, ix := range spec.Indexes {
		st := "present"
		if rep.Created {
			st = "created"
		}
		for _, added := range rep.IndexesAdded {
			if added == ix.Name {
				st = "added"
			}
		}
		fmt.Fprintf(a.stdout, "  index %s (%s, %s): %s\n", ix.Name, ix.PartitionKey, ix.SortKey, st)
	}
	if !rep.Streams {
		fmt.Fprintln(a.stdout, "  note: the table has no stream (cross-region replication needs one)")
	}
	fmt.Fprintf(a.stdout, "cluster %s: ready (clusters share the table and clear apart: sessionctl clear-store --cluster %s)\n", cluster, cluster)
	return nil
}

// scanner is the DynamoDB API clear-store uses.
type scanner interface {
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
}

func (a *app) clearStore(ctx context.Context, cluster string, yes bool, wait time.Duration) error {
	table, err := tableName()
	if err != nil {
		return err
	}
	if a.stdinTTY && !yes {
		return usagef("clear-store deletes every session of cluster %s in table %s, and cannot be undone: run it again with --yes", cluster, table)
	}
	c, topo, err := siteClients(ctx)
	if err != nil {
		return err
	}
	ops, err := opsQueues(ctx, c, topo, cluster)
	if err != nil {
		return err
	}
	if err := ops.waitQuiet(ctx, wait); err != nil {
		return fmt.Errorf("clear-store: refused, nothing deleted: %w", err)
	}
	db := c.dynamodb()
	var total int64 // DescribeTable's item count, for the progress bar: approximate, all clusters
	if d, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}); err != nil {
		return explain(err, "clear-store: table "+table)
	} else {
		total = aws.ToInt64(d.Table.ItemCount)
	}
	bar := &progress{w: a.stderr, on: a.stderrTTY, total: total}
	scanned, deleted, err := clearCluster(ctx, db, table, cluster, bar)
	bar.done()
	if err != nil {
		return fmt.Errorf("clear-store: %w\n  deleted %d items of cluster %s before that; run clear-store again to finish", err, deleted, cluster)
	}
	fmt.Fprintf(a.stdout, "deleted %d items of cluster %s from table %s (scanned %d items)\n", deleted, cluster, table, scanned)
	if err := ops.waitQuiet(ctx, 0); err != nil {
		return fmt.Errorf("clear-store: ops arrived while it cleared, which may have written sessions of cluster %s again: %w\n  run clear-store again once the queue is empty", cluster, err)
	}
	return nil
}

// opsWatch is the site's ops queue and its dead-letter queue, as clear-store checks them.
type opsWatch struct {
	q                *sqs.Client
	cluster          string
	queue, dlq       string // names
	queueURL, dlqURL string
}

func opsQueues(ctx context.Context, c *clients, topo topology.Topology, cluster string) (*opsWatch, error) {
	w := &opsWatch{q: c.sqs(), cluster: cluster}
	var err error
	if w.queue, w.queueURL, err = queueURL(ctx, w.q, topo, topology.QueueOps); err != nil {
		return nil, err
	}
	if w.dlq, w.dlqURL, err = queueURL(ctx, w.q, topo, topology.QueueOpsDLQ); err != nil {
		return nil, err
	}
	return w, nil
}

// waitQuiet waits up to wait for the ops queue to hold nothing (visible, in flight or
// delayed, of any cluster: its messages cannot be read without taking them), then checks
// that the dead-letter queue holds no op of the cluster; it says what it found if not.
func (w *opsWatch) waitQuiet(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		n, err := queued(ctx, w.q, w.queueURL)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%d messages are still in the ops queue %s (waited %s): their sessions' tombstones must stay until they are applied; run it again once the queue is empty (sessionctl stats shows it)", n, w.queue, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Second, time.Until(deadline))):
		}
	}
	msgs, release, err := peek(ctx, w.q, w.dlqURL, 1000)
	if err != nil {
		return err
	}
	release()
	n := 0
	for _, m := range msgs {
		if op, err := events.DecodeSessionOp([]byte(aws.ToString(m.Body))); err == nil && op.Cluster == w.cluster {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("the dead-letter queue %s holds %d ops of cluster %s, which a redrive would apply after their tombstones are gone; redrive them (sessionctl dlq redrive) and wait for them to apply, or purge them, first", w.dlq, n, w.cluster)
	}
	return nil
}

// queued is how many messages a queue holds: visible, in flight and delayed.
func queued(ctx context.Context, q *sqs.Client, url string) (int, error) {
	names := []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return 0, explain(err, "queue attributes")
	}
	n := 0
	for _, k := range names {
		v, _ := strconv.Atoi(out.Attributes[string(k)])
		n += v
	}
	return n, nil
}

// clearCluster scans the table for keys of the cluster and deletes them, 25 per
// BatchWriteItem, retrying what DynamoDB leaves unprocessed.
func clearCluster(ctx context.Context, db scanner, table, cluster string, bar *progress) (scanned, deleted int64, err error) {
	in := &dynamodb.ScanInput{
		TableName:                 aws.String(table),
		ProjectionExpression:      aws.String("pk"),
		FilterExpression:          aws.String("begins_with(pk, :prefix)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":prefix": &types.AttributeValueMemberS{Value: cluster + "#"}},
	}
	for {
		page, err := db.Scan(ctx, in)
		if err != nil {
			return scanned, deleted, explain(err, "scan")
		}
		scanned += int64(page.ScannedCount)
		// The filter keeps only the cluster's keys; check again anyway, so that no other
		// cluster's item is ever deleted whatever an emulator's filter does.
		var keys []map[string]types.AttributeValue
		for _, it := range page.Items {
			if pk, ok := it["pk"].(*types.AttributeValueMemberS); ok && strings.HasPrefix(pk.Value, cluster+"#") {
				keys = append(keys, it)
			}
		}
		for len(keys) > 0 {
			n := min(len(keys), 25)
			if err := deleteBatch(ctx, db, table, keys[:n]); err != nil {
				return scanned, deleted, err
			}
			deleted += int64(n)
			keys = keys[n:]
			bar.update(scanned, deleted)
		}
		bar.update(scanned, deleted)
		if len(page.LastEvaluatedKey) == 0 {
			return scanned, deleted, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

func deleteBatch(ctx context.Context, db scanner, table string, keys []map[string]types.AttributeValue) error {
	reqs := make([]types.WriteRequest, len(keys))
	for i, k := range keys {
		reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: map[string]types.AttributeValue{"pk": k["pk"]}}}
	}
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		out, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
		if err != nil {
			return explain(err, "delete")
		}
		reqs = out.UnprocessedItems[table]
		if len(reqs) == 0 {
			return nil
		}
		if attempt == 10 {
			return fmt.Errorf("%d deletes still unprocessed after %d attempts (the table is throttling)", len(reqs), attempt+1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// progress draws a bar on a terminal; elsewhere it stays silent.
type progress struct {
	w                io.Writer
	on               bool
	total            int64
	last             time.Time
	scanned, deleted int64
}

func (p *progress) update(scanned, deleted int64) {
	p.scanned, p.deleted = scanned, deleted
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.draw()
}

func (p *progress) draw() {
	scanned, deleted := p.scanned, p.deleted
	p.last = time.Now()
	const width = 30
	if p.total > 0 && scanned <= p.total {
		n := int(scanned * width / p.total)
		fmt.Fprintf(p.w, "\r[%s%s] scanned %d of ~%d items, deleted %d ", strings.Repeat("=", n), strings.Repeat(" ", width-n), scanned, p.total, deleted)
		return
	}
	fmt.Fprintf(p.w, "\rscanned %d items, deleted %d ", scanned, deleted)
}

// done draws the final count and ends the line.
func (p *progress) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
