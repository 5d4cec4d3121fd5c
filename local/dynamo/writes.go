package dynamo

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// errItemTooLarge is DynamoDB's answer to an item over 400 KB.
const errItemTooLarge = "Item size has exceeded the maximum allowed size"

// touched is one item a write may change: its table, key and image before the write.
type touched struct {
	t   *table
	key Item
	ks  string
	old Item
}

// write runs an item write. The layer reads each item it touches before and after, so
// that it can answer what the engine leaves out (ReturnValues and
// ReturnValuesOnConditionCheckFailure of PutItem and DeleteItem), refuse or undo what
// DynamoDB would refuse (items over 400 KB), and publish the change. The caller holds
// wmu, and mu exclusively for the writes it may undo (UpdateItem and batches).
func (r *Replica) write(op string, body []byte) (int, any) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return serializationError(err)
	}
	switch op {
	case "PutItem", "DeleteItem":
		return r.singleWrite(op, req)
	case "UpdateItem":
		var in struct {
			TableName string
			Key       Item
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return serializationError(err)
		}
		w, st, e := r.touch(in.TableName, in.Key)
		if w == nil {
			return st, e
		}
		return r.applyWrites(op, body, []*touched{w})
	case "BatchWriteItem":
		var in struct {
			RequestItems map[string][]struct {
				PutRequest    *struct{ Item Item }
				DeleteRequest *struct{ Key Item }
			}
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return serializationError(err)
		}
		var ws []*touched
		for name, reqs := range in.RequestItems {
			for _, rq := range reqs {
				var key Item
				switch {
				case rq.PutRequest != nil:
					if st, e := checkSize(rq.PutRequest.Item); st != 0 {
						return st, e
					}
					key = rq.PutRequest.Item
				case rq.DeleteRequest != nil:
					key = rq.DeleteRequest.Key
				default:
					continue // the engine says what is wrong with it
				}
				w, st, e := r.touch(name, key)
				if w == nil {
					return st, e
				}
				ws = append(ws, w)
			}
		}
		if dup := duplicate(ws); dup {
			return validationError("Provided list of item keys contains duplicates")
		}
		return r.applyWrites(op, body, ws)
	case "TransactWriteItems":
		var in struct {
			TransactItems []struct {
				Put *struct {
					TableName string
					Item      Item
				}
				Update, Delete, ConditionCheck *struct {
					TableName string
					Key       Item
				}
			}
		}
		if err := json.Unmarshal(body, &in); err != nil {
			return serializationError(err)
		}
		var ws []*touched
		for _, ti := range in.TransactItems {
			var name string
			var key Item
			switch {
			case ti.Put != nil:
				if st, e := checkSize(ti.Put.Item); st != 0 {
					return st, e
				}
				name, key = ti.Put.TableName, ti.Put.Item
			case ti.Update != nil:
				name, key = ti.Update.TableName, ti.Update.Key
			case ti.Delete != nil:
				name, key = ti.Delete.TableName, ti.Delete.Key
			default:
				continue // a condition check changes nothing
			}
			w, st, e := r.touch(name, key)
			if w == nil {
				return st, e
			}
			ws = append(ws, w)
		}
		return r.applyWrites(op, body, ws)
	}
	return validationError("unknown write " + op)
}

// touch looks up the table and the item a write names, with its image before.
func (r *Replica) touch(name string, item Item) (*touched, int, any) {
	t, st, e := r.tableByName(name)
	if t == nil {
		return nil, st, e
	}
	key, ks, err := t.keyOf(item)
	if err != nil {
		st, e := validationError(err.Error())
		return nil, st, e
	}
	old, err := r.getItem(name, key)
	if err != nil {
		st, e := internalError(err)
		return nil, st, e
	}
	return &touched{t: t, key: key, ks: ks, old: old}, 0, nil
}

func duplicate(ws []*touched) bool {
	seen := map[string]bool{}
	for _, w := range ws {
		id := w.t.name + "\x00" + w.ks
		if seen[id] {
			return true
		}
		seen[id] = true
	}
	return false
}

func checkSize(it Item) (int, any) {
	n, err := it.Size()
	if err != nil {
		return validationError(err.Error())
	}
	if n > MaxItemSize {
		return validationError(errItemTooLarge)
	}
	return 0, nil
}

