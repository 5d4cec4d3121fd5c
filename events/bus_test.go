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
	{"lifecycle", func(b []byte) (any, error) { return DecodeLifecycle(b) }, func(v any) ([]byte, error) { return EncodeLifecycle(v.(*Lifecycle)) }},
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
	mutateAll := func(file string, pairs ...string) []byte {
		b := string(readTestdata(t, file))
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(b, pairs[i]) {
				t.Fatalf("%s lacks %q", file, pairs[i])
			}
			b = strings.Replace(b, pairs[i], pairs[i+1], 1)
		}
		return []byte(b)
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
		{"lifecycle without key", 4, mutate("lifecycle.json", `"key":"MEr-5vPphkmEh7UehQnfiqNs7_fzuQ1mpljQodbFxWM",`, ""), ErrInvalid, `lifecycle event field "key"`},
		{"lifecycle with the session id as key", 4, mutate("lifecycle.json", `MEr-5vPphkmEh7UehQnfiqNs7_fzuQ1mpljQodbFxWM`, "not-a-hash"), ErrInvalid, `"key"`},
		{"lifecycle unknown kind", 4, mutate("lifecycle.json", `"kind":"destroyed"`, `"kind":"paused"`), ErrInvalid, `"kind"`},
		{"lifecycle expired without why", 4, mutate("lifecycle.json", `"kind":"destroyed"`, `"kind":"expired"`), ErrInvalid, `"reason"`},
		{"lifecycle created with a reason", 4, mutate("lifecycle.json", `"kind":"destroyed"`, `"kind":"created"`), ErrInvalid, `"reason"`},
		{"lifecycle moved to nobody", 4, mutateAll("lifecycle.json", `"kind":"destroyed"`, `"kind":"moved"`, `"reason":"sso-group",`, "", `"by":"auth-b",`, ""), ErrInvalid, `"by"`},
		{"lifecycle bad instance", 4, mutate("lifecycle.json", `"instance":"auth-a"`, `"instance":"a b"`), ErrInvalid, `"instance"`},
		{"lifecycle zero at", 4, mutate("lifecycle.json", `"at":1732234102000`, `"at":0`), ErrInvalid, `"at"`},
		{"lifecycle v2", 4, mutate("lifecycle.json", `"v":1`, `"v":2`), ErrSchemaVersion, "version 2"},
		// Nothing on the notice topic is a lifecycle event, nor the other way round.
		{"lifecycle read as a destroy notice", 2, readTestdata(t, "lifecycle.json"), ErrInvalid, `"writer"`},
		{"destroy notice read as a lifecycle event", 4, readTestdata(t, "notice.json"), ErrInvalid, `"key"`},
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

// FuzzDecodeBusMessages: decoding a query, reply, notice, superseded notice or lifecycle event never panics, and what
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
	// Lifecycle events: an expired one (its own reasons), a moved one without "by".
	f.Add([]byte(`{"v":1,"key":"MEr-5vPphkmEh7UehQnfiqNs7_fzuQ1mpljQodbFxWM","kind":"expired","cluster":"c","id":"` + testID + `","reason":"max-life","at":1}`))
	f.Add([]byte(`{"v":1,"key":"MEr-5vPphkmEh7UehQnfiqNs7_fzuQ1mpljQodbFxWM","kind":"moved","cluster":"c","id":"` + testID + `","at":1,"created":-1}`))
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

// TestLifecycleKey: one key per created event and one per end of a session, whatever the
// kind of end; one per move, by the write that moved it; never the same for two sessions;
// and never the id or its hash in clear.
func TestLifecycleKey(t *testing.T) {
	const other = "lWnXbsu6eZ5jQkqDJeX3Ce0aMIWxE9lbz26jI_r3qOE"
	created := LifecycleKey(LifecycleCreated, "default", testID, "01935132c85d0001/auth-a")
	ended := LifecycleKey(LifecycleDestroyed, "default", testID, "01935132c85d0001/auth-a")
	moved := LifecycleKey(LifecycleMoved, "default", testID, "01935132c85d0001/auth-b")
	for _, tc := range []struct {
		name       string
		a, b       string
		wantEquals bool
	}{
		{"created ignores the version", created, LifecycleKey(LifecycleCreated, "default", testID, ""), true},
		{"destroyed and expired are one end", ended, LifecycleKey(LifecycleExpired, "default", testID, "x"), true},
		{"created is not the end", created, ended, false},
		{"a move is not the end", moved, ended, false},
		{"each move its own", moved, LifecycleKey(LifecycleMoved, "default", testID, "01935132c85d0002/auth-c"), false},
		{"another session", ended, LifecycleKey(LifecycleDestroyed, "default", other, ""), false},
		{"another cluster", ended, LifecycleKey(LifecycleDestroyed, "c2", testID, ""), false},
	} {
		if (tc.a == tc.b) != tc.wantEquals {
			t.Errorf("%s: %s vs %s", tc.name, tc.a, tc.b)
		}
	}
	for _, k := range []string{created, ended, moved} {
		if err := checkHash("key", k); err != nil || strings.Contains(k, testID[:8]) {
			t.Errorf("key %s: %v", k, err)
		}
	}
}
