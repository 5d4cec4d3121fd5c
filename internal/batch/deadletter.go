package batch

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	sessionevents "github.com/sessionha/sessionha/events"
)

// maxAttributes is SQS's limit of message attributes per message.
const maxAttributes = 10

// maxReasonBytes bounds the reason attribute: enough for any message of events' errors.
const maxReasonBytes = 1024

// deadLetter sends rec to the dead-letter queue with the reason p, as it was received
// the n-th time.
func (r *Runner) deadLetter(ctx context.Context, rec *events.SQSMessage, p *PoisonError, n int) error {
	_, err := r.cfg.SQS.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(r.cfg.DLQURL),
		MessageBody:       aws.String(rec.Body),
		MessageAttributes: deadLetterAttributes(rec, p, r.cfg.Function, n),
	})
	return err
}

// deadLetterAttributes are the reason's attributes, then the record's own (those of an
// earlier dead-lettering replaced; the redrive count first), as many as SQS takes.
func deadLetterAttributes(rec *events.SQSMessage, p *PoisonError, function string, n int) map[string]types.MessageAttributeValue {
	str := func(v string) types.MessageAttributeValue {
		return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	attrs := map[string]types.MessageAttributeValue{
		sessionevents.DeadLetterKind:         str(sqsText(p.Kind, 64)),
		sessionevents.DeadLetterReason:       str(sqsText(p.Err.Error(), maxReasonBytes)),
		sessionevents.DeadLetterFunction:     str(function),
		sessionevents.DeadLetterMessageID:    str(rec.MessageId),
		sessionevents.DeadLetterReceiveCount: {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(n))},
	}
	if rec.EventSourceARN != "" {
		attrs[sessionevents.DeadLetterSourceQueue] = str(rec.EventSourceARN)
	}
	names := slices.Sorted(maps.Keys(rec.MessageAttributes))
	// The redrive count first: it is what stops a message from circling unseen.
	slices.SortStableFunc(names, func(a, b string) int {
		return boolInt(b == sessionevents.Redrives) - boolInt(a == sessionevents.Redrives)
	})
	for _, name := range names {
		if len(attrs) == maxAttributes {
			break
		}
		if strings.HasPrefix(name, sessionevents.DeadLetterPrefix) {
			continue
		}
		a := rec.MessageAttributes[name]
		// SQS has no list values (reserved); a message received from SQS has none.
		attrs[name] = types.MessageAttributeValue{DataType: aws.String(a.DataType), StringValue: a.StringValue, BinaryValue: a.BinaryValue}
	}
	return attrs
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sqsText makes s a valid SQS attribute value of at most max bytes: characters SQS
// refuses (controls other than tab and newlines, invalid UTF-8) become '?'.
func sqsText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError, r < 0x20 && r != '\t' && r != '\n' && r != '\r', r == 0xFFFE, r == 0xFFFF:
			return '?'
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
