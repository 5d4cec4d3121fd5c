package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
)

func init() {
	queueFlag := func(fs *flag.FlagSet) *string {
		return fs.String("queue", "all", "which dead-letter queue: ops, query or all")
	}
	commands = append(commands, &command{
		name: "dlq list", args: "[--queue ops|query|all]",
		summary: "list dead messages: queue, age, receives, size and why they failed",
		help: `
Lists the messages in the site's dead-letter queues (sessionha-SITE-ops-dlq and
sessionha-SITE-query-dlq, SITE from SESSIONHA_SITE): the SQS message id, the age (since
the message was first sent), how often it was received, its size, and the reason: the
body is decoded as the function decodes it, and a body that can never apply shows the
error's kind and message (malformed, too-large, schema-version, invalid); a valid body
shows "valid (failed to apply)", which a redrive may fix. It never prints a body, a
session id or an attribute value.

Listing hides each message for a few seconds and then makes it visible again.`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			queue := queueFlag(fs)
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("dlq list takes no arguments, got %q", args[0])
				}
				qs, err := dlqsFor(*queue)
				if err != nil {
					return err
				}
				return a.dlqList(ctx, qs)
			}
		},
	}, &command{
		name: "dlq redrive", args: "[--queue ops|query|all] [--valid-only]",
		summary: "move dead messages back to the queue they came from",
		help: `
Moves the messages of the site's dead-letter queues back to their source queues (ops or
query), where the functions take them again: each message is sent to the source queue
with its body and attributes, then deleted from the dead-letter queue. It moves at most
the messages that were there when it started. With --valid-only it moves only messages
that decode (those that failed to apply, say while the table was throttling) and leaves
the others, which would only fail again.

fauxqs (the local stack) has no StartMessageMoveTask, so this works by receive, send and
delete, on AWS too; a message is sent before it is deleted, so an interruption may leave
a copy in both queues, which the functions apply once (every write is idempotent).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			queue := queueFlag(fs)
			validOnly := fs.Bool("valid-only", false, "move only messages that decode; leave those that can never apply")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("dlq redrive takes no arguments, got %q", args[0])
				}
				qs, err := dlqsFor(*queue)
				if err != nil {
					return err
				}
				return a.dlqRedrive(ctx, qs, *validOnly)
			}
		},
	})
}

// deadQueue is a dead-letter queue and the queue it serves.
type deadQueue struct {
	id, source string // topology queue IDs
	decode     func([]byte) error
}

var deadQueues = []deadQueue{
	{id: topology.QueueOpsDLQ, source: topology.QueueOps, decode: func(b []byte) error { _, err := events.DecodeSessionOp(b); return err }},
	{id: topology.QueueQueryDLQ, source: topology.QueueQuery, decode: func(b []byte) error { _, err := events.DecodeQuery(b); return err }},
}

func dlqsFor(which string) ([]deadQueue, error) {
	switch which {
	case "all":
		return deadQueues, nil
	case "ops":
		return deadQueues[:1], nil
	case "query":
		return deadQueues[1:], nil
	}
	return nil, usagef("--queue %q: want ops, query or all", which)
}

// queueURL finds a queue of the site's topology by its topology ID.
func queueURL(ctx context.Context, q *sqs.Client, topo topology.Topology, id string) (name, url string, err error) {
	qu, ok := topo.Queue(id)
	if !ok {
		return "", "", fmt.Errorf("the topology has no queue %q", id)
	}
	out, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(qu.Name)})
	if err != nil {
		return qu.Name, "", explain(err, "queue "+qu.Name)
	}
	return qu.Name, aws.ToString(out.QueueUrl), nil
}

// peekHide is how long a listed message stays hidden before it is released.
const peekHide = 30

// peek receives up to max messages of a queue, hiding them while it looks, and returns
// them with a release function that makes them visible again at once.
func peek(ctx context.Context, q *sqs.Client, url string, max int) ([]types.Message, func(), error) {
	var msgs []types.Message
	seen := map[string]bool{}
	release := func() {
		for i := 0; i < len(msgs); i += 10 {
			var entries []types.ChangeMessageVisibilityBatchRequestEntry
			for j, m := range msgs[i:min(i+10, len(msgs))] {
				entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{
					Id: aws.String(strconv.Itoa(j)), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
				})
			}
			// Best effort: a message not released comes back after peekHide seconds anyway.
			_, _ = q.ChangeMessageVisibilityBatch(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries})
		}
	}
	for len(msgs) < max {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: int32(min(10, max-len(msgs))),
			VisibilityTimeout: peekHide, WaitTimeSeconds: 1, // a long poll asks every SQS server, a short one a sample
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			MessageAttributeNames:       []string{"All"},
		})
		if err != nil {
			release()
			return nil, func() {}, explain(err, "receive")
		}
		fresh := 0
		for _, m := range out.Messages {
			if !seen[aws.ToString(m.MessageId)] {
				seen[aws.ToString(m.MessageId)] = true
				msgs = append(msgs, m)
				fresh++
			}
		}
		if fresh == 0 {
			break
		}
	}
	return msgs, release, nil
}

// sentAt is when the message was first sent (SQS keeps it through the move to the DLQ).
func sentAt(m types.Message) time.Time {
	ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// reason says why a dead message failed, without quoting its body.
func reason(dq deadQueue, m types.Message) string {
	err := dq.decode([]byte(aws.ToString(m.Body)))
	if err == nil {
		return "valid (failed to apply)"
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "events: ")
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return events.ErrorKind(err) + ": " + msg
}

func (a *app) dlqList(ctx context.Context, qs []deadQueue) error {
	c, topo, err := siteClients(ctx)
	if err != nil {
		return err
	}
	q := c.sqs()
	now := a.now()
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tMESSAGE ID\tAGE\tRECEIVES\tBYTES\tREASON")
	var counts []string
	total := 0
	for _, dq := range qs {
		name, url, err := queueURL(ctx, q, topo, dq.id)
		if err != nil {
			return err
		}
		msgs, release, err := peek(ctx, q, url, 1000)
		if err != nil {
			return err
		}
		release()
		for _, m := range msgs {
			age := "-"
			if t := sentAt(m); !t.IsZero() {
				age = now.Sub(t).Round(time.Second).String()
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", name, aws.ToString(m.MessageId), age,
				m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)], len(aws.ToString(m.Body)), reason(dq, m))
		}
		counts = append(counts, fmt.Sprintf("%s %d", name, len(msgs)))
		total += len(msgs)
	}
	w.Flush()
	fmt.Fprintf(a.stdout, "%d dead messages (%s)\n", total, strings.Join(counts, ", "))
	return nil
}

// depth is how many messages a queue holds, visible or not.
func depth(ctx context.Context, q *sqs.Client, url string) (int, error) {
	out, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, explain(err, "queue attributes")
	}
	n := 0
	for _, k := range []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages, types.QueueAttributeNameApproximateNumberOfMessagesNotVisible} {
		v, _ := strconv.Atoi(out.Attributes[string(k)])
		n += v
	}
	return n, nil
}

func (a *app) dlqRedrive(ctx context.Context, qs []deadQueue, validOnly bool) error {
	c, topo, err := siteClients(ctx)
	if err != nil {
		return err
	}
	q := c.sqs()
	for _, dq := range qs {
		name, url, err := queueURL(ctx, q, topo, dq.id)
		if err != nil {
			return err
		}
		srcName, srcURL, err := queueURL(ctx, q, topo, dq.source)
		if err != nil {
			return err
		}
		bound, err := depth(ctx, q, url)
		if err != nil {
			return err
		}
		moved, kept, err := redrive(ctx, q, dq, url, srcURL, bound, validOnly)
		line := fmt.Sprintf("%s -> %s: moved %d", name, srcName, moved)
		if kept > 0 {
			line += fmt.Sprintf(", left %d that can never apply (see sessionctl dlq list)", kept)
		}
		fmt.Fprintln(a.stdout, line)
		if err != nil {
			return fmt.Errorf("dlq redrive %s: %w\n  run it again to move the rest", name, err)
		}
	}
	return nil
}

// redrive moves at most bound messages from a DLQ to its source queue.
func redrive(ctx context.Context, q *sqs.Client, dq deadQueue, dlqURL, srcURL string, bound int, validOnly bool) (moved, kept int, err error) {
	var keep []types.Message // hidden while we work, released at the end
	defer func() {
		for i := 0; i < len(keep); i += 10 {
			var entries []types.ChangeMessageVisibilityBatchRequestEntry
			for j, m := range keep[i:min(i+10, len(keep))] {
				entries = append(entries, types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), ReceiptHandle: m.ReceiptHandle})
			}
			_, _ = q.ChangeMessageVisibilityBatch(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(dlqURL), Entries: entries})
		}
	}()
	for moved+len(keep) < bound {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: int32(min(10, bound-moved-len(keep))),
			VisibilityTimeout: 60, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return moved, len(keep), explain(err, "receive")
		}
		if len(out.Messages) == 0 {
			break
		}
		var send []types.Message
		for _, m := range out.Messages {
			if validOnly && dq.decode([]byte(aws.ToString(m.Body))) != nil {
				keep = append(keep, m)
				continue
			}
			send = append(send, m)
		}
		if len(send) == 0 {
			continue
		}
		entries := make([]types.SendMessageBatchRequestEntry, len(send))
		for i, m := range send {
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: m.Body, MessageAttributes: m.MessageAttributes}
		}
		sent, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(srcURL), Entries: entries})
		if err != nil {
			return moved, len(keep), explain(err, "send to the source queue")
		}
		var del []types.DeleteMessageBatchRequestEntry
		for _, ok := range sent.Successful {
			i, _ := strconv.Atoi(aws.ToString(ok.Id))
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: ok.Id, ReceiptHandle: send[i].ReceiptHandle})
		}
		if len(del) > 0 {
			dout, err := q.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(dlqURL), Entries: del})
			if err != nil {
				return moved, len(keep), explain(err, "delete from the dead-letter queue (the messages were sent: they are in both queues now)")
			}
			moved += len(dout.Successful)
		}
		if len(sent.Failed) > 0 {
			f := sent.Failed[0]
			return moved, len(keep), errors.New("the source queue refused " + strconv.Itoa(len(sent.Failed)) + " messages: " + aws.ToString(f.Code) + " " + aws.ToString(f.Message))
		}
	}
	return moved, len(keep), nil
}
