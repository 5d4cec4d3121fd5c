package dynamo

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// table is what the layer knows of a table beyond what the engine keeps: its key (to
// find the key of every item written), its description's missing parts, TTL and tags.
type table struct {
	name      string
	hashKey   string
	rangeKey  string // "" for none
	created   time.Time
	attrDefs  json.RawMessage // as CreateTable gave them, with UpdateTable's additions
	stream    json.RawMessage // StreamSpecification, nil for none
	streamTS  time.Time       // when the stream was enabled: its label
	billing   string
	ttlAttr   string // "" while TTL is off
	ttlLast   time.Time
	tags      map[string]string
	deletable bool // DeletionProtectionEnabled is false
	// expiry: key -> the TTL attribute's epoch seconds, for the sweeper. Kept for every
	// item with a number in the TTL attribute while TTL is on.
	expiry map[string]expiring
}

type expiring struct {
	key Item
	at  int64
}

// keyOf returns an item's key attributes and their canonical string.
func (t *table) keyOf(it Item) (Item, string, error) {
	h, ok := it[t.hashKey]
	if !ok {
		return nil, "", fmt.Errorf("One of the required keys was not given a value: missing %s", t.hashKey)
	}
	hs, err := keyPart(h)
	if err != nil {
		return nil, "", fmt.Errorf("key attribute %s: %v", t.hashKey, err)
	}
	key := Item{t.hashKey: h}
	// Length-prefixed, so that no hash value can run into its range value.
	ks := strconv.Itoa(len(hs)) + ":" + hs
	if t.rangeKey != "" {
		r, ok := it[t.rangeKey]
		if !ok {
			return nil, "", fmt.Errorf("One of the required keys was not given a value: missing %s", t.rangeKey)
		}
		rs, err := keyPart(r)
		if err != nil {
			return nil, "", fmt.Errorf("key attribute %s: %v", t.rangeKey, err)
		}
		key[t.rangeKey] = r
		ks += rs
	}
	return key, ks, nil
}

func (r *Replica) arn(name string) string {
	return fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", r.o.Region, r.o.Account, name)
}

// createTable records a table the engine has just created.
func (r *Replica) noteCreated(body []byte) error {
	var in struct {
		TableName                 string
		AttributeDefinitions      json.RawMessage
		KeySchema                 []struct{ AttributeName, KeyType string }
		StreamSpecification       json.RawMessage
		BillingMode               string
		Tags                      []struct{ Key, Value string }
		DeletionProtectionEnabled bool
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return err
	}
	t := &table{name: in.TableName, created: r.o.Now(), attrDefs: in.AttributeDefinitions,
		billing: in.BillingMode, tags: map[string]string{}, deletable: !in.DeletionProtectionEnabled}
	if t.billing == "" {
		t.billing = "PROVISIONED"
	}
	for _, k := range in.KeySchema {
		switch k.KeyType {
		case "HASH":
			t.hashKey = k.AttributeName
		case "RANGE":
			t.rangeKey = k.AttributeName
		}
	}
	if streamEnabled(in.StreamSpecification) {
		t.stream, t.streamTS = in.StreamSpecification, r.o.Now()
	}
	for _, tg := range in.Tags {
		t.tags[tg.Key] = tg.Value
	}
	r.tables[t.name] = t
	return nil
}

func streamEnabled(spec json.RawMessage) bool {
	var s struct{ StreamEnabled bool }
	return spec != nil && json.Unmarshal(spec, &s) == nil && s.StreamEnabled
}

// noteUpdated records what an UpdateTable changed that the engine does not keep.
func (r *Replica) noteUpdated(t *table, body []byte) {
	var in struct {
		AttributeDefinitions      []json.RawMessage
		StreamSpecification       json.RawMessage
		BillingMode               string
		DeletionProtectionEnabled *bool
	}
	if json.Unmarshal(body, &in) != nil {
		return
	}
	if len(in.AttributeDefinitions) > 0 {
		var have []json.RawMessage
		_ = json.Unmarshal(t.attrDefs, &have)
		names := map[string]bool{}
		for _, d := range have {
			var x struct{ AttributeName string }
			_ = json.Unmarshal(d, &x)
			names[x.AttributeName] = true
		}
		for _, d := range in.AttributeDefinitions {
			var x struct{ AttributeName string }
			_ = json.Unmarshal(d, &x)
			if !names[x.AttributeName] {
				have = append(have, d)
			}
		}
		t.attrDefs, _ = json.Marshal(have)
	}
	if in.StreamSpecification != nil {
		if streamEnabled(in.StreamSpecification) {
			t.stream, t.streamTS = in.StreamSpecification, r.o.Now()
		} else {
			t.stream = nil
		}
	}
	if in.BillingMode != "" {
		t.billing = in.BillingMode
	}
	if in.DeletionProtectionEnabled != nil {
		t.deletable = !*in.DeletionProtectionEnabled
	}
}

