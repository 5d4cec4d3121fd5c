package events

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// codec decodes and encodes one message type through the package's functions.
type codec struct {
	name   string
	decode func([]byte) (any, error)
	encode func(any) ([]byte, error)
}

var codecs = []codec{
	{"query", func(b []byte) (any, error) { return DecodeQuery(b) }, func(v any) ([]byte, error) { return EncodeQuery(v.(*Query)) }},
	{"reply", func(b []byte) (any, error) { return DecodeReply(b) }, func(v any) ([]byte, error) { return EncodeReply(v.(*Reply)) }},
	{"notice", func(b []byte) (any, error) { return DecodeNotice(b) }, func(v any) ([]byte, error) { return EncodeNotice(v.(*Notice)) }},
	{"superseded", func(b []byte) (any, error) { return DecodeSuperseded(b) }, func(v any) ([]byte, error) { return EncodeSuperseded(v.(*Superseded)) }},
}

func TestBusMessagesRoundTrip(t *testing.T) {
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			in := readTestdata(t, c.name+".json")
			v, err := c.decode(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.encode(v)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := jsonValue(t, out), jsonValue(t, in); !reflect.DeepEqual(got, want) {
				t.Errorf("re-encoded differs:\n got %s\nwant %s", out, in)
			}
		})
	}
	q, _ := DecodeQuery(readTestdata(t, "query.json"))
	if q.Requester != "auth-c" || q.RequestID != "q-000193512e0b" || q.ID != testID {
		t.Errorf("query decoded as %+v", q)
	}
	r, _ := DecodeReply(readTestdata(t, "reply.json"))
	if r.Status != ReplyFound || string(r.Session.Attrs["cart"]) != `{"items":[]}` {
		t.Errorf("reply decoded as %+v", r)
	}
}

func TestBusMessagesInvalid(t *testing.T) {
	mutate := func(file, from, to string) []byte {
		b := string(readTestdata(t, file))
		if !strings.Contains(b, from) {
			t.Fatalf("%s lacks %q", file, from)
		}
		return []byte(strings.Replace(b, from, to, 1))
	}
	for _, tc := range []struct {
		name  string
		codec int
		in    []byte
		err   error
		field string
	}{
		{"query without requester", 0, mutate("query.json", `"requester":"auth-c",`, ""), ErrInvalid, `"requester"`},
		{"query short id", 0, mutate("query.json", testID, "abc"), ErrInvalid, `query field "id"`},
		{"query v2", 0, mutate("query.json", `"v":1`, `"v":2`), ErrSchemaVersion, "version 2"},
		{"query not json", 0, []byte(`{"v":1,`), ErrMalformed, ""},
		{"reply found without session", 1, []byte(`{"v":1,"req":"r","requester":"a","status":"found","ver":"0193512e0b2a0000"}`), ErrInvalid, `"session"`},
		{"reply missing with session", 1, mutate("reply.json", `"status":"found"`, `"status":"missing"`), ErrInvalid, `"session"`},
		{"reply unknown status", 1, mutate("reply.json", `"status":"found"`, `"status":"maybe"`), ErrInvalid, `"status"`},
		{"notice bad site", 2, mutate("notice.json", `"site":"local"`, `"site":"a b"`), ErrInvalid, `"site"`},
		{"notice zero at", 2, mutate("notice.json", `"at":1732234102877`, `"at":0`), ErrInvalid, `"at"`},
		{"superseded without owner", 3, mutate("superseded.json", `"owner":"auth-a",`, ""), ErrInvalid, `superseded notice field "owner"`},
		{"superseded bad version", 3, mutate("superseded.json", `"ver":"0193512e0b2a0001"`, `"ver":"0193512e0b2a0001/auth-b"`), ErrInvalid, `"ver"`},
		{"superseded v2", 3, mutate("superseded.json", `"v":1`, `"v":2`), ErrSchemaVersion, "version 2"},
		// An older build reads every message on the notice topic as a logout: a
		// superseded notice must not pass as one.
		{"superseded read as a destroy notice", 2, readTestdata(t, "superseded.json"), ErrInvalid, `"site"`},
		{"notice too large", 2, []byte(`{"v":1,"x":"` + strings.Repeat("x", MaxMessageBytes) + `"}`), ErrTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := codecs[tc.codec].decode(tc.in)
			if !errors.Is(err, tc.err) || !strings.Contains(errString(err), tc.field) {
				t.Fatalf("got %v, want %v naming %s", err, tc.err, tc.field)
			}
			if strings.Contains(errString(err), testID) {
				t.Error("the error quotes the id")
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzDecodeBusMessages: decoding a query, reply or notice never panics, and what
// decodes re-encodes and decodes to the same value. Seeds: the testdata examples, plus
// the edge cases below.
func FuzzDecodeBusMessages(f *testing.F) {
	for _, c := range codecs {
		f.Add(readTestdata(f, c.name+".json"))
	}
	f.Add([]byte(`{}`))                                                      // every field missing
	f.Add([]byte(`{"v":1,"status":"found","session":null}`))                 // found without a session
	f.Add([]byte(`{"v":1,"req":"r","requester":"a","status":"destroyed"}`))  // a minimal valid reply
	f.Add([]byte(`{"v":1e400}`))                                             // a version out of range
	f.Add([]byte(`{"v":1,"session":{"attrs":{"a":null}},"status":"found"}`)) // a null attribute value
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range codecs {
			v, err := c.decode(b)
			if err != nil {
				continue
			}
			out, err := c.encode(v)
			if err != nil {
				t.Fatalf("%s: decoded but cannot encode: %v", c.name, err)
			}
			again, err := c.decode(out)
			if err != nil || !reflect.DeepEqual(again, v) {
				t.Fatalf("%s: round trip changed the value: %v\n%+v\n%+v", c.name, err, v, again)
			}
		}
	})
}
