package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testID is the HashID used throughout testdata.
const testID = "vIF74XTvNRmnpgRJ17cyXW1L-1sgRt7B5qjL9KFMOKA"

// validOp returns a fresh, valid create op for tests to break.
func validOp() *SessionOp {
	return &SessionOp{
		V:       SchemaVersion,
		Op:      OpCreate,
		Cluster: "default",
		ID:      testID,
		Version: "0193512b1c0c0001",
		Writer:  "auth-a",
		Site:    "local",
		At:      1732233600012,
		Session: &Session{
			Principal:  "uid=jdoe,ou=People,dc=example,dc=com",
			Group:      "staff",
			Created:    1732233600000,
			LastAccess: 1732233600000,
			MaxIdle:    1800,
			MaxLife:    7200,
			Attrs:      map[string][]byte{"Locale": []byte("en-US")},
		},
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

func TestTestdataRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		file      string
		op        OpKind
		ver       string
		at        int64
		session   bool // whether the op carries a session
		principal string
		attrs     []string // sorted names
		cart      string   // decoded "cart" attribute, if any
		reason    string
		until     int64
	}{
		{file: "create.json", op: OpCreate, ver: "0193512b1c0c0001", at: 1732233600012, session: true,
			principal: "uid=jdoe,ou=People,dc=example,dc=com", attrs: []string{"AuthLevel", "Locale", "Service"}},
		{file: "save.json", op: OpSave, ver: "0193512d53a90001", at: 1732233745321, session: true,
			principal: "uid=jdoe,ou=People,dc=example,dc=com", attrs: []string{"AuthLevel", "Locale", "Service", "cart"},
			cart: `{"items":[{"sku":"A-1001","qty":2},{"sku":"B-2040","qty":1}]}`},
		{file: "delta.json", op: OpDelta, ver: "0193512e0b2a0000", at: 1732233790000, session: true,
			principal: "uid=jdoe,ou=People,dc=example,dc=com"},
		// A session of no known user (an scs app's): no principal, so no group either.
		{file: "save-no-principal.json", op: OpSave, ver: "0193512d53a90002", at: 1732233745321, session: true,
			principal: "", attrs: []string{"scs"}},
		{file: "destroy.json", op: OpDestroy, ver: "01935132c85d0001", at: 1732234102877, reason: "logout", until: 1732262400000},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in := readTestdata(t, tc.file)
			op, err := DecodeSessionOp(in)
			if err != nil {
				t.Fatalf("DecodeSessionOp: %v", err)
			}
			if op.V != 1 || op.Op != tc.op || op.Cluster != "default" || op.ID != testID || op.Version != tc.ver ||
				op.Writer != "auth-a" || op.Site != "local" || op.At != tc.at || op.Reason != tc.reason || op.Until != tc.until {
				t.Errorf("decoded %+v", op)
			}
			if !tc.session {
				if op.Session != nil {
					t.Errorf("Session = %+v, want nil", op.Session)
				}
			} else {
				if op.Session == nil {
					t.Fatal("Session = nil")
				}
				if op.Session.Principal != tc.principal {
					t.Errorf("Principal = %q, want %q", op.Session.Principal, tc.principal)
				}
				names := slices.Sorted(func(yield func(string) bool) {
					for k := range op.Session.Attrs {
						if !yield(k) {
							return
						}
					}
				})
				if !slices.Equal(names, tc.attrs) {
					t.Errorf("attribute names = %q, want %q", names, tc.attrs)
				}
				if got := string(op.Session.Attrs["cart"]); got != tc.cart {
					t.Errorf("cart = %q, want %q", got, tc.cart)
				}
				if got, want := string(op.Session.Attrs["Locale"]), "en-US"; got != want && slices.Contains(tc.attrs, "Locale") {
					t.Errorf("Locale = %q, want %q", got, want)
				}
				if got := string(op.Session.Attrs["scs"]); slices.Contains(tc.attrs, "scs") && got != `{"deadline":"2024-11-23T00:02:25Z"}` {
					t.Errorf("scs = %q", got)
				}
				if tc.op == OpDelta && (string(op.Set["cart"]) != `{"items":[]}` || !slices.Equal(op.Remove, []string{"Service"})) {
					t.Errorf("delta set %q remove %q", op.Set, op.Remove)
				}
			}

			out, err := EncodeSessionOp(op)
			if err != nil {
				t.Fatalf("EncodeSessionOp: %v", err)
			}
			if got, want := jsonValue(t, out), jsonValue(t, in); !reflect.DeepEqual(got, want) {
				t.Errorf("re-encoded differs from %s:\n got %s", tc.file, out)
			}
		})
	}
}

