package dynamo

import (
	"encoding/json"
	"net/http"
)

// search runs a Query or Scan and holds its answer to DynamoDB's page size: at most 1 MB
// of items, the rest left for the next page (LastEvaluatedKey), which the engine does not
// do. When a page would be larger, the layer asks the engine again for only the items
// that fit, so that the engine computes the LastEvaluatedKey. The size counted is that of
// the items returned (DynamoDB counts what it read before filtering and projecting: its
// pages can be smaller still).
func (r *Replica) search(op string, body []byte) (int, any) {
	st, resp := r.engine1(op, body)
	if st != http.StatusOK {
		return st, resp
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(resp.(json.RawMessage), &out); err != nil {
		return internalError(err)
	}
	var items []Item
	_ = json.Unmarshal(out["Items"], &items)
	total, fit := 0, len(items)
	for i, it := range items {
		s, _ := it.Size()
		if total+s > MaxPageSize {
			fit = max(i, 1)
			break
		}
		total += s
	}
	if fit < len(items) {
		var req map[string]json.RawMessage
		if err := json.Unmarshal(body, &req); err != nil {
			return serializationError(err)
		}
		req["Limit"], _ = json.Marshal(fit)
		b, _ := json.Marshal(req)
		if st, resp = r.engine1(op, b); st != http.StatusOK {
			return st, resp
		}
		out = nil
		if err := json.Unmarshal(resp.(json.RawMessage), &out); err != nil {
			return internalError(err)
		}
	}
	// DynamoDB always says Items (an empty list included), Count and ScannedCount; the
	// engine leaves out empty ones. Without a filter every item read is returned, so the
	// scanned count is the count; with a filter the engine does not tell, and the count
	// stands in for it.
	if _, ok := out["Items"]; !ok {
		var sel struct{ Select string }
		_ = json.Unmarshal(body, &sel)
		if sel.Select != "COUNT" {
			out["Items"] = json.RawMessage("[]")
		}
	}
	if _, ok := out["Count"]; !ok {
		out["Count"] = json.RawMessage("0")
	}
	if _, ok := out["ScannedCount"]; !ok {
		out["ScannedCount"] = out["Count"]
	}
	return http.StatusOK, out
}
