package edge

// AWS rules of SQS and SNS that fauxqs does not enforce, held at the edge so that tests
// meet them before users do on AWS. Off in a Gateway by default (Options.EnforceAWSRules,
// Gateway.EnforceAWSRules); the local stack (local/site) turns them on:
//
//   - A queue's name can be used again only QueueReuseDelay after its deletion:
//     CreateQueue fails with QueueDeletedRecently.
//   - One PurgeQueue per queue per PurgeInterval: a second fails with PurgeQueueInProgress.
//   - A purge also takes the messages that reach the queue in the PurgeWindow after it,
//     as AWS warns it may: purgewindow.go.
//   - Message sizes: SNS Publish and PublishBatch at most SNSMaxMessageSize, SQS
//     SendMessage at most the queue's MaximumMessageSize and SendMessageBatch at most
//     SQSMaxMessageSize in all: sizes.go.
//   - SNS takes a call about a topic or a subscription only in the topic's region (a
//     cross-region subscription is made in the topic's region): a request signed for
//     one region that names a TopicArn, SubscriptionArn, TargetArn or ResourceArn of
//     another fails with InvalidParameter, "Invalid parameter: TopicArn", as AWS words
//     it. fauxqs keeps every region's topics in one store and would answer.
//
// Queues are told apart by region and name: the local stack has one account (fauxqs
// names 000000000000 in every queue URL), so per account is per stack. The rules read
// SQS's JSON protocol (X-Amz-Target AmazonSQS.*, what the SDKs and the AWS CLI v2
// send) and SNS's query protocol (form-encoded, Action=...); SQS requests in the old
// query protocol pass unchecked.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// QueueReuseDelay is how long after a DeleteQueue SQS refuses to create a queue of
	// the same name.
	QueueReuseDelay = 60 * time.Second
	// PurgeInterval is the least time between two PurgeQueue calls on one queue.
	PurgeInterval = 60 * time.Second
	// PurgeWindow is how long after a purge the messages that reach the queue may be
	// deleted too; the edge deletes every one of them.
	PurgeWindow = 60 * time.Second
	// SNSMaxMessageSize bounds an SNS Publish (message and attributes) and the whole of
	// a PublishBatch, in bytes: AWS's default. (A topic's MaximumMessageSize can raise
	// it on AWS; fauxqs does not honour that attribute, and neither does the edge.)
	SNSMaxMessageSize = 262_144
	// SQSMaxMessageSize is the default of a queue's MaximumMessageSize (AWS raised it
	// from 256 KiB to 1 MiB in 2025), and the most a SendMessageBatch may carry in all.
	SQSMaxMessageSize = 1_048_576
	// maxRuleBody bounds the request bodies the rules read whole; a larger message
	// request is too long whatever the limit.
	maxRuleBody = 8 << 20
)

// The messages of AWS's errors, as AWS words them.
const (
	msgQueueDeletedRecently = "You must wait 60 seconds after deleting a queue before you can create another with the same name."
	msgPurgeInProgress      = "Only one PurgeQueue operation on %s is allowed every 60 seconds."
	msgSQSTooLong           = "One or more parameters are invalid. Reason: Message must be shorter than %d bytes."
	msgSQSBatchTooLong      = "Batch requested message too long."
	msgSNSTooLong           = "Invalid parameter: Message too long"
	msgSNSBatchTooLong      = "The length of all the messages put together is more than the limit."
)

// EnforceAWSRules turns the AWS rules above on or off, from the next request on. Off
// (the default), the edge forwards SQS and SNS requests as they come. What the rules
// have learnt (deletions, purges, queue sizes) is kept while they are off, but
// nothing new is learnt.
func (g *Gateway) EnforceAWSRules(on bool) { g.rules.on.Store(on) }

// rules holds what the AWS rules need to remember.
type rules struct {
	on  atomic.Bool
	now func() time.Time // the edge's clock (Options.Now)

	mu      sync.Mutex
	deleted map[queueKey]time.Time // when DeleteQueue succeeded, edge clock
	queues  map[queueKey]*queueState
	open    []*window // purge windows whose end is not yet placed in real time
	// lastDone is when the last SQS or SNS request under the rules completed, in real
	// time: where an open window ends at the latest, if the clock jumped past its end.
	lastDone time.Time
}

type queueKey struct{ region, name string }

type queueState struct {
	maxSize   int       // MaximumMessageSize as last set through the edge; 0: not seen
	lastPurge time.Time // edge clock of the last purge accepted or under way
	windows   []*window
}

func newRules(now func() time.Time) *rules {
	return &rules{now: now, deleted: map[queueKey]time.Time{}, queues: map[queueKey]*queueState{}}
}

