package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/smithy-go"

	"github.com/sessionha/sessionha/events"
	"github.com/sessionha/sessionha/internal/record"
)

// notices records what the handler publishes, decoded, and fails while fail is set.
type notices struct {
	mu   sync.Mutex
	got  []*events.Superseded
	fail error
}

func (n *notices) Publish(_ context.Context, in *sns.PublishInput, _ ...func(*sns.Options)) (*sns.PublishOutput, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	s, err := events.DecodeSuperseded([]byte(aws.ToString(in.Message)))
	if err != nil {
		return nil, err
	}
	if owner := aws.ToString(in.MessageAttributes["owner"].StringValue); owner != s.Owner || aws.ToString(in.TopicArn) != "notice-topic" {
		return nil, fmt.Errorf("published with owner attribute %q to %q, want %q to notice-topic", owner, aws.ToString(in.TopicArn), s.Owner)
	}
	n.got = append(n.got, s)
	return &sns.PublishOutput{}, nil
}

// take returns what was published since the last take, as "owner<-writer" (with
// "destroyed" when it says so).
func (n *notices) take() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, s := range n.got {
		x := s.Owner + "<-" + s.Writer
		if s.Destroyed {
			x += " destroyed"
		}
		out = append(out, x)
	}
	n.got = nil
	return strings.Join(out, ",")
}

// TestSupersededNotices: the instance whose copy an op supersedes is told, and nobody
// else: the old writer when another takes the session over, the writer of an op that
// lost to a newer one, the owner when another instance destroys the session, the writer
// of an op on a tombstone; a failed publish fails the record with nothing written, so
// that its redelivery sends the notice; a refusal lets the op through, counted.
func TestSupersededNotices(t *testing.T) {
	h, logs, metrics := newHandler(t)
	pub := &notices{}
	h.NotifyOwners(pub, "notice-topic")
	ctx := context.Background()
	create, _ := op(events.OpCreate, 100<<16, map[string][]byte{"a": []byte("1")})
	create.Writer = "auth-a"
	at := func(kind events.OpKind, hlc uint64, writer, value string) *events.SessionOp {
		o := *create
		o.Op, o.Version, o.Writer = kind, fmt.Sprintf("%016x", hlc), writer
		if kind == events.OpDestroy {
			o.Session = nil
			return &o
		}
		s := *create.Session
		s.Attrs = map[string][]byte{"a": []byte(value)}
		o.Session = &s
		return &o
	}
	deliver := func(o *events.SessionOp) (failed bool) {
		t.Helper()
		resp, err := h.Handle(ctx, lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "m", Body: body(t, o)}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(resp.BatchItemFailures) > 0
	}
	step := func(what string, o *events.SessionOp, want string) {
		t.Helper()
		if deliver(o) {
			t.Fatalf("%s: the record failed: %s", what, logs.String())
		}
		if got := pub.take(); got != want {
			t.Fatalf("%s: told %q, want %q", what, got, want)
		}
	}

	step("a create", create, "")
	step("the owner's own save", at(events.OpSave, 110<<16, "auth-a", "2"), "")
	step("a failover save by b", at(events.OpSave, 120<<16, "auth-b", "3"), "auth-a<-auth-b")
	step("a's save that lost to b's", at(events.OpSave, 115<<16, "auth-a", "x"), "auth-a<-auth-b")
	step("a duplicate of b's save", at(events.OpSave, 120<<16, "auth-b", "3"), "")

	// The bus fails: the record fails and nothing is written; its redelivery tells a.
	pub.fail = errors.New("connection refused")
	takeBack := at(events.OpSave, 130<<16, "auth-a", "4")
	if !deliver(takeBack) {
		t.Fatal("a takeover whose notice could not be published was not failed")
	}
	if it := get(t, create); string(it.Attrs["a"]) != "3" {
		t.Fatalf("the op was written although its notice was not sent: %q", it.Attrs["a"])
	}
	pub.fail = nil
	step("the redelivered takeover by a", takeBack, "auth-b<-auth-a")

	// A refusal that retrying cannot cure lets the op through, counted.
	pub.fail = &smithy.GenericAPIError{Code: "AuthorizationError", Message: "not allowed", Fault: smithy.FaultClient}
	if deliver(at(events.OpSave, 140<<16, "auth-c", "5")) {
		t.Fatal("an op whose notice the bus refused for good was failed")
	}
	pub.fail = nil
	if it := get(t, create); string(it.Attrs["a"]) != "5" || !strings.Contains(metrics.String(), `"SupersededFailed":1`) {
		t.Fatalf("after a refused notice: %q, metrics %s", it.Attrs["a"], metrics.String())
	}

	step("a destroy by d", at(events.OpDestroy, 150<<16, "auth-d", ""), "auth-c<-auth-d destroyed")
	step("c's save after the destroy", at(events.OpSave, 160<<16, "auth-c", "6"), "auth-c<-auth-d destroyed")
	if it := get(t, create); it.State != record.Destroyed {
		t.Fatalf("after the destroy: %+v", it)
	}
	if !strings.Contains(metrics.String(), `"Superseded":1`) {
		t.Errorf("metrics do not count the notices: %s", metrics.String())
	}
	if strings.Contains(logs.String(), create.ID) {
		t.Error("a log line carries a (hashed) session id")
	}
}