func TestInvalidTestdata(t *testing.T) {
	// want is a substring the message must contain: the field it names.
	cases := map[string]struct {
		err  error
		want string
	}{
		"array.json":                      {ErrMalformed, "want a JSON object, got an array"},
		"at-float.json":                   {ErrMalformed, "SessionOp.at"},
		"at-string.json":                  {ErrMalformed, "SessionOp.at"},
		"attr-value-not-base64.json":      {ErrMalformed, "base64"},
		"bad-cluster.json":                {ErrInvalid, `field "cluster"`},
		"bad-version.json":                {ErrSchemaVersion, "schema version 7 not supported (this build reads 1)"},
		"create-without-session.json":     {ErrInvalid, `field "session": required for op "create"`},
		"destroy-with-session.json":       {ErrInvalid, `field "session": must be absent for op "destroy"`},
		"empty-attr-name.json":            {ErrInvalid, `field "session.attrs": attribute name ""`},
		"group-without-principal.json":    {ErrInvalid, `field "session.principal": required with a group`},
		"empty-writer.json":               {ErrInvalid, `field "writer"`},
		"empty.json":                      {ErrMalformed, "unexpected end of JSON input"},
		"id-not-base64url.json":           {ErrInvalid, `field "id": want 43 base64url characters encoding a 32-byte SHA-256, got 43 characters that are not canonical base64url`},
		"id-not-canonical.json":           {ErrInvalid, `field "id"`},
		"last-access-before-created.json": {ErrInvalid, `field "session.lastAccess"`},
		"missing-version.json":            {ErrSchemaVersion, `schema version missing (field "v"`},
		"not-json.json":                   {ErrMalformed, "invalid character"},
		"null.json":                       {ErrMalformed, "want a JSON object, got null"},
		"reason-too-long.json":            {ErrInvalid, `field "reason"`},
		"save-with-reason.json":           {ErrInvalid, `field "reason": only allowed for op "destroy"`},
		"save-without-session.json":       {ErrInvalid, `field "session": required for op "save"`},
		"short-id.json":                   {ErrInvalid, `field "id": want 43 base64url characters encoding a 32-byte SHA-256, got 12 characters`},
		"trailing-data.json":              {ErrMalformed, "after top-level value"},
		"unknown-op.json":                 {ErrInvalid, `field "op": want "create", "save", "delta" or "destroy", got "update"`},
		"v2-different-shape.json":         {ErrSchemaVersion, "schema version 2 not supported"},
		"ver-uppercase.json":              {ErrInvalid, `field "ver"`},
		"ver-zero.json":                   {ErrInvalid, `field "ver": must not be all zero`},
		"version-string.json":             {ErrMalformed, `field "v": want a number, got a string`},
		"zero-at.json":                    {ErrInvalid, `field "at"`},
		"zero-max-idle.json":              {ErrInvalid, `field "session.maxIdle"`},
		"delta-with-attrs.json":           {ErrInvalid, `field "session.attrs": must be absent for op "delta"`},
		"delta-set-and-remove.json":       {ErrInvalid, `field "remove": attribute name "cart" listed twice`},
		"save-with-set.json":              {ErrInvalid, `field "set": set and remove are only allowed for op "delta"`},
		"save-with-until.json":            {ErrInvalid, `field "until": want unix milliseconds >= 0, for op "destroy" only; got 1732262400000 for op "save"`},
		"destroy-until-negative.json":     {ErrInvalid, `field "until": want unix milliseconds >= 0, for op "destroy" only; got -1 for op "destroy"`},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			tc, ok := cases[name]
			if !ok {
				t.Fatal("no expectation for this file: add it to the table")
			}
			op, err := DecodeSessionOp(readTestdata(t, filepath.Join("invalid", name)))
			if err == nil {
				t.Fatalf("DecodeSessionOp = %+v, want error", op)
			}
			if op != nil {
				t.Errorf("DecodeSessionOp returned %+v with its error", op)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %q does not wrap %q", err, tc.err)
			}
			for _, other := range []error{ErrMalformed, ErrSchemaVersion, ErrInvalid, ErrTooLarge} {
				if other != tc.err && errors.Is(err, other) {
					t.Errorf("error %q also wraps %q", err, other)
				}
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "events: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if strings.Contains(err.Error(), testID[:12]) {
				t.Errorf("error %q contains the session id hash", err)
			}
		})
	}
	for name := range cases {
		if !seen[name] {
			t.Errorf("table names %s, which is not in testdata/invalid", name)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(op *SessionOp)
		err    error  // nil: valid
		field  string // named in the error
	}{
		{"valid create", func(op *SessionOp) {}, nil, ""},
		{"valid save", func(op *SessionOp) { op.Op = OpSave }, nil, ""},
		{"valid destroy", func(op *SessionOp) { op.Op, op.Session, op.Reason = OpDestroy, nil, "logout" }, nil, ""},
		{"destroy without reason", func(op *SessionOp) { op.Op, op.Session = OpDestroy, nil }, nil, ""},
		{"no group", func(op *SessionOp) { op.Session.Group = "" }, nil, ""},
		{"no attrs", func(op *SessionOp) { op.Session.Attrs = nil }, nil, ""},
		{"nil attr value", func(op *SessionOp) { op.Session.Attrs["x"] = nil }, nil, ""},
		{"longest tokens", func(op *SessionOp) { op.Cluster = strings.Repeat("a._-Z9", 10) + "abcd" }, nil, ""},
		{"last access equals created", func(op *SessionOp) { op.Session.LastAccess = op.Session.Created }, nil, ""},
		{"longest principal", func(op *SessionOp) { op.Session.Principal = strings.Repeat("é", MaxPrincipalBytes/2) }, nil, ""},
		{"no principal, no group", func(op *SessionOp) { op.Session.Principal, op.Session.Group = "", "" }, nil, ""},
		{"delta without principal", func(op *SessionOp) {
			op.Op, op.Session.Principal, op.Session.Group, op.Session.Attrs, op.Set = OpDelta, "", "", nil, map[string][]byte{"a": {1}}
		}, nil, ""},
		{"most attrs", func(op *SessionOp) { op.Session.Attrs = manyAttrs(MaxAttributes) }, nil, ""},

		{"v zero", func(op *SessionOp) { op.V = 0 }, ErrSchemaVersion, "schema version 0"},
		{"v two", func(op *SessionOp) { op.V = 2 }, ErrSchemaVersion, "schema version 2"},
		{"empty op", func(op *SessionOp) { op.Op = "" }, ErrInvalid, `"op"`},
		{"op case", func(op *SessionOp) { op.Op = "Create" }, ErrInvalid, `"op"`},
		{"empty cluster", func(op *SessionOp) { op.Cluster = "" }, ErrInvalid, `"cluster"`},
		{"long cluster", func(op *SessionOp) { op.Cluster = strings.Repeat("c", 65) }, ErrInvalid, `"cluster"`},
		{"slash in site", func(op *SessionOp) { op.Site = "us/east" }, ErrInvalid, `"site"`},
		{"unicode writer", func(op *SessionOp) { op.Writer = "autĥ" }, ErrInvalid, `"writer"`},
		{"empty id", func(op *SessionOp) { op.ID = "" }, ErrInvalid, `"id"`},
		{"raw session id", func(op *SessionOp) { op.ID = "AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8.*AAJTSQACMDE.*" }, ErrInvalid, `"id"`},
		{"short ver", func(op *SessionOp) { op.Version = "193512b1c0c0001" }, ErrInvalid, `"ver"`},
		{"non-hex ver", func(op *SessionOp) { op.Version = "0193512b1c0c000g" }, ErrInvalid, `"ver"`},
		{"negative at", func(op *SessionOp) { op.At = -1 }, ErrInvalid, `"at"`},
		{"reason on create", func(op *SessionOp) { op.Reason = "logout" }, ErrInvalid, `"reason"`},
		{"reason not UTF-8", func(op *SessionOp) { op.Op, op.Session, op.Reason = OpDestroy, nil, "\xff" }, ErrInvalid, `"reason"`},
		{"reason 65 bytes", func(op *SessionOp) { op.Op, op.Session, op.Reason = OpDestroy, nil, strings.Repeat("r", 65) }, ErrInvalid, `"reason"`},
		{"empty session on destroy", func(op *SessionOp) { op.Op, op.Session = OpDestroy, &Session{} }, ErrInvalid, `"session"`},
		{"long principal", func(op *SessionOp) { op.Session.Principal = strings.Repeat("p", MaxPrincipalBytes+1) }, ErrInvalid, `"session.principal"`},
		{"principal not UTF-8", func(op *SessionOp) { op.Session.Principal = "jdoe\xc3" }, ErrInvalid, `"session.principal"`},
		{"group without principal", func(op *SessionOp) { op.Session.Principal = "" }, ErrInvalid, `"session.principal": required with a group`},
		{"bad group", func(op *SessionOp) { op.Session.Group = "staff members" }, ErrInvalid, `"session.group"`},
		{"zero created", func(op *SessionOp) { op.Session.Created, op.Session.LastAccess = 0, 0 }, ErrInvalid, `"session.created"`},
		{"zero maxLife", func(op *SessionOp) { op.Session.MaxLife = 0 }, ErrInvalid, `"session.maxLife"`},
		{"negative maxIdle", func(op *SessionOp) { op.Session.MaxIdle = -1 }, ErrInvalid, `"session.maxIdle"`},
		{"too many attrs", func(op *SessionOp) { op.Session.Attrs = manyAttrs(MaxAttributes + 1) }, ErrInvalid, `"session.attrs": want at most 256 attributes, got 257`},
		{"long attr name", func(op *SessionOp) { op.Session.Attrs[strings.Repeat("n", MaxAttributeNameBytes+1)] = nil }, ErrInvalid, `"session.attrs": attribute name "nnnn`},
		{"attr name not UTF-8", func(op *SessionOp) { op.Session.Attrs["a\xffb"] = nil }, ErrInvalid, `attribute name "a\xffb"`},
		{"least bad attr name reported", func(op *SessionOp) {
			op.Session.Attrs["b\xff"] = nil
			op.Session.Attrs["a\xff"] = nil
			op.Session.Attrs["c\xff"] = nil
		}, ErrInvalid, `attribute name "a\xff"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := validOp()
			tc.change(op)
			err := op.Validate()
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := EncodeSessionOp(op); err != nil {
					t.Fatalf("EncodeSessionOp: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Validate = %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not contain %q", err, tc.field)
			}
			if b, encErr := EncodeSessionOp(op); !errors.Is(encErr, tc.err) {
				t.Errorf("EncodeSessionOp = %s, %v; want the Validate error", b, encErr)
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	var op *SessionOp
	if err := op.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil Validate = %v, want ErrInvalid", err)
	}
	if _, err := EncodeSessionOp(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("EncodeSessionOp(nil) = %v, want ErrInvalid", err)
	}
	if got := op.Expires(); !got.IsZero() {
		t.Errorf("nil Expires = %v, want zero", got)
	}
}

func manyAttrs(n int) map[string][]byte {
	m := make(map[string][]byte, n)
	for i := range n {
		m[strings.Repeat("k", 1+i%(MaxAttributeNameBytes-1))+string(rune('a'+i/(MaxAttributeNameBytes-1)))] = []byte{byte(i)}
	}
	return m
}

// The hashed id must never reach an error message, whatever else is wrong.
func TestIDNeverInError(t *testing.T) {
	badIDs := []string{
		"vIF74XTvNRmn",                             // too short
		testID + "A",                               // too long
		strings.Replace(testID, "-", "+", 1),       // standard, not URL, alphabet
		testID[:42] + "B",                          // non-zero trailing bits
		testID[:20] + "\n" + testID[21:],           // '\n' is skipped by base64 decoders
		testID[:42] + "=",                          // padding
		"AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEE", // (part of) a raw session id, not its hash
		strings.Repeat("é", 43),
	}
	for _, id := range badIDs {
		op := validOp()
		op.ID = id
		err := op.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `field "id"`) {
			t.Errorf("Validate with id %q = %v, want ErrInvalid naming the id field", id, err)
			continue
		}
		if strings.Contains(err.Error(), id) {
			t.Errorf("error %q contains the id", err)
		}
		b, _ := json.Marshal(op)
		if _, err := DecodeSessionOp(b); err == nil || strings.Contains(err.Error(), id) {
			t.Errorf("DecodeSessionOp error %v: want an error without the id", err)
		}
	}

}

// opOfSize returns a valid op whose JSON encoding is exactly n bytes.
func opOfSize(t *testing.T, n int) *SessionOp {
	t.Helper()
	op := validOp()
	op.Session.Attrs = map[string][]byte{"blob": {}, "pad": {}}
	base, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	// base64 grows in steps of 4; the name of "pad" takes up the rest.
	room := n - len(base)
	blob := make([]byte, (room-3)/4*3)
	op.Session.Attrs["blob"] = blob
	rest := room - len(blob)/3*4
	delete(op.Session.Attrs, "pad")
	op.Session.Attrs["pad"+strings.Repeat("x", rest)] = []byte{}
	b, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != n {
		t.Fatalf("built an op of %d bytes, want %d", len(b), n)
	}
	return op
}

func TestSizeLimit(t *testing.T) {
	atLimit := opOfSize(t, MaxMessageBytes)
	b, err := EncodeSessionOp(atLimit)
	if err != nil {
		t.Fatalf("EncodeSessionOp at the limit: %v", err)
	}
	if _, err := DecodeSessionOp(b); err != nil {
		t.Fatalf("DecodeSessionOp at the limit: %v", err)
	}

	over := opOfSize(t, MaxMessageBytes+1)
	if b, err := EncodeSessionOp(over); !errors.Is(err, ErrTooLarge) {
		t.Errorf("EncodeSessionOp one byte over the limit = %d bytes, %v; want ErrTooLarge", len(b), err)
	}
	overJSON, _ := json.Marshal(over)
	if _, err := DecodeSessionOp(overJSON); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeSessionOp one byte over the limit: %v, want ErrTooLarge", err)
	}
	// The size is checked before parsing: garbage that big is too large,
	// not malformed.
	if _, err := DecodeSessionOp(bytes.Repeat([]byte{0xff}, MaxMessageBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeSessionOp of big garbage: %v, want ErrTooLarge", err)
	}
	// Whitespace counts: what crosses the bus is the bytes.
	padded := append(append([]byte{}, b...), ' ')
	if _, err := DecodeSessionOp(padded); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeSessionOp of the limit plus a space: %v, want ErrTooLarge", err)
	}
}

// Decode must not accept a message that fits only because it was written
// more compactly than Encode writes it, or a consumer that re-publishes
// what it decoded would fail.
func TestDecodeChecksEncodedSize(t *testing.T) {
	build := func(names int) []byte {
		op := validOp()
		op.Session.Attrs = map[string][]byte{}
		for i := range names {
			op.Session.Attrs[strings.Repeat("<", 100)+strings.Repeat("k", 1+i%26)+string(rune('a'+i/26))] = []byte{}
		}
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		// json.Marshal wrote each '<' as \u003c; a hand-made message need not.
		return bytes.ReplaceAll(b, []byte(`\u003c`), []byte(`<`))
	}

	small := build(3)
	op, err := DecodeSessionOp(small)
	if err != nil {
		t.Fatalf("DecodeSessionOp with a few '<': %v", err)
	}
	if _, err := EncodeSessionOp(op); err != nil {
		t.Fatalf("EncodeSessionOp after decoding: %v", err)
	}

	big := build(MaxAttributes)
	if len(big) > MaxMessageBytes {
		t.Fatalf("test message is %d bytes; it must fit before re-encoding", len(big))
	}
	if _, err := DecodeSessionOp(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("DecodeSessionOp of a message that grows past the limit: %v, want ErrTooLarge", err)
	}

	// Near the limit with little text to grow: re-encoded, and accepted.
	near := opOfSize(t, MaxMessageBytes-20) // 12 more bytes for `,"\u003c":""`
	near.Session.Attrs["<"] = []byte{}
	b, err := json.Marshal(near)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte(`\u003c`), []byte(`<`))
	if _, err := DecodeSessionOp(b); err != nil {
		t.Errorf("DecodeSessionOp of a near-limit message that still fits: %v", err)
	}
}

func TestDecodeNormalizes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs string
		want  map[string][]byte
	}{
		{"empty map", `{}`, nil},
		{"null map", `null`, nil},
		{"null value", `{"a":null}`, map[string][]byte{"a": {}}},
		{"empty value", `{"a":""}`, map[string][]byte{"a": {}}},
		{"value", `{"a":"AQI="}`, map[string][]byte{"a": {1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := `{"v":1,"op":"save","cluster":"c","id":"` + testID + `","ver":"0000000000000001","writer":"w","site":"s","at":1,` +
				`"session":{"principal":"p","created":1,"lastAccess":1,"maxIdle":1,"maxLife":1,"attrs":` + tc.attrs + `}}`
			op, err := DecodeSessionOp([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(op.Session.Attrs, tc.want) {
				t.Errorf("Attrs = %#v, want %#v", op.Session.Attrs, tc.want)
			}
		})
	}
}

func TestEncodeWritesNilValuesAsEmpty(t *testing.T) {
	op := validOp()
	op.Session.Attrs = map[string][]byte{"gone": nil, "kept": []byte("x")}
	b, err := EncodeSessionOp(op)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"gone":""`)) || bytes.Contains(b, []byte("null")) {
		t.Errorf("encoded %s, want \"gone\" as an empty string", b)
	}
	if op.Session.Attrs["gone"] != nil {
		t.Error("EncodeSessionOp changed the caller's attributes")
	}
}

