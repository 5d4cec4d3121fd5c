package dynamo

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// fiveYears: DynamoDB's TTL leaves alone items whose expiry is more than five years in
// the past (a TTL attribute in milliseconds by mistake, say), and so does the sweeper.
const fiveYears = 5 * 365 * 24 * time.Hour

// ttlChangeInterval: DynamoDB refuses a second TTL change on a table within an hour.
const ttlChangeInterval = time.Hour

func (r *Replica) describeTTL(body []byte) (int, any) {
	var in struct{ TableName string }
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	t, st, e := r.tableByName(in.TableName)
	if t == nil {
		return st, e
	}
	d := map[string]any{"TimeToLiveStatus": "DISABLED"}
	if t.ttlAttr != "" {
		d = map[string]any{"TimeToLiveStatus": "ENABLED", "AttributeName": t.ttlAttr}
	}
	return http.StatusOK, map[string]any{"TimeToLiveDescription": d}
}

// updateTTL turns TTL on or off with DynamoDB's rules: no change to what already is, no
// second attribute while one is on, and no second change within an hour.
func (r *Replica) updateTTL(body []byte) (int, any) {
	var in struct {
		TableName               string
		TimeToLiveSpecification struct {
			AttributeName string
			Enabled       *bool
		}
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	spec := in.TimeToLiveSpecification
	if spec.AttributeName == "" || spec.Enabled == nil {
		return validationError("TimeToLiveSpecification needs AttributeName and Enabled")
	}
	t, st, e := r.tableByName(in.TableName)
	if t == nil {
		return st, e
	}
	now := r.o.Now()
	switch {
	case *spec.Enabled && t.ttlAttr == spec.AttributeName:
		return validationError("TimeToLive is already enabled")
	case *spec.Enabled && t.ttlAttr != "":
		return validationError(fmt.Sprintf("TimeToLive is active on a different AttributeName: current AttributeName is %s", t.ttlAttr))
	case !*spec.Enabled && t.ttlAttr == "":
		return validationError("TimeToLive is already disabled")
	case !t.ttlLast.IsZero() && now.Sub(t.ttlLast) < ttlChangeInterval:
		return validationError("Time to live has been modified multiple times within a fixed interval")
	}
	t.ttlLast = now
	if *spec.Enabled {
		t.ttlAttr = spec.AttributeName
		r.indexExpiry(t)
	} else {
		t.ttlAttr, t.expiry = "", nil
	}
	return http.StatusOK, map[string]any{"TimeToLiveSpecification": map[string]any{
		"AttributeName": spec.AttributeName, "Enabled": *spec.Enabled}}
}

// indexExpiry builds t's expiry index from its items, when TTL is turned on.
func (r *Replica) indexExpiry(t *table) {
	t.expiry = map[string]expiring{}
	var last Item
	for {
		in := map[string]any{"TableName": t.name}
		if last != nil {
			in["ExclusiveStartKey"] = last
		}
		var out struct {
			Items            []Item
			LastEvaluatedKey Item
		}
		if err := r.engineCall("Scan", in, &out); err != nil {
			return
		}
		for _, it := range out.Items {
			r.trackExpiry(t, it, nil)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return
		}
		last = out.LastEvaluatedKey
	}
}

// trackExpiry keeps t's expiry index in step with a write: it (nil if deleted), found by
// key when key is given.
func (r *Replica) trackExpiry(t *table, it Item, keyStr *string) {
	if t.ttlAttr == "" {
		return
	}
	var ks string
	var key Item
	if keyStr != nil {
		ks = *keyStr
	}
	if it != nil {
		k, s, err := t.keyOf(it)
		if err != nil {
			return
		}
		key, ks = k, s
	}
	if it == nil {
		delete(t.expiry, ks)
		return
	}
	sec, ok := ttlSeconds(it[t.ttlAttr])
	if !ok {
		delete(t.expiry, ks)
		return
	}
	t.expiry[ks] = expiring{key: key, at: sec}
}

// sweep deletes the items whose TTL passed at least TTLDelay ago, as DynamoDB's TTL
// does in the background: late, and each deletion a change (CauseTTL) like any other,
// replicated to other regions and shown on the stream as the service's own.
func (r *Replica) sweep() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	now := r.o.Now()
	cutoff := now.Add(-r.o.TTLDelay).Unix()
	floor := now.Add(-fiveYears).Unix()
	n := 0
	for _, t := range r.tables {
		for ks, e := range t.expiry {
			if e.at > cutoff || e.at < floor {
				continue
			}
			old, err := r.getItem(t.name, e.key)
			if err != nil {
				continue
			}
			if old == nil {
				delete(t.expiry, ks)
				continue
			}
			// The item may have been rewritten since: check its TTL as it is now.
			if sec, ok := ttlSeconds(old[t.ttlAttr]); !ok || sec > cutoff || sec < floor {
				r.trackExpiry(t, old, nil)
				continue
			}
			if err := r.engineCall("DeleteItem", map[string]any{"TableName": t.name, "Key": e.key}, nil); err != nil {
				continue
			}
			delete(t.expiry, ks)
			r.emitLocal(t, e.key, ks, old, nil, CauseTTL)
			n++
		}
	}
	return n
}

// sweeper runs sweep every TTLPeriod until stop is closed.
func (r *Replica) sweeper() {
	defer close(r.sweepDone)
	tick := time.NewTicker(r.o.TTLPeriod)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			r.sweep()
		}
	}
}
