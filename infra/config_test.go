package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sessionha/sessionha/infra/topology"
)

func contextOf(t *testing.T, doc string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestConfigFromContext(t *testing.T) {
	c, err := ConfigFromContext(contextOf(t, `[
		{"name":"eu","region":"eu-west-1","account":"111111111111","primary":true,
		 "settings":{"batchSize":5,"batchingWindow":"2s","maxConcurrency":8,"functionTimeout":"20s",
		             "visibilityTimeout":"3m","maxReceiveCount":7,"tombstoneGrace":"15m","clockTolerance":"10s",
		             "retryBase":"20s","retryMax":"10m","queryMaxAge":"15s",
		             "memoryMB":512,"logRetentionDays":90,"oldestMessageAlarm":"10m"}},
		{"name":"us","region":"us-east-1"}]`), "my-table")
	if err != nil {
		t.Fatal(err)
	}
	if c.Table != "my-table" || len(c.Sites) != 2 || c.Sites[0].Account != "111111111111" || !c.Sites[0].Primary {
		t.Fatalf("%+v", c)
	}
	want := topology.Settings{BatchSize: 5, BatchingWindow: 2 * time.Second, MaxConcurrency: 8, FunctionTimeout: 20 * time.Second,
		VisibilityTimeout: 3 * time.Minute, MaxReceiveCount: 7, TombstoneGrace: 15 * time.Minute,
		RetryBase: 20 * time.Second, RetryMax: 10 * time.Minute, QueryMaxAge: 15 * time.Second, ClockTolerance: 10 * time.Second}
	if got := c.Sites[0].Settings.Topology(); got != want {
		t.Errorf("topology settings %+v, want %+v", got, want)
	}
	if s := c.Sites[0].Settings.withDefaults(); s.MemoryMB != 512 || s.LogRetentionDays != 90 || time.Duration(s.OldestMessageAlarm) != 10*time.Minute {
		t.Errorf("AWS settings %+v", s)
	}
	if s := c.Sites[1].Settings.withDefaults(); s.MemoryMB != 256 || s.LogRetentionDays != 30 || time.Duration(s.OldestMessageAlarm) != 5*time.Minute {
		t.Errorf("AWS defaults %+v", s)
	}
	if c.Sites[1].Settings.Topology() != (topology.Settings{}) {
		t.Errorf("absent settings must leave the topology's defaults")
	}
}

func TestConfigRejects(t *testing.T) {
	for _, tc := range []struct{ sites, why string }{
		{`[]`, "no sites"},
		{`[{"name":"eu","region":"eu-west-1"}]`, "primary"},
		{`[{"name":"eu","region":"eu-west-1","primary":true},{"name":"us","region":"us-east-1","primary":true}]`, "primary"},
		{`[{"name":"eu","region":"eu-west-1","primary":true},{"name":"eu","region":"us-east-1"}]`, "twice"},
		{`[{"name":"EU","region":"eu-west-1","primary":true}]`, "site name"},
		{`[{"name":"eu","primary":true}]`, "region"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"batchSize":11}}]`, "BatchSize"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"batchSise":5}}]`, "unknown field"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"batchingWindow":5}}]`, "duration"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"batchingWindow":"1500ms"}}]`, "whole seconds"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"logRetentionDays":10}}]`, "logRetentionDays"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"memoryMB":64}}]`, "memoryMB"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"settings":{"retryBase":"20s","retryMax":"10s"}}]`, "RetryMax"},
		{`[{"name":"eu","region":"eu-west-1","primary":true,"account":"111111111111"},{"name":"us","region":"us-east-1","account":"222222222222"}]`, "one account"},
	} {
		if _, err := ConfigFromContext(contextOf(t, tc.sites), nil); err == nil || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.sites, err, tc.why)
		}
	}
	if _, err := ConfigFromContext(nil, nil); err == nil || !strings.Contains(err.Error(), "CDK CLI") {
		t.Errorf("no context: %v", err)
	}
	if _, err := ConfigFromContext(contextOf(t, `[{"name":"eu","region":"eu-west-1","primary":true}]`), 5); err == nil {
		t.Error("a table name that is not a string was accepted")
	}
}