func TestDecodeIgnoresUnknownFields(t *testing.T) {
	want, err := DecodeSessionOp(readTestdata(t, "save.json"))
	if err != nil {
		t.Fatal(err)
	}
	newer := bytes.Replace(readTestdata(t, "save.json"), []byte(`"op": "save",`),
		[]byte(`"op": "save", "trace": {"id": [1, 2, {"x": null}]}, "prio": 3,`), 1)
	got, err := DecodeSessionOp(newer)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with unknown fields decoded %+v, want %+v", got, want)
	}
}

func TestMalformedKeepsJSONError(t *testing.T) {
	_, err := DecodeSessionOp(readTestdata(t, "invalid/not-json.json"))
	if _, ok := errors.AsType[*json.SyntaxError](err); !ok {
		t.Errorf("error %v does not wrap a *json.SyntaxError", err)
	}
	_, err = DecodeSessionOp(readTestdata(t, "invalid/at-string.json"))
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); !ok {
		t.Errorf("error %v does not wrap a *json.UnmarshalTypeError", err)
	}
	_, err = DecodeSessionOp([]byte("{\"v\":1,\"op\":\"save\xff\"}"))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8: %v, want ErrMalformed naming UTF-8", err)
	}
}

func TestExpires(t *testing.T) {
	op := validOp() // created = lastAccess = 1732233600000, idle 1800 s, life 7200 s
	ms := func(m int64) time.Time { return time.UnixMilli(m) }
	if got, want := op.Expires(), ms(1732233600000+1800_000); !got.Equal(want) {
		t.Errorf("idle-bound Expires = %v, want %v", got, want)
	}
	op.Session.LastAccess = 1732233600000 + 7000_000
	if got, want := op.Expires(), ms(1732233600000+7200_000); !got.Equal(want) {
		t.Errorf("life-bound Expires = %v, want %v", got, want)
	}
	op.Session.MaxIdle, op.Session.MaxLife = math.MaxInt64, math.MaxInt64
	if got := op.Expires(); !got.Equal(time.UnixMilli(math.MaxInt64)) {
		t.Errorf("Expires with huge lifetimes = %v, want the far future (no overflow)", got)
	}
	op.Session.MaxIdle = math.MaxInt64/1000 + 1 // overflows only after scaling to ms
	op.Session.MaxLife = 60
	if got, want := op.Expires(), ms(1732233600000+60_000); !got.Equal(want) {
		t.Errorf("Expires = %v, want %v", got, want)
	}
	op.Op, op.Session = OpDestroy, nil
	if got := op.Expires(); !got.IsZero() {
		t.Errorf("destroy Expires = %v, want zero", got)
	}
}

func TestHashID(t *testing.T) {
	// sha256("") = e3b0c442 98fc1c14 ...
	if got, want := HashID(""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"; got != want {
		t.Errorf(`HashID("") = %q, want %q`, got, want)
	}
	if got := HashID("AQIC5wM2LY4SfcxPEcjVKCEI7QdmYvlOZvKZpdEErxVPvx8.*AAJTSQACMDE.*"); got != testID {
		t.Errorf("HashID of the testdata session = %q, want %q", got, testID)
	}
	for _, sid := range []string{"", "a", "AQIC5wM2LY4Sfcx", strings.Repeat("z", 1000)} {
		op := validOp()
		op.ID = HashID(sid)
		if err := op.Validate(); err != nil {
			t.Errorf("HashID(%q) = %q, rejected: %v", sid, op.ID, err)
		}
	}
}
