package record

import (
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MaxItemBytes is DynamoDB's limit on an item's size (400 KB), which Apply checks before
// writing: a PutItem over it would fail the same way on every retry.
const MaxItemBytes = 400 << 10

// ItemSize is the size DynamoDB counts for an item, or a little more: each attribute's
// name (UTF-8 bytes) plus its value's size. Numbers are counted as their decimal digits
// plus one, above DynamoDB's (about one byte per two digits, plus one).
func ItemSize(m map[string]types.AttributeValue) int {
	n := 0
	for name, v := range m {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return len(v.Value) + 1
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range v.Value {
			n += len(k) + valueSize(e) + 1
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += valueSize(e) + 1
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
			n += len(e) + 1
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

// attrBytes is the size of the attribute values, for error messages.
func attrBytes(attrs map[string][]byte) int {
	n := 0
	for k, v := range attrs {
		n += len(k) + len(v)
	}
	return n
}
