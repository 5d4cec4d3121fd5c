package record

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MaxItemBytes is DynamoDB's limit on an item's size (400 KB), which Apply checks before
// writing: a PutItem over it would fail the same way on every retry.
const MaxItemBytes = 400 << 10

// ItemSize is the size DynamoDB counts for an item: each attribute's name (UTF-8 bytes)
// plus its value's size (ValueSize).
func ItemSize(m map[string]types.AttributeValue) int {
	n := 0
	for name, v := range m {
		n += len(name) + ValueSize(v)
	}
	return n
}

// ValueSize is an attribute value's size by DynamoDB's documented rules: strings their
// UTF-8 bytes, binaries their raw bytes, numbers one byte per two significant digits plus
// one, booleans and nulls one, lists and maps 3 bytes plus each element and one byte per
// element (a map's element counts its key), sets the sum of their elements.
func ValueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range v.Value {
			n += len(k) + ValueSize(e) + 1
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += ValueSize(e) + 1
		}
		return n
	case *types.AttributeValueMemberSS:
		n := 0
		for _, e := range v.Value {
			n += len(e)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 0
		for _, e := range v.Value {
			n += numberSize(e)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 0
		for _, e := range v.Value {
			n += len(e)
		}
		return n
	}
	return 0
}

// numberSize is a number's size: one byte per two significant digits, plus one.
func numberSize(s string) int {
	s = strings.TrimLeft(s, "+-")
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.Trim(strings.Replace(s, ".", "", 1), "0")
	return (len(s)+1)/2 + 1
}

// attrBytes is the size of the attribute values, for error messages.
func attrBytes(attrs map[string][]byte) int {
	n := 0
	for k, v := range attrs {
		n += len(k) + len(v)
	}
	return n
}
