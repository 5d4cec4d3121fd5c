package edge

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// peekLimit bounds how much of an unsigned form body is read to find its Action.
// SDKs put Action first, so this is plenty, and large bodies still stream.
const peekLimit = 16 << 10

// scopeOf names the AWS service r is for and the region it was signed for: "" for
// either when it cannot tell. Unsigned and SigV4A requests have no region.
func scopeOf(r *http.Request) (service, region string) {
	if svc, region := authScope(r.Header.Get("Authorization")); svc != "" {
		return svc, region
	}
	if svc, region := credentialScope(r.URL.Query().Get("X-Amz-Credential")); svc != "" {
		return svc, region // presigned URL
	}
	return unsignedService(r), ""
}

// serviceOf names the AWS service r is for, "" if it cannot tell.
func serviceOf(r *http.Request) string {
	svc, _ := scopeOf(r)
	return svc
}

// unsignedService names the service of a request without a credential scope.
func unsignedService(r *http.Request) string {
	// JSON protocols name the API in X-Amz-Target...
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		prefix, _, _ := strings.Cut(target, ".")
		switch prefix {
		case "DynamoDB_20120810", "DynamoDBStreams_20120810":
			return "dynamodb" // the DynamoDB emulator serves streams too; both sign as "dynamodb"
		case "AmazonSQS":
			return "sqs"
		}
		return ""
	}
	// ...and the query protocol puts Action in the form body or the URL.
	form := r.URL.Query()
	if form.Get("Action") == "" {
		form = peekForm(r)
	}
	if action := form.Get("Action"); action != "" {
		return actionService(action, form.Has("QueueUrl"))
	}
	return ""
}

// actionService maps an unsigned query-protocol Action to a service. SNS is the
// default; SQS's query-protocol actions all name a queue or a message (SNS has none
// that do), and STS's AssumeRoleWith* calls are unsigned by design.
func actionService(action string, hasQueueURL bool) string {
	switch {
	case strings.HasPrefix(action, "AssumeRoleWith"):
		return "sts"
	case hasQueueURL || strings.Contains(action, "Queue") || strings.Contains(action, "Message"):
		return "sqs"
	}
	return "sns"
}

// authScope reads SERVICE and REGION from an Authorization header's
// "Credential=AKID/DATE/REGION/SERVICE/aws4_request" (SigV4A omits REGION).
func authScope(auth string) (service, region string) {
	_, rest, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", ""
	}
	if i := strings.IndexAny(rest, ", "); i >= 0 {
		rest = rest[:i]
	}
	return credentialScope(rest)
}

// credentialScope returns the service and region of a credential scope
// "AKID/DATE/REGION/SERVICE/aws4_request", or of SigV4A's "AKID/DATE/SERVICE/aws4_request"
// (no region: SigV4A signs for a region set, carried elsewhere).
func credentialScope(cred string) (service, region string) {
	parts := strings.Split(cred, "/")
	n := len(parts)
	if n < 4 || parts[n-1] != "aws4_request" {
		return "", ""
	}
	service = strings.ToLower(parts[n-2])
	if n >= 5 {
		region = strings.ToLower(parts[n-3])
	}
	return service, region
}

// peekForm parses the start of a form-encoded body and puts what it read back in
// front of the rest, so the emulator still receives the whole body.
func peekForm(r *http.Request) url.Values {
	if r.Body == nil || r.Body == http.NoBody || !isForm(r) {
		return nil
	}
	buf := make([]byte, peekLimit)
	n, err := io.ReadFull(r.Body, buf)
	buf = buf[:n]
	r.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), Closer: r.Body}
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil // the read error will surface again when the proxy reads on
	}
	if n == peekLimit {
		// The last pair may be cut short; drop it.
		if i := bytes.LastIndexByte(buf, '&'); i >= 0 {
			buf = buf[:i]
		}
	}
	form, _ := url.ParseQuery(string(buf)) // keeps the pairs that parse
	return form
}

type peekedBody struct {
	io.Reader
	io.Closer
}

func isForm(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded"
}

// writeError answers in the error format the client's protocol parses: XML for
// query-protocol (form) requests such as SNS, JSON for everything else (DynamoDB,
// SQS), so SDKs report the code and message instead of a deserialization error.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	h := w.Header()
	h.Set("X-Amzn-ErrorType", code)
	h.Set("Cache-Control", "no-store")
	if isQueryProtocol(r) {
		type errorXML struct {
			Type    string
			Code    string
			Message string
		}
		kind := "Receiver"
		if status < 500 {
			kind = "Sender"
		}
		body, _ := xml.Marshal(struct {
			XMLName   xml.Name `xml:"ErrorResponse"`
			Error     errorXML
			RequestID string `xml:"RequestId"`
		}{Error: errorXML{Type: kind, Code: code, Message: msg}, RequestID: "edge"})
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		_, _ = w.Write(append([]byte(xml.Header), body...))
		return
	}
	writeJSON(w, status, struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{code, msg})
}

// writeSQSError answers as SQS's JSON protocol does: the error's shape name in
// __type, and its query-protocol code in X-Amzn-Query-Error, which the SDK reports
// as the error code (e.g. "AWS.SimpleQueueService.QueueDeletedRecently").
func writeSQSError(w http.ResponseWriter, shape, queryCode, msg string) {
	h := w.Header()
	h.Set("X-Amzn-Query-Error", queryCode+";Sender")
	h.Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusBadRequest, struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{"com.amazonaws.sqs#" + shape, msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func isQueryProtocol(r *http.Request) bool {
	return isForm(r) || r.URL.Query().Has("Action")
}
