package server

import "encoding/json"

// AttributeValue is a concrete representation of DynamoDB's AttributeValue
// that works with standard json encoding/decoding.
type AttributeValue struct {
	B    []byte                     `json:"B,omitempty"`
	BOOL *bool                      `json:"BOOL,omitempty"`
	BS   [][]byte                   `json:"BS,omitempty"`
	L    []*AttributeValue          `json:"L,omitempty"`
	M    map[string]*AttributeValue `json:"M,omitempty"`
	N    *string                    `json:"N,omitempty"`
	NS   []*string                  `json:"NS,omitempty"`
	NULL *bool                      `json:"NULL,omitempty"`
	S    *string                    `json:"S,omitempty"`
	SS   []*string                  `json:"SS,omitempty"`
}

// MarshalJSON writes the one member that is set. The struct tags' omitempty dropped an
// empty binary, list or map, leaving {} on the wire, which no client can read.
// (sessionha patch 3)
func (av AttributeValue) MarshalJSON() ([]byte, error) {
	switch {
	case av.B != nil:
		return json.Marshal(struct{ B []byte }{av.B})
	case av.BOOL != nil:
		return json.Marshal(struct{ BOOL *bool }{av.BOOL})
	case av.BS != nil:
		return json.Marshal(struct{ BS [][]byte }{av.BS})
	case av.L != nil:
		return json.Marshal(struct{ L []*AttributeValue }{av.L})
	case av.M != nil:
		return json.Marshal(struct{ M map[string]*AttributeValue }{av.M})
	case av.N != nil:
		return json.Marshal(struct{ N *string }{av.N})
	case av.NS != nil:
		return json.Marshal(struct{ NS []*string }{av.NS})
	case av.NULL != nil:
		return json.Marshal(struct{ NULL *bool }{av.NULL})
	case av.S != nil:
		return json.Marshal(struct{ S *string }{av.S})
	case av.SS != nil:
		return json.Marshal(struct{ SS []*string }{av.SS})
	}
	return []byte("{}"), nil
}
