package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/infra/topology"
	"github.com/sessionha/sessionha/internal/record"
)

// rawItem reads a session's item straight from the table (consistent), nil if none.
func rawItem(t *testing.T, id string) map[string]ddbtypes.AttributeValue {
	t.Helper()
	out, err := theSite.DynamoDBClient().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(theSite.Outputs.Table),
		Key:            map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: record.Key("default", events.HashID(id))}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	return out.Item
}

// TestIdleSessionNotReturned: once idle past MaxIdle a session is not returned by any
// instance, its creator included, while its item is still in the table (DynamoDB's TTL
// deletes it later: the local stack's sweep waits a minute past expiry, as AWS's comes
// late, so every read must filter).
func TestIdleSessionNotReturned(t *testing.T) {
	a := startInstance(t, "auth-idle-a")
	b := startInstance(t, "auth-idle-b")
	// The session's last access is at least this (kept to the millisecond, rounded down).
	start := time.Now().Truncate(time.Millisecond)
	created := a.do(Command{Cmd: "create", Principal: "bob", MaxIdle: "2s", Attrs: map[string]string{"k": "v"}})
	if !created.OK {
		t.Fatalf("create: %s", describe(created))
	}
	eventually(t, "the session is applied to the table", func() (bool, string) {
		return rawItem(t, created.ID) != nil, "no item"
	})
	if time.Since(start) < 1500*time.Millisecond {
		if r := b.do(Command{Cmd: "load", ID: created.ID}); !r.OK && time.Since(start) < 1500*time.Millisecond {
			t.Fatalf("B cannot load a live session: %s", describe(r))
		}
	}
	eventually(t, "neither instance returns the idle session", func() (bool, string) {
		ra, rb := a.do(Command{Cmd: "load", ID: created.ID}), b.do(Command{Cmd: "load", ID: created.ID})
		return ra.NotFound && rb.NotFound, "A " + describe(ra) + ", B " + describe(rb)
	})
	if idle := time.Since(start); idle < 2*time.Second {
		t.Fatalf("session refused after %s, before its MaxIdle of 2s", idle)
	}
	if rawItem(t, created.ID) == nil {
		t.Fatal("the item is gone already: the check could not show that reads filter expired items")
	}
}

