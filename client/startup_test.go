package client

import (
	"strings"
	"testing"
)

// TestTwoStoresWithOneInstanceIDAreRefused: a second Store with an instance id open in
// this process is refused, naming the variable; after Close the id is free again.
// Stores of other ids are not affected.
func TestTwoStoresWithOneInstanceIDAreRefused(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	first, err := haStore(t, dir, "twice", logs)
	if err != nil {
		t.Fatal(err)
	}
	other, err := haStore(t, t.TempDir(), "twice", logs) // another journal directory: only the registry can tell
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_INSTANCE_ID") || !strings.Contains(err.Error(), `"twice" is open in this process`) {
		t.Fatalf("a second Store with one instance id: %v, want it refused naming SESSIONHA_INSTANCE_ID", err)
	}
	if other != nil {
		t.Fatal("the refused Open returned a store")
	}
	third, err := haStore(t, dir, "another", logs)
	if err != nil {
		t.Fatalf("a Store of another id: %v", err)
	}
	third.Close()
	first.Close()
	again, err := haStore(t, dir, "twice", logs)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}

// TestOwnerReadsNeedNotices: Reads owner without notices is refused at Open, naming both
// settings; the default without notices is always, and with them owner. SaveWait applied
// needs web-method frequency.
func TestOwnerReadsNeedNotices(t *testing.T) {
	_, err := haStore(t, t.TempDir(), "owner-no-notices", &syncBuffer{}, func(c *Config) { c.Reads = ReadsOwner })
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_READS") || !strings.Contains(err.Error(), "SESSIONHA_NOTICE_SCOPE") {
		t.Fatalf("Reads owner without notices: %v, want an error naming SESSIONHA_READS and SESSIONHA_NOTICE_SCOPE", err)
	}
	if c := (Config{}).withDefaults(); c.Reads != ReadsAlways {
		t.Errorf("default Reads without notices: %q, want always", c.Reads)
	}
	if c := (Config{NoticeTopicARN: "arn:n"}).withDefaults(); c.Reads != ReadsOwner || c.SaveWait != SavePublished {
		t.Errorf("defaults with notices: Reads %q SaveWait %q, want owner and published", c.Reads, c.SaveWait)
	}
	_, err = haStore(t, t.TempDir(), "applied-time-based", &syncBuffer{}, func(c *Config) {
		c.SaveWait, c.Frequency = SaveApplied, FrequencyTimeBased
	})
	if err == nil || !strings.Contains(err.Error(), "SESSIONHA_SAVE_WAIT") || !strings.Contains(err.Error(), "SESSIONHA_FREQUENCY") {
		t.Fatalf("SaveWait applied with time-based frequency: %v, want an error naming both variables", err)
	}
	t.Setenv("SESSIONHA_READS", "sometimes")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "SESSIONHA_READS") || !strings.Contains(err.Error(), "owner, always") {
		t.Fatalf("a bad SESSIONHA_READS: %v", err)
	}
}
