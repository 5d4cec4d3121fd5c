package e2e

import (
	"testing"
	"time"

	"github.com/sessionha/sessionha/client"
	"github.com/sessionha/sessionha/client/storetest"
)

// TestConformanceHA runs the Store conformance suite (client/storetest) with persistence
// ha on the local site, for each frequency and scope. Another store sees a change once
// the function has applied it: the suite polls for that.
func TestConformanceHA(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*client.Config)
	}{
		{"web-method/session", nil},
		{"time-based/modified-session", func(c *client.Config) {
			c.Frequency, c.FlushInterval, c.Scope = client.FrequencyTimeBased, 200*time.Millisecond, client.ScopeModifiedSession
		}},
		{"web-method/modified-attribute", func(c *client.Config) { c.Scope = client.ScopeModifiedAttribute }},
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) *client.Store {
				return openHA(t, "conformance-"+randomSuffix(), c.edit)
			}, storetest.Options{Shared: true, Eventually: 10 * time.Second})
		})
	}
}
