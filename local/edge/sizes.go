package edge

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"strings"
)

// Message sizes as SQS and SNS count them: the body's bytes, and for each message
// attribute its name, data type and value (binary values as bytes, not as base64).

// sqsMessageSize is the size of an SQS message (JSON protocol: binary values are
// already decoded).
func sqsMessageSize(body string, attrs map[string]messageAttribute) int {
	n := len(body)
	for name, a := range attrs {
		n += len(name) + len(a.DataType) + len(a.StringValue) + len(a.BinaryValue)
	}
	return n
}

// snsSize is the size of an SNS Publish, or the total of a PublishBatch's entries,
// from its form: "Message" or "PublishBatchRequestEntries.member.N.Message", and
// "[...]MessageAttributes.entry.N.Name" with ".Value.DataType", ".Value.StringValue"
// and ".Value.BinaryValue" (base64).
func snsSize(form url.Values) int {
	n := 0
	for k, vs := range form {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		switch {
		case k == "Message" || (strings.HasPrefix(k, "PublishBatchRequestEntries.") && strings.HasSuffix(k, ".Message")):
			n += len(v)
		case !strings.Contains(k, "MessageAttributes.entry."):
		case strings.HasSuffix(k, ".Name"), strings.HasSuffix(k, ".Value.DataType"), strings.HasSuffix(k, ".Value.StringValue"):
			n += len(v)
		case strings.HasSuffix(k, ".Value.BinaryValue"):
			if b, err := base64.StdEncoding.DecodeString(v); err == nil {
				n += len(b)
			} else {
				n += len(v)
			}
		}
	}
	return n
}

// parseForm parses a form-encoded body; if it is not whole, the last pair, which may
// be cut short, is dropped.
func parseForm(body []byte, whole bool) url.Values {
	if !whole {
		if i := bytes.LastIndexByte(body, '&'); i >= 0 {
			body = body[:i]
		}
	}
	form, _ := url.ParseQuery(string(body)) // keeps the pairs that parse
	return form
}
