package dynamo

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"
)

// Item is an item in DynamoDB's JSON: attribute name -> attribute value exactly as the wire
// carries it ({"S":"x"}, {"N":"1"}, {"B":""}, {"M":{...}}, ...).
type Item map[string]json.RawMessage

// Clone copies it (the values are never modified in place, so a shallow copy is enough).
func (it Item) Clone() Item {
	if it == nil {
		return nil
	}
	c := make(Item, len(it))
	for k, v := range it {
		c[k] = v
	}
	return c
}

// Equal reports whether two items hold the same attributes with the same values.
func (it Item) Equal(o Item) bool {
	if (it == nil) != (o == nil) || len(it) != len(o) {
		return false
	}
	for k, v := range it {
		w, ok := o[k]
		if !ok || !jsonEqual(v, w) {
			return false
		}
	}
	return true
}

// jsonEqual compares two JSON values by meaning (key order and spacing aside).
func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ca, _ := json.Marshal(x) // maps marshal with sorted keys
	cb, _ := json.Marshal(y)
	return bytes.Equal(ca, cb)
}

// value is one attribute value decoded far enough to size it and to read keys.
type value struct {
	S    *string          `json:"S"`
	N    *string          `json:"N"`
	B    *string          `json:"B"` // base64
	BOOL *bool            `json:"BOOL"`
	NULL *bool            `json:"NULL"`
	M    map[string]value `json:"M"`
	L    []value          `json:"L"`
	SS   []string         `json:"SS"`
	NS   []string         `json:"NS"`
	BS   []string         `json:"BS"`
}

// Size is the item's size by DynamoDB's documented rules: each attribute's name plus its
// value, where a string is its UTF-8 bytes, a number about one byte per two significant
// digits plus one, a binary its bytes, a boolean or null one byte, and a map or list
// 3 bytes plus one per element plus its elements. This is what the 400 KB limit counts.
func (it Item) Size() (int, error) {
	n := 0
	for name, raw := range it {
		var v value
		if err := json.Unmarshal(raw, &v); err != nil {
			return 0, fmt.Errorf("attribute %q: %v", name, err)
		}
		s, err := v.size()
		if err != nil {
			return 0, fmt.Errorf("attribute %q: %v", name, err)
		}
		n += len(name) + s
	}
	return n, nil
}

func (v value) size() (int, error) {
	switch {
	case v.S != nil:
		return len(*v.S), nil
	case v.N != nil:
		return numberSize(*v.N), nil
	case v.B != nil:
		return base64.StdEncoding.DecodedLen(len(*v.B)) - padding(*v.B), nil
	case v.BOOL != nil, v.NULL != nil:
		return 1, nil
	case v.M != nil:
		n := 3
		for k, e := range v.M {
			s, err := e.size()
			if err != nil {
				return 0, err
			}
			n += len(k) + s + 1
		}
		return n, nil
	case v.L != nil:
		n := 3
		for _, e := range v.L {
			s, err := e.size()
			if err != nil {
				return 0, err
			}
			n += s + 1
		}
		return n, nil
	case v.SS != nil:
		n := 0
		for _, s := range v.SS {
			n += len(s)
		}
		return n, nil
	case v.NS != nil:
		n := 0
		for _, s := range v.NS {
			n += numberSize(s)
		}
		return n, nil
	case v.BS != nil:
		n := 0
		for _, s := range v.BS {
			n += base64.StdEncoding.DecodedLen(len(s)) - padding(s)
		}
		return n, nil
	}
	return 0, fmt.Errorf("an attribute value must set one of S, N, B, BOOL, NULL, M, L, SS, NS, BS")
}

func padding(b64 string) int { return len(b64) - len(strings.TrimRight(b64, "=")) }

// numberSize: one byte per two significant digits, plus one.
func numberSize(n string) int {
	digits := 0
	m := strings.TrimLeft(n, "+-")
	if i := strings.IndexAny(m, "eE"); i >= 0 {
		m = m[:i]
	}
	m = strings.Trim(strings.Replace(m, ".", "", 1), "0")
	digits = utf8.RuneCountInString(m)
	return (digits+1)/2 + 1
}

// keyPart renders one key attribute's value as a canonical string: numbers by their
// value ("1" and "1.0" are one key, as in DynamoDB), strings and binaries as they are.
func keyPart(raw json.RawMessage) (string, error) {
	var v value
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch {
	case v.S != nil:
		return "S" + *v.S, nil
	case v.N != nil:
		r, ok := new(big.Rat).SetString(*v.N)
		if !ok {
			return "", fmt.Errorf("%q is not a number", *v.N)
		}
		return "N" + r.RatString(), nil
	case v.B != nil:
		return "B" + *v.B, nil
	}
	return "", fmt.Errorf("a key attribute must be a string, a number or a binary")
}

// ttlSeconds reads a TTL attribute: a number of epoch seconds. ok is false for a missing
// or non-number value, which DynamoDB's TTL ignores.
func ttlSeconds(raw json.RawMessage) (sec int64, ok bool) {
	if raw == nil {
		return 0, false
	}
	var v value
	if json.Unmarshal(raw, &v) != nil || v.N == nil {
		return 0, false
	}
	f, _, err := big.ParseFloat(*v.N, 10, 64, big.ToZero)
	if err != nil {
		return 0, false
	}
	i, _ := f.Int64()
	return i, true
}
