package topology

import (
	"strings"
	"testing"
	"time"
)

func TestForDefaults(t *testing.T) {
	top, err := For(Site{Name: "eu-1", Region: "eu-west-1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if top.Table.Name != DefaultTable || top.Table.TTLAttribute != "expiresAt" || top.Table.PartitionKey != "pk" {
		t.Errorf("table %+v", top.Table)
	}
	ops, _ := top.Queue(QueueOps)
	if ops.DLQ != QueueOpsDLQ || ops.MaxReceiveCount != 5 || ops.VisibilityTimeout != time.Minute {
		t.Errorf("ops queue %+v", ops)
	}
	for _, q := range top.Queues {
		if !strings.HasPrefix(q.Name, "sessionha-eu-1-") {
			t.Errorf("queue name %q does not carry the site", q.Name)
		}
		if strings.HasSuffix(q.ID, "dlq") != strings.HasSuffix(q.Name, "-dlq") {
			t.Errorf("queue %q: a DLQ's name must end in -dlq", q.Name)
		}
	}
	for _, s := range top.Subscriptions {
		if s.Topic == TopicOps && s.FilterPolicy != "" {
			t.Error("the ops queue must take every message on the ops topic")
		}
		if !s.RawDelivery {
			t.Errorf("subscription %s->%s is not raw", s.Topic, s.Queue)
		}
	}
	if len(top.Topics) != 4 {
		t.Errorf("%d topics, want ops, query, reply, notice", len(top.Topics))
	}
}

func TestForRejectsBadInput(t *testing.T) {
	for _, s := range []Site{
		{Name: "Bad_Name", Region: "us-east-1"},
		{Name: "ok"},
		{Name: "ok", Region: "us-east-1", Settings: Settings{BatchSize: 11}},
		{Name: "ok", Region: "us-east-1", Settings: Settings{MaxConcurrency: 1}},
		{Name: "ok", Region: "us-east-1", Settings: Settings{ClockTolerance: 2 * time.Hour}},
	} {
		if _, err := For(s, ""); err == nil {
			t.Errorf("For(%+v) accepted", s)
		}
	}
}
