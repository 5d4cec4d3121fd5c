package events

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeSessionOp checks that DecodeSessionOp never panics, that its
// errors are well-formed, and that whatever it accepts re-encodes: Encode
// succeeds, Decode(Encode(op)) is op, and Encode is then a fixed point.
//
// Beyond the f.Add seeds below, testdata/fuzz/FuzzDecodeSessionOp holds
// inputs in Go's corpus format (found by fuzzing, or hand-written for
// cases that need exact bytes). Plain `go test` runs all of them.
func FuzzDecodeSessionOp(f *testing.F) {
	// Every real example, valid and invalid.
	for _, pattern := range []string{"testdata/*.json", "testdata/invalid/*.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, path := range files {
			b, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}

	const prefix = `{"v":1,"op":"save","cluster":"default","id":"` + testID + `","ver":"0193512d53a90001","writer":"auth-a","site":"local","at":1732233745321,`
	session := func(attrs string) string {
		return `"session":{"principal":"jdoe","created":1,"lastAccess":2,"maxIdle":1800,"maxLife":7200,"attrs":` + attrs + `}}`
	}
	for _, seed := range []string{
		// Not an object at all.
		"", " ", "{}", "null", "[]", "true", "1", `"v"`, "{", "}", "{}{}", "{} ",
		// Version: missing, null, other numbers, huge, fractional, wrong types.
		`{"v":null}`, `{"v":0}`, `{"v":2}`, `{"v":-1}`, `{"v":1.0}`, `{"v":1e0}`,
		`{"v":99999999999999999999999}`, `{"v":1e400}`, `{"v":"1"}`, `{"v":[1]}`, `{"v":{"n":1}}`,
		// A newer schema with a different shape must read as a version problem.
		`{"v":2,"at":"yesterday","session":[]}`,
		// Nested garbage in known and unknown fields.
		`{"v":1,"session":[[[[[[[[{}]]]]]]]]}`, `{"v":1,"x":[[[[[[[[{"y":[null]}]]]]]]]]}`,
		`{"v":1,"session":{"attrs":{"a":{"b":"c"}}}}`,
		// Wrong types for each kind of field.
		`{"v":1,"op":7}`, `{"v":1,"id":12345}`, `{"v":1,"at":"1"}`, `{"v":1,"at":1.5}`,
		`{"v":1,"at":9223372036854775808}`, `{"v":1,"session":"x"}`, `{"v":1,"session":{"attrs":[]}}`,
		// Key spelling: encoding/json matches names case-insensitively and
		// the last duplicate wins; K (Kelvin sign) folds to k.
		`{"V":1,"OP":"destroy","Cluster":"c","ID":"` + testID + `","Ver":"0000000000000001","WRITER":"w","site":"s","at":1}`,
		`{"v":1,"v":2}`, `{"v":2,"v":1,"op":"destroy"}`,
		prefix + `"session":{"principal":"p","created":1,"lastAccess":1,"maxIdle":1,"maxLife":1}, "session":null}`,
		// Escapes that decode to valid values.
		`{"v":1,"op":"\u0064estroy","cluster":"c","id":"` + testID + `","ver":"0000000000000001","writer":"w","site":"s","at":1,"reason":"\u2028\u003c\ud83d\ude00"}`,
		// Attribute names and values: unicode, escapable, empty, null, big.
		prefix + session(`{"ключ":"AA==","🔑":"","<&>":null,"\u2028":"AQ=="}`),
		prefix + session(`{}`), prefix + session(`null`), prefix + session(`{"":""}`),
		prefix + session(`{"a":"AQ","b":"AQ=\n="}`),
		prefix + session(`{"a":"`+strings.Repeat("QUFB", 1000)+`"}`),
		// Numbers at the edges of int64.
		prefix + `"session":{"principal":"p","created":1,"lastAccess":9223372036854775807,"maxIdle":9223372036854775807,"maxLife":9223372036854775807}}`,
		// No principal: empty, absent, null (all mean none), and with a group (invalid).
		prefix + `"session":{"principal":"","created":1,"lastAccess":1,"maxIdle":1,"maxLife":1}}`,
		prefix + `"session":{"created":1,"lastAccess":1,"maxIdle":1,"maxLife":1}}`,
		prefix + `"session":{"principal":null,"created":1,"lastAccess":1,"maxIdle":1,"maxLife":1}}`,
		prefix + `"session":{"principal":"","group":"g","created":1,"lastAccess":1,"maxIdle":1,"maxLife":1}}`,
		// A destroy's until: absent, zero, negative, fractional, a string, on a save.
		`{"v":1,"op":"destroy","cluster":"c","id":"` + testID + `","ver":"0000000000000001","writer":"w","site":"s","at":1,"until":0}`,
		`{"v":1,"op":"destroy","cluster":"c","id":"` + testID + `","ver":"0000000000000001","writer":"w","site":"s","at":1,"until":-5}`,
		`{"v":1,"op":"destroy","cluster":"c","id":"` + testID + `","ver":"0000000000000001","writer":"w","site":"s","at":1,"until":1.5}`,
		`{"v":1,"op":"destroy","cluster":"c","id":"` + testID + `","ver":"0000000000000001","writer":"w","site":"s","at":1,"until":"1"}`,
		prefix + `"until":7,` + session(`{}`),
		// Invalid UTF-8 and stray bytes.
		"{\"v\":1,\"op\":\"save\xff\"}", "\xef\xbb\xbf{}", "{\"v\":1}\x00",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		op, err := DecodeSessionOp(b)
		if err != nil {
			if op != nil {
				t.Fatalf("DecodeSessionOp returned %+v with error %v", op, err)
			}
			n := 0
			for _, sentinel := range []error{ErrMalformed, ErrSchemaVersion, ErrInvalid, ErrTooLarge} {
				if errors.Is(err, sentinel) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %q wraps %d sentinels, want exactly 1", err, n)
			}
			if !strings.HasPrefix(err.Error(), "events: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
			return
		}
		if err := op.Validate(); err != nil {
			t.Fatalf("decoded op does not validate: %v", err)
		}
		enc, err := EncodeSessionOp(op)
		if err != nil {
			t.Fatalf("EncodeSessionOp of a decoded op: %v\ninput: %q", err, b)
		}
		op2, err := DecodeSessionOp(enc)
		if err != nil {
			t.Fatalf("DecodeSessionOp of an encoded op: %v\nencoded: %s", err, enc)
		}
		if !reflect.DeepEqual(op, op2) {
			t.Fatalf("round trip changed the op:\n got %#v\nwant %#v", op2, op)
		}
		enc2, err := EncodeSessionOp(op2)
		if err != nil {
			t.Fatalf("second EncodeSessionOp: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