func (ru *rules) queue(k queueKey) *queueState {
	q := ru.queues[k]
	if q == nil {
		q = &queueState{}
		ru.queues[k] = q
	}
	return q
}

// queueName is the last path segment of a queue URL, ".../ACCOUNT/NAME".
func queueName(queueURL string) string {
	return queueURL[strings.LastIndexByte(queueURL, '/')+1:]
}

// sqsInput holds the fields of the SQS requests the rules read (JSON protocol).
type sqsInput struct {
	QueueName                   string
	QueueURL                    string `json:"QueueUrl"`
	Attributes                  map[string]string
	MessageBody                 string
	MessageAttributes           map[string]messageAttribute
	Entries                     []sqsEntry
	AttributeNames              []string
	MessageSystemAttributeNames []string
	WaitTimeSeconds             *int
}

type sqsEntry struct {
	MessageBody       string
	MessageAttributes map[string]messageAttribute
}

// messageAttribute is an SQS message attribute; BinaryValue arrives base64-encoded
// and is decoded by encoding/json.
type messageAttribute struct {
	DataType    string
	StringValue string
	BinaryValue []byte
}

// serveWithRules answers an SQS or SNS request under the rules.
func (g *Gateway) serveWithRules(w http.ResponseWriter, r *http.Request, rt *route, svc, region string) {
	g.rules.observe()
	defer g.rules.done()
	if svc == "sns" {
		g.snsRules(w, r, rt, region)
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	switch {
	case !ok:
		g.forward(w, r, rt) // query protocol: not checked
		return
	case op != "CreateQueue" && op != "DeleteQueue" && op != "PurgeQueue" && op != "SetQueueAttributes" &&
		op != "SendMessage" && op != "SendMessageBatch" && op != "ReceiveMessage":
		g.forward(w, r, rt)
		return
	}
	body, whole, err := readBody(r, maxRuleBody)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "SerializationException", "edge: could not read the request body: "+err.Error())
		return
	}
	if !whole {
		switch op {
		case "SendMessage":
			writeSQSError(w, "InvalidParameterValue", "InvalidParameterValue", fmt.Sprintf(msgSQSTooLong, SQSMaxMessageSize))
		case "SendMessageBatch":
			writeSQSError(w, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", msgSQSBatchTooLong)
		default:
			g.forward(w, r, rt)
		}
		return
	}
	var in sqsInput
	if json.Unmarshal(body, &in) != nil {
		g.forwardBody(w, r, rt, body) // malformed: the emulator says what is wrong
		return
	}
	name := in.QueueName
	if op != "CreateQueue" {
		name = queueName(in.QueueURL)
	}
	key := queueKey{region, name}
	switch op {
	case "CreateQueue":
		g.createQueue(w, r, rt, body, key, &in)
	case "DeleteQueue":
		if g.forwardBody(w, r, rt, body) == http.StatusOK {
			g.rules.deletedQueue(key)
		}
	case "PurgeQueue":
		g.purgeQueue(w, r, rt, body, key)
	case "SetQueueAttributes":
		if g.forwardBody(w, r, rt, body) == http.StatusOK {
			g.rules.learnSize(key, in.Attributes)
		}
	case "SendMessage":
		if limit := g.rules.sqsLimit(key); sqsMessageSize(in.MessageBody, in.MessageAttributes) > limit {
			writeSQSError(w, "InvalidParameterValue", "InvalidParameterValue", fmt.Sprintf(msgSQSTooLong, limit))
			return
		}
		g.forwardBody(w, r, rt, body)
	case "SendMessageBatch":
		total := 0
		for _, e := range in.Entries {
			total += sqsMessageSize(e.MessageBody, e.MessageAttributes)
		}
		if total > SQSMaxMessageSize {
			writeSQSError(w, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", msgSQSBatchTooLong)
			return
		}
		g.forwardBody(w, r, rt, body)
	case "ReceiveMessage":
		if !g.rules.hasWindows(key) {
			g.forwardBody(w, r, rt, body)
			return
		}
		g.receive(w, r, rt, body, key, &in)
	}
}

func (g *Gateway) createQueue(w http.ResponseWriter, r *http.Request, rt *route, body []byte, key queueKey, in *sqsInput) {
	ru := g.rules
	ru.mu.Lock()
	at, ok := ru.deleted[key]
	ru.mu.Unlock()
	if ok && ru.now().Sub(at) < QueueReuseDelay {
		writeSQSError(w, "QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently", msgQueueDeletedRecently)
		return
	}
	if g.forwardBody(w, r, rt, body) == http.StatusOK {
		ru.learnSize(key, in.Attributes)
	}
}

// deletedQueue notes a queue's deletion, and forgets what was known of it: a queue
// made again under its name is a new queue.
func (ru *rules) deletedQueue(key queueKey) {
	now := ru.now()
	ru.mu.Lock()
	defer ru.mu.Unlock()
	for k, at := range ru.deleted {
		if now.Sub(at) >= QueueReuseDelay {
			delete(ru.deleted, k)
		}
	}
	ru.deleted[key] = now
	if q := ru.queues[key]; q != nil {
		ru.open = without(ru.open, q.windows)
		delete(ru.queues, key)
	}
}

func (g *Gateway) purgeQueue(w http.ResponseWriter, r *http.Request, rt *route, body []byte, key queueKey) {
	ru := g.rules
	now, real := ru.now(), time.Now()
	ru.mu.Lock()
	q := ru.queue(key)
	prev := q.lastPurge
	if !prev.IsZero() && now.Sub(prev) < PurgeInterval {
		ru.mu.Unlock()
		writeSQSError(w, "PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress", fmt.Sprintf(msgPurgeInProgress, key.name))
		return
	}
	q.lastPurge = now // held while the purge is under way, so that a second waits
	ru.mu.Unlock()

	status := g.forwardBody(w, r, rt, body)

	ru.mu.Lock()
	defer ru.mu.Unlock()
	q = ru.queues[key]
	if q == nil || !q.lastPurge.Equal(now) {
		return // deleted meanwhile
	}
	if status != http.StatusOK {
		q.lastPurge = prev // no purge happened
		return
	}
	ru.addWindow(q, now, real)
}

// learnSize keeps a queue's MaximumMessageSize if attrs set it.
func (ru *rules) learnSize(key queueKey, attrs map[string]string) {
	v, ok := attrs["MaximumMessageSize"]
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	ru.queue(key).maxSize = n
}

// sqsLimit is a queue's MaximumMessageSize as the edge saw it set, else AWS's default.
// (fauxqs checks the attribute as it holds it, too.)
func (ru *rules) sqsLimit(key queueKey) int {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if q := ru.queues[key]; q != nil && q.maxSize > 0 {
		return q.maxSize
	}
	return SQSMaxMessageSize
}

// snsARNParams are the SNS parameters that name a resource by ARN: the call must be made
// in that resource's region.
var snsARNParams = []string{"TopicArn", "SubscriptionArn", "TargetArn", "ResourceArn"}

func (g *Gateway) snsRules(w http.ResponseWriter, r *http.Request, rt *route, region string) {
	if !isForm(r) {
		g.forward(w, r, rt)
		return
	}
	body, whole, err := readBody(r, maxRuleBody)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "MalformedQueryString", "edge: could not read the request body: "+err.Error())
		return
	}
	form := parseForm(body, whole)
	action := form.Get("Action")
	if action == "" {
		action = r.URL.Query().Get("Action")
	}
	for _, p := range snsARNParams {
		if in := arnRegion(form.Get(p)); in != "" && region != "" && in != region {
			writeError(w, r, http.StatusBadRequest, "InvalidParameter", "Invalid parameter: "+p)
			return
		}
	}
	switch action {
	case "Publish":
		if !whole || snsSize(form) > SNSMaxMessageSize {
			writeError(w, r, http.StatusBadRequest, "InvalidParameter", msgSNSTooLong)
			return
		}
	case "PublishBatch":
		if !whole || snsSize(form) > SNSMaxMessageSize {
			writeError(w, r, http.StatusBadRequest, "BatchRequestTooLong", msgSNSBatchTooLong)
			return
		}
	}
	if !whole {
		g.forward(w, r, rt) // readBody left the rest of the body to stream
		return
	}
	g.forwardBody(w, r, rt, body)
}

// arnRegion is the region field of an ARN (arn:partition:service:region:account:...),
// "" if v is not one.
func arnRegion(v string) string {
	f := strings.SplitN(v, ":", 5)
	if len(f) < 5 || f[0] != "arn" {
		return ""
	}
	return f[3]
}

// readBody reads r's body up to limit bytes. If it is longer, whole is false and r's
// body is put back together, so that it can still be forwarded.
func readBody(r *http.Request, limit int) (body []byte, whole bool, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true, nil
	}
	body, err = io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > limit {
		r.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(body), r.Body), Closer: r.Body}
		return body, false, nil
	}
	return body, true, nil
}

// forwardBody forwards r with body (read whole before) and returns the status of the
// answer, 0 if none was written.
func (g *Gateway) forwardBody(w http.ResponseWriter, r *http.Request, rt *route, body []byte) int {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	sw := &statusWriter{ResponseWriter: w}
	g.forward(sw, r, rt)
	return sw.status
}

// statusWriter notes the status of the answer written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (the proxy's flushes) reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