// TestPoisonMessages: every kind of message that can never apply, published straight to the
// ops topic between valid ones, fails alone and reaches the DLQ at its first receive, with
// its reason as message attributes (never a session id): the valid ones are applied, and
// each rejection is logged once, with its kind and reason.
func TestPoisonMessages(t *testing.T) {
	ctx := context.Background()
	bus := sns.NewFromConfig(theSite.AWS)
	topic := theSite.Outputs.TopicARNs[topology.TopicOps]
	id1, ok1 := validOp(t, "poison-test")
	id2, ok2 := validOp(t, "poison-test")
	tmplID, tmpl := validOp(t, "poison-test")
	// Every kind of message that can never apply, each with the kind the function gives it.
	poison := map[string]struct{ body, kind string }{
		"malformed JSON":        {`{"v":1,"op":"create","cluster":`, "malformed"},
		"unknown version":       {strings.Replace(tmpl, `"v":1`, `"v":2`, 1), "schema-version"},
		"unknown op":            {strings.Replace(tmpl, `"op":"create"`, `"op":"upsert"`, 1), "invalid"},
		"missing field":         {strings.Replace(tmpl, `"cluster":"default",`, ``, 1), "invalid"},
		"invalid field":         {strings.Replace(tmpl, `"maxIdle":600`, `"maxIdle":-5`, 1), "invalid"},
		"id not 256 bits":       {regexp.MustCompile(`"id":"[^"]+"`).ReplaceAllString(tmpl, `"id":"c2hvcnQ"`), "invalid"},
		"oversized":             {`{"v":1,"op":"save","pad":"` + strings.Repeat("x", events.MaxMessageBytes+1024) + `"}`, "too-large"},
		"not an object":         {`["create"]`, "malformed"},
		"wrong type of a field": {strings.Replace(tmpl, `"at":`, `"at":"soon","x":`, 1), "malformed"},
	}
	logStart := len(fnLog.String())
	bodies := []string{ok1}
	for _, p := range poison {
		bodies = append(bodies, p.body)
	}
	bodies = append(bodies, ok2)
	for _, body := range bodies {
		if _, err := bus.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(topic), Message: aws.String(body)}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for _, id := range []string{id1, id2} {
		eventually(t, "a valid op next to poison ones is applied", func() (bool, string) {
			return rawItem(t, id) != nil, "no item"
		})
	}

	q := sqs.NewFromConfig(theSite.AWS)
	dlq := theSite.Outputs.QueueURLs[topology.QueueOpsDLQ]
	dead := map[string]sqstypes.Message{} // by body
	eventually(t, "every poison message reaches the ops DLQ", func() (bool, string) {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			VisibilityTimeout: 600, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range out.Messages {
			dead[aws.ToString(m.Body)] = m
		}
		missing := 0
		for _, p := range poison {
			if _, ok := dead[p.body]; !ok {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d dead messages so far, %d poison ones missing", len(dead), missing)
	})
	for _, ok := range []string{ok1, ok2} {
		if _, found := dead[ok]; found {
			t.Error("a valid message reached the DLQ")
		}
	}

	// Each dead message says why, where from, and after how many receives: one.
	attr := func(m sqstypes.Message, name string) string {
		return aws.ToString(m.MessageAttributes[name].StringValue)
	}
	origIDs := map[string]string{} // original message id -> poison name
	for name, p := range poison {
		m := dead[p.body]
		if got := attr(m, "sessionha.dlq.kind"); got != p.kind {
			t.Errorf("%s: dead-lettered with kind %q, want %q", name, got, p.kind)
		}
		if attr(m, "sessionha.dlq.reason") == "" {
			t.Errorf("%s: dead-lettered without a reason", name)
		}
		if got := attr(m, "sessionha.dlq.function"); got != topology.FunctionSessionOp {
			t.Errorf("%s: function %q", name, got)
		}
		if got, want := attr(m, "sessionha.dlq.source-queue"), theSite.Outputs.QueueARNs[topology.QueueOps]; got != want {
			t.Errorf("%s: source queue %q, want %q", name, got, want)
		}
		if got := attr(m, "sessionha.dlq.receive-count"); got != "1" {
			t.Errorf("%s: dead-lettered after %q receives, want 1", name, got)
		}
		orig := attr(m, "sessionha.dlq.message-id")
		if orig == "" || orig == aws.ToString(m.MessageId) {
			t.Errorf("%s: original message id %q (the dead message's own is %s)", name, orig, aws.ToString(m.MessageId))
		}
		origIDs[orig] = name
		for k, v := range m.MessageAttributes {
			if s := aws.ToString(v.StringValue); strings.Contains(s, events.HashID(tmplID)) || strings.Contains(s, tmplID) {
				t.Errorf("%s: attribute %s carries a session id", name, k)
			}
		}
	}

	// Each was received once: one rejection logged per poison message, with its kind
	// and reason; and no log line carries a session id.
	rejections := map[string]int{} // original message id -> lines
	kinds := map[string]string{}   // kind -> a reason
	for _, line := range strings.Split(fnLog.String()[logStart:], "\n") {
		var l struct{ Msg, Kind, Reason, MessageID string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "record rejected" {
			rejections[l.MessageID]++
			if l.Reason != "" {
				kinds[l.Kind] = l.Reason
			}
		}
		for _, id := range []string{id1, id2, tmplID} {
			if strings.Contains(line, id) {
				t.Errorf("a function log line carries a session id: %s", line)
			}
		}
	}
	for orig, name := range origIDs {
		if rejections[orig] != 1 {
			t.Errorf("%s: rejected %d times, want once (dead-lettered at the first receive)", name, rejections[orig])
		}
	}
	for name, p := range poison {
		if kinds[p.kind] == "" {
			t.Errorf("%s: no rejection of kind %q logged with a reason (logged: %q)", name, p.kind, kinds)
		}
	}
}

// validOp returns a new session id and a create op for it.
func validOp(t *testing.T, writer string) (string, string) {
	t.Helper()
	var b [32]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	now := time.Now().UnixMilli()
	body, err := events.EncodeSessionOp(&events.SessionOp{
		V: events.SchemaVersion, Op: events.OpCreate, Cluster: "default", ID: events.HashID(id),
		Version: fmt.Sprintf("%016x", uint64(now)<<16), Writer: writer, Site: "local", At: now,
		Session: &events.Session{Principal: "carol", Created: now, LastAccess: now, MaxIdle: 600, MaxLife: 3600,
			Attrs: map[string][]byte{"k": []byte("v")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id, string(body)
}
