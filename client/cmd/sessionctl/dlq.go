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
it was sent: to the DLQ for one a function dead-lettered, to its topic for the others),
how often it was received from its source queue, its size, and the reason.

A message that can never apply (malformed, too-large, schema-version, invalid) is
dead-lettered by the function at its first receive, with the reason as message
attributes: the reason shows the kind and the function's message, and "redriven N×"
once it has been moved back and dead-lettered again. Any other message got there
because it failed on every one of its source queue's maxReceiveCount receives (an
outage longer than the retry schedule, a function that cannot start): its body is
decoded as the function decodes it, and a valid one shows "valid (failed to apply)",
which a redrive fixes once the cause is gone. It never prints a body, a session id or
an attribute value of a session.

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
		name: "dlq redrive", args: "[--queue ops|query|all] [--valid-only] [--poison]",
		summary: "move dead messages back to the queue they came from",
		help: `
Moves the messages of the site's dead-letter queues back to their source queues (ops or
query), where the functions take them again: each message is sent to the source queue
with its body and attributes (the function's reason taken off, the redrive count
sessionha.redrives raised by one), then deleted from the dead-letter queue. It moves at
most the messages that were there when it started, and never one twice.

It leaves the messages a function dead-lettered because they can never apply: moved
back, they would only be dead-lettered again at their first receive. With --poison it
moves them too, for when they can apply now (say, schema-version messages after the
functions were upgraded to read that version); those that still cannot come back to
the dead-letter queue once, with their redrive count, and stay there until moved again
by hand: nothing circles on its own. With --valid-only it also leaves the other messages
whose body does not decode with this build of sessionctl.

fauxqs (the local stack) has no StartMessageMoveTask, so this works by receive, send and
delete, on AWS too; a message is sent before it is deleted, so an interruption may leave
a copy in both queues, which the functions apply once (every write is idempotent).`,
		flags: func(fs *flag.FlagSet) func(context.Context, *app, []string) error {
			queue := queueFlag(fs)
			validOnly := fs.Bool("valid-only", false, "move only messages that decode; leave those that can never apply")
			poison := fs.Bool("poison", false, "also move messages a function dead-lettered as never applying (after an upgrade that reads them)")
			return func(ctx context.Context, a *app, args []string) error {
				if len(args) > 0 {
					return usagef("dlq redrive takes no arguments, got %q", args[0])
				}
				if *validOnly && *poison {
					return usagef("--valid-only and --poison contradict each other")
				}
				qs, err := dlqsFor(*queue)
				if err != nil {
					return err
				}
				return a.dlqRedrive(ctx, qs, redriveOptions{validOnly: *validOnly, poison: *poison})
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

// sentAt is when the message was sent: first, for one the queue's redrive policy moved
// (SQS keeps the time through the move), or to the DLQ, for one a function dead-lettered.
func sentAt(m types.Message) time.Time {
	ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// attr is a message attribute's string value, "" if absent.
func attr(m types.Message, name string) string {
	return aws.ToString(m.MessageAttributes[name].StringValue)
}

// poisoned reports whether a function dead-lettered m as never applying.
func poisoned(m types.Message) bool { return attr(m, events.DeadLetterKind) != "" }

// reason says why a dead message failed, without quoting its body: the function's
// reason if it dead-lettered it, else what decoding the body says.
func reason(dq deadQueue, m types.Message) string {
	var r string
	if kind := attr(m, events.DeadLetterKind); kind != "" {
		r = kind + ": " + short(attr(m, events.DeadLetterReason))
	} else if err := dq.decode([]byte(aws.ToString(m.Body))); err == nil {
		r = "valid (failed to apply)"
	} else {
		r = events.ErrorKind(err) + ": " + short(err.Error())
	}
	if n, _ := strconv.Atoi(attr(m, events.Redrives)); n > 0 {
		r += fmt.Sprintf(" (redriven %d×)", n)
	}
	return r
}

// short is an error message without its package prefix, at most 160 bytes.
func short(msg string) string {
	msg = strings.TrimPrefix(msg, "events: ")
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return msg
}

// receives is how often m was received from its source queue: as the function recorded
// it when it dead-lettered m, else SQS's count (kept through the redrive policy's move).
func receives(m types.Message) string {
	if n := attr(m, events.DeadLetterReceiveCount); n != "" {
		return n
	}
	return m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]
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
				receives(m), len(aws.ToString(m.Body)), reason(dq, m))
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

// redriveOptions say which dead messages a redrive leaves.
type redriveOptions struct {
	validOnly bool // leave what does not decode
	poison    bool // move what a function dead-lettered as never applying, too
}

// leave reports whether a redrive with o leaves m where it is.
func (o redriveOptions) leave(dq deadQueue, m types.Message) bool {
	if poisoned(m) {
		return !o.poison
	}
	return o.validOnly && dq.decode([]byte(aws.ToString(m.Body))) != nil
}

func (a *app) dlqRedrive(ctx context.Context, qs []deadQueue, o redriveOptions) error {
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
		moved, kept, err := redrive(ctx, q, dq, url, srcURL, bound, o)
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

// redrive moves at most bound messages from a DLQ to its source queue, none twice: a
// message it moved that a function dead-letters again meanwhile (it names the id it had
// on the source queue) is left for the next run.
func redrive(ctx context.Context, q *sqs.Client, dq deadQueue, dlqURL, srcURL string, bound int, o redriveOptions) (moved, kept int, err error) {
	sentIDs := map[string]bool{} // ids on the source queue of the messages this run moved
	var keep []types.Message     // hidden while we work, released at the end
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
			if o.leave(dq, m) || sentIDs[attr(m, events.DeadLetterMessageID)] {
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
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: m.Body, MessageAttributes: redriven(m)}
		}
		sent, err := q.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(srcURL), Entries: entries})
		if err != nil {
			return moved, len(keep), explain(err, "send to the source queue")
		}
		var del []types.DeleteMessageBatchRequestEntry
		for _, ok := range sent.Successful {
			i, _ := strconv.Atoi(aws.ToString(ok.Id))
			sentIDs[aws.ToString(ok.MessageId)] = true
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

// redriven are the attributes m goes back to its source queue with: its own, without the
// reason a function added, and the redrive count raised by one.
func redriven(m types.Message) map[string]types.MessageAttributeValue {
	attrs := map[string]types.MessageAttributeValue{}
	for k, v := range m.MessageAttributes {
		if !strings.HasPrefix(k, events.DeadLetterPrefix) {
			attrs[k] = v
		}
	}
	n, _ := strconv.Atoi(attr(m, events.Redrives))
	attrs[events.Redrives] = types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(n + 1))}
	return attrs
}