// describe completes the engine's table description with what DynamoDB always says and
// the engine leaves out: the status (a wait for ACTIVE would never end), the ARN, the
// attribute definitions, the stream, billing and the indexes' status.
func (r *Replica) describe(t *table, engine json.RawMessage) json.RawMessage {
	d := map[string]any{}
	_ = json.Unmarshal(engine, &d)
	d["TableName"] = t.name
	d["TableStatus"] = "ACTIVE"
	d["TableArn"] = r.arn(t.name)
	d["TableId"] = fmt.Sprintf("%08x-0000-4000-8000-%012x", uint32(t.created.Unix()), t.created.UnixNano()&0xffffffffffff)
	d["CreationDateTime"] = float64(t.created.UnixMilli()) / 1000
	d["AttributeDefinitions"] = t.attrDefs
	d["BillingModeSummary"] = map[string]any{"BillingMode": t.billing}
	d["DeletionProtectionEnabled"] = !t.deletable
	if _, ok := d["ProvisionedThroughput"]; !ok {
		d["ProvisionedThroughput"] = map[string]any{"ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0}
	}
	if t.stream != nil {
		d["StreamSpecification"] = t.stream
		label := t.streamTS.UTC().Format("2006-01-02T15:04:05.000")
		d["LatestStreamLabel"] = label
		d["LatestStreamArn"] = r.arn(t.name) + "/stream/" + label
	} else {
		delete(d, "StreamSpecification")
	}
	if gsis, ok := d["GlobalSecondaryIndexes"].([]any); ok {
		for _, g := range gsis {
			if m, ok := g.(map[string]any); ok {
				if s, _ := m["IndexStatus"].(string); s == "" {
					m["IndexStatus"] = "ACTIVE"
				}
				if name, _ := m["IndexName"].(string); name != "" {
					m["IndexArn"] = r.arn(t.name) + "/index/" + name
				}
			}
		}
	}
	b, _ := json.Marshal(d)
	return b
}

// listTables answers ListTables, which the engine lacks, in name order with paging.
func (r *Replica) listTables(body []byte) (int, any) {
	var in struct {
		ExclusiveStartTableName string
		Limit                   int
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	if in.Limit == 0 {
		in.Limit = 100
	}
	if in.Limit < 1 || in.Limit > 100 {
		return validationError(fmt.Sprintf("1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and 100", in.Limit))
	}
	names := slices.Sorted(maps.Keys(r.tables))
	out := map[string]any{}
	list := []string{}
	for _, n := range names {
		if n <= in.ExclusiveStartTableName {
			continue
		}
		if len(list) == in.Limit {
			out["LastEvaluatedTableName"] = list[len(list)-1]
			break
		}
		list = append(list, n)
	}
	out["TableNames"] = list
	return http.StatusOK, out
}

// tableByName finds a table for an operation that names it, or says it is missing the
// way DynamoDB does.
func (r *Replica) tableByName(name string) (*table, int, any) {
	t, ok := r.tables[name]
	if !ok {
		st, body := apiError(http.StatusBadRequest, "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
			"Requested resource not found: Table: "+name+" not found")
		return nil, st, body
	}
	return t, 0, nil
}

// tableFromARN accepts a table name or ARN (the tagging API takes ARNs).
func (r *Replica) tableFromARN(arn string) (*table, int, any) {
	for name, t := range r.tables {
		if arn == r.arn(name) || arn == name {
			return t, 0, nil
		}
	}
	st, body := apiError(http.StatusBadRequest, "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
		"Requested resource not found: ResourceArn: "+arn+" not found")
	return nil, st, body
}

func (r *Replica) tagResource(body []byte) (int, any) {
	var in struct {
		ResourceArn string
		Tags        []struct{ Key, Value string }
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	t, st, e := r.tableFromARN(in.ResourceArn)
	if t == nil {
		return st, e
	}
	for _, tg := range in.Tags {
		t.tags[tg.Key] = tg.Value
	}
	return http.StatusOK, map[string]any{}
}

func (r *Replica) untagResource(body []byte) (int, any) {
	var in struct {
		ResourceArn string
		TagKeys     []string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	t, st, e := r.tableFromARN(in.ResourceArn)
	if t == nil {
		return st, e
	}
	for _, k := range in.TagKeys {
		delete(t.tags, k)
	}
	return http.StatusOK, map[string]any{}
}

func (r *Replica) listTags(body []byte) (int, any) {
	var in struct{ ResourceArn string }
	if err := json.Unmarshal(body, &in); err != nil {
		return serializationError(err)
	}
	t, st, e := r.tableFromARN(in.ResourceArn)
	if t == nil {
		return st, e
	}
	tags := []map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(t.tags)) {
		tags = append(tags, map[string]string{"Key": k, "Value": t.tags[k]})
	}
	return http.StatusOK, map[string]any{"Tags": tags}
}
