package core

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/truora/minidyn/types"
)

// errInvalidKeyConditionCount matches DynamoDB ValidationException when the Key map
// does not contain exactly the expected number of attributes (hash + range if defined).
//
//nolint:stylecheck,staticcheck,ST1005 // AWS error message
var errInvalidKeyConditionCount = errors.New("The number of conditions on the keys is invalid")

type keySchema struct {
	HashKey   string
	RangeKey  string
	Secondary bool
}

// validatePrimaryKeyMap ensures Key-shaped maps (GetItem, DeleteItem, UpdateItem)
// contain exactly the hash key and, when applicable, the range key attribute names.
func (ks keySchema) validatePrimaryKeyMap(key map[string]*types.Item) error {
	if ks.Secondary {
		return nil
	}

	want := 1
	if ks.RangeKey != "" {
		want = 2
	}

	if len(key) != want {
		return fmt.Errorf("%w; expected %d keys, got %d", errInvalidKeyConditionCount, want, len(key))
	}

	if _, ok := key[ks.HashKey]; !ok {
		return fmt.Errorf("%w; missing hash key", errMissingField)
	}

	if ks.RangeKey != "" {
		if _, ok := key[ks.RangeKey]; !ok {
			return fmt.Errorf("%w; missing range key", errMissingField)
		}
	}

	return nil
}

func (ks keySchema) GetKey(attrs map[string]string, item map[string]*types.Item) (string, error) {
	key, err := ks.getKeyValue(attrs, item)
	if ks.Secondary && errors.Is(err, errMissingField) {
		// secondary indexes are sparse
		err = nil
	}

	return key, err
}

func (ks keySchema) getKeyValue(attrs map[string]string, item map[string]*types.Item) (string, error) {
	key := []string{}

	val, err := getItemValue(item, ks.HashKey, attrs[ks.HashKey])
	if err != nil {
		return "", err
	}

	hashKeyStr := keyString(val, attrs[ks.HashKey])

	if ks.RangeKey == "" {
		return hashKeyStr, nil
	}

	// sessionha patch 4: the hash part is length-prefixed, so that no hash value can run
	// into its range value (upstream joined them with "." and "a.b"+"c" was "a"+"b.c").
	key = append(key, strconv.Itoa(len(hashKeyStr))+":"+hashKeyStr)

	val, err = getItemValue(item, ks.RangeKey, attrs[ks.RangeKey])
	if err != nil {
		return "", err
	}

	key = append(key, keyString(val, attrs[ks.RangeKey]))

	return strings.Join(key, "."), nil
}

// keyString renders a key value so that string order is DynamoDB's order for its type
// and equal values are one string: numbers by value, binaries by their bytes. Upstream
// printed values with %v, which sorted numbers as text (10 before 9) and made 1 and 1.0
// two keys. (sessionha patch 4)
func keyString(val any, typ string) string {
	switch typ {
	case "N":
		if s, ok := val.(string); ok {
			if k, ok := sortableNumber(s); ok {
				return k
			}
		}
	case "B":
		if b, ok := val.([]byte); ok {
			return string(b)
		}
	}

	return fmt.Sprintf("%v", val)
}

// sortableNumber encodes a decimal number as a string whose byte order is the numbers'
// order: a sign class (0 negative, 1 zero, 2 positive), a biased exponent and the
// significant digits, complemented for negatives and ended by a byte above every digit.
func sortableNumber(s string) (string, bool) {
	neg := false

	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}

	exp := 0

	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return "", false
		}

		s, exp = s[:i], e
	}

	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac

	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}

	exp += len(intPart) // the value is 0.DIGITS times 10^exp

	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		exp--
	}

	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return "1", true
	}

	if exp < -9000 || exp > 9000 {
		return "", false
	}

	if !neg {
		return fmt.Sprintf("2%05d%s", exp+10000, digits), true
	}

	comp := []byte(digits)
	for i, d := range comp {
		comp[i] = '9' - d + '0'
	}

	return fmt.Sprintf("0%05d%s~", 20000-(exp+10000), comp), true
}

func (ks *keySchema) describe() []types.KeySchemaElement {
	desc := []types.KeySchemaElement{}

	keySchemaElement := types.KeySchemaElement{
		AttributeName: ks.HashKey,
		KeyType:       "HASH",
	}
	desc = append(desc, keySchemaElement)

	if ks.RangeKey != "" {
		keySchemaElement := types.KeySchemaElement{
			AttributeName: ks.RangeKey,
			KeyType:       "RANGE",
		}
		desc = append(desc, keySchemaElement)
	}

	return desc
}

func (ks *keySchema) getKeyItem(item map[string]*types.Item) map[string]*types.Item {
	keyItem := map[string]*types.Item{}

	if v, ok := item[ks.HashKey]; ok {
		keyItem[ks.HashKey] = v
	}

	if v, ok := item[ks.RangeKey]; ok && ks.RangeKey != "" {
		keyItem[ks.RangeKey] = v
	}

	return keyItem
}