// singleWrite runs PutItem or DeleteItem. The engine ignores their
// ReturnValuesOnConditionCheckFailure and answers PutItem's ReturnValues with the new
// item; the layer strips both and answers them itself from the image it read before.
func (r *Replica) singleWrite(op string, req map[string]json.RawMessage) (int, any) {
	var name, rv, rvccf string
	_ = json.Unmarshal(req["TableName"], &name)
	_ = json.Unmarshal(req["ReturnValues"], &rv)
	_ = json.Unmarshal(req["ReturnValuesOnConditionCheckFailure"], &rvccf)
	if rv != "" && rv != "NONE" && rv != "ALL_OLD" {
		return validationError("Return values set to invalid value")
	}
	if rvccf != "" && rvccf != "NONE" && rvccf != "ALL_OLD" {
		return validationError("1 validation error detected: Value '" + rvccf + "' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]")
	}
	var item Item
	field := "Key"
	if op == "PutItem" {
		field = "Item"
	}
	if err := json.Unmarshal(req[field], &item); err != nil || item == nil {
		return validationError(fmt.Sprintf("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", strings.ToLower(field[:1])+field[1:]))
	}
	if op == "PutItem" {
		if st, e := checkSize(item); st != 0 {
			return st, e
		}
	}
	w, st, e := r.touch(name, item)
	if w == nil {
		return st, e
	}
	delete(req, "ReturnValues")
	delete(req, "ReturnValuesOnConditionCheckFailure")
	body, _ := json.Marshal(req)
	st, resp := r.engine1(op, body)
	if st != http.StatusOK {
		if rvccf == "ALL_OLD" && w.old != nil && isCondFailed(resp) {
			return st, map[string]any{"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
				"message": "The conditional request failed", "Item": w.old}
		}
		return st, resp
	}
	if err := r.captured([]*touched{w}); err != nil {
		return internalError(err)
	}
	if rv == "ALL_OLD" && w.old != nil {
		return http.StatusOK, map[string]any{"Attributes": w.old}
	}
	return http.StatusOK, map[string]any{}
}

// applyWrites passes a write to the engine, then undoes it if it left an item over the
// size limit, or publishes what it changed.
func (r *Replica) applyWrites(op string, body []byte, ws []*touched) (int, any) {
	st, resp := r.engine1(op, body)
	if st != http.StatusOK {
		return st, resp
	}
	news := make([]Item, len(ws))
	tooLarge := false
	for i, w := range ws {
		n, err := r.getItem(w.t.name, w.key)
		if err != nil {
			return internalError(err)
		}
		news[i] = n
		if n != nil {
			if s, _ := n.Size(); s > MaxItemSize {
				tooLarge = true
			}
		}
	}
	if tooLarge {
		// DynamoDB checks the size before it writes; the engine cannot, so the layer puts
		// back what was there. Nobody saw the large item: mu is held exclusively.
		for _, w := range ws {
			var err error
			if w.old != nil {
				err = r.engineCall("PutItem", map[string]any{"TableName": w.t.name, "Item": w.old}, nil)
			} else {
				err = r.engineCall("DeleteItem", map[string]any{"TableName": w.t.name, "Key": w.key}, nil)
			}
			if err != nil {
				return internalError(fmt.Errorf("undo a write over the size limit: %w", err))
			}
		}
		return validationError(errItemTooLarge)
	}
	for i, w := range ws {
		r.trackAndEmit(w, news[i])
	}
	return st, resp
}

// captured reads back what a write left and publishes it.
func (r *Replica) captured(ws []*touched) error {
	for _, w := range ws {
		n, err := r.getItem(w.t.name, w.key)
		if err != nil {
			return err
		}
		r.trackAndEmit(w, n)
	}
	return nil
}

func (r *Replica) trackAndEmit(w *touched, n Item) {
	if n != nil {
		r.trackExpiry(w.t, n, nil)
	} else {
		r.trackExpiry(w.t, nil, &w.ks)
	}
	r.emitLocal(w.t, w.key, w.ks, w.old, n, CauseWrite)
}

func isCondFailed(resp any) bool {
	raw, ok := resp.(json.RawMessage)
	if !ok {
		return false
	}
	var e struct {
		Type string `json:"__type"`
	}
	return json.Unmarshal(raw, &e) == nil && strings.HasSuffix(e.Type, "ConditionalCheckFailedException")
}

func internalError(err error) (int, any) {
	return apiError(http.StatusInternalServerError, "com.amazonaws.dynamodb.v20120810#InternalServerError", err.Error())
}
