package topology

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/sessionha/sessionha/internal/record"
)

// TestLogoutItemsAsRecordWritesThem: the suffix and the attributes the auth servers'
// policy allows are those of the logout items internal/record writes.
func TestLogoutItemsAsRecordWritesThem(t *testing.T) {
	key := record.LogoutKey(record.Key("default", "hash"))
	if !strings.HasSuffix(key, LogoutSuffix) || record.LogoutSuffix != LogoutSuffix {
		t.Fatalf("record's logout key %q, suffix %q; topology's suffix %q", key, record.LogoutSuffix, LogoutSuffix)
	}
	m := record.Marshal(&record.Item{Key: key, Rev: 1, Version: "v/w", State: record.Destroyed, ExpiresAt: 1,
		Writer: "w", Site: "eu", Reason: "logout", DestroyVersion: "v/w"})
	if got, want := slices.Sorted(maps.Keys(m)), slices.Sorted(slices.Values(LogoutAttributes)); !slices.Equal(got, want) {
		t.Fatalf("a logout item has attributes %v; the policy allows %v", got, want)
	}
}
