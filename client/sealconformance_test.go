package client_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/storetest"
)

// TestConformanceFileSealed: a store that seals what it writes behaves as any other
// (test/e2e runs the suite sealed with persistence ha).
func TestConformanceFileSealed(t *testing.T) {
	k, err := client.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{1}, client.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, opener(client.Config{Persistence: client.PersistenceFile, Keyring: k,
		Frequency: client.FrequencyTimeBased, FlushInterval: 100 * time.Millisecond, Scope: client.ScopeModifiedAttribute}),
		storetest.Options{Shared: true})
}
