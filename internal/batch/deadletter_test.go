package batch

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	sessionevents "github.com/sessionha/sessionha/events"
)

// TestDeadLetterAttributesOfARedrivenMessage: a message dead-lettered again (redriven by
// sessionctl) gets fresh reason attributes, keeps its redrive count, and never more
// attributes than SQS takes.
func TestDeadLetterAttributesOfARedrivenMessage(t *testing.T) {
	str := func(v string) events.SQSMessageAttribute {
		return events.SQSMessageAttribute{DataType: "String", StringValue: aws.String(v)}
	}
	rec := &events.SQSMessage{MessageId: "m-2", EventSourceARN: "arn:aws:sqs:eu-west-1:1:q", MessageAttributes: map[string]events.SQSMessageAttribute{
		sessionevents.DeadLetterKind:      str("schema-version"),
		sessionevents.DeadLetterMessageID: str("m-1"),
		sessionevents.Redrives:            {DataType: "Number", StringValue: aws.String("2")},
	}}
	for i := range 9 {
		rec.MessageAttributes[fmt.Sprintf("a%d", i)] = str("x")
	}
	got := deadLetterAttributes(rec, &PoisonError{Kind: "invalid", Err: errors.New("events: session op field op: unknown")}, "sessionop", 3)
	if len(got) != maxAttributes {
		t.Errorf("%d attributes, want SQS's most, %d", len(got), maxAttributes)
	}
	for k, want := range map[string]string{sessionevents.DeadLetterKind: "invalid", sessionevents.DeadLetterMessageID: "m-2",
		sessionevents.DeadLetterReceiveCount: "3", sessionevents.Redrives: "2", sessionevents.DeadLetterSourceQueue: "arn:aws:sqs:eu-west-1:1:q", "a0": "x", "a1": "x"} {
		if v := aws.ToString(got[k].StringValue); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if aws.ToString(got[sessionevents.DeadLetterReceiveCount].DataType) != "Number" {
		t.Error("the receive count is not a Number")
	}
}

func TestSQSText(t *testing.T) {
	if got := sqsText("bad \x00 \xff byte\tok", 100); got != "bad ? ? byte\tok" {
		t.Errorf("sqsText = %q", got)
	}
	long := strings.Repeat("é", 600)
	got := sqsText(long, 1024)
	if len(got) > 1024 || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Errorf("cut to %d bytes, valid %v: %q...", len(got), utf8.ValidString(got), got[len(got)-8:])
	}
}
