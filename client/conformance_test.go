package client_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/storetest"
)

// The conformance suite for the persistences that need no AWS; test/e2e runs it for ha.
func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, opener(client.Config{Persistence: client.PersistenceMemory}), storetest.Options{})
}

func TestConformanceFile(t *testing.T) {
	for name, cfg := range map[string]client.Config{
		"web-method/session":            {Frequency: client.FrequencyWebMethod, Scope: client.ScopeSession},
		"time-based/modified-attribute": {Frequency: client.FrequencyTimeBased, FlushInterval: 100 * time.Millisecond, Scope: client.ScopeModifiedAttribute},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Persistence = client.PersistenceFile
			storetest.Run(t, opener(cfg), storetest.Options{Shared: true})
		})
	}
}

// opener opens stores with cfg; with persistence file, the stores of one test share a
// directory of that test's own.
func opener(cfg client.Config) func(t *testing.T) *client.Store {
	var dirs sync.Map // *testing.T -> dir
	return func(t *testing.T) *client.Store {
		c := cfg
		if c.Persistence == client.PersistenceFile {
			d, _ := dirs.LoadOrStore(t, t.TempDir())
			c.Dir = d.(string)
		}
		s, err := client.Open(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
}
