package main

import "testing"

// TestStatsTotals: amsessiondb's requests count every message the functions took, the
// queries dropped because their client stopped waiting included.
func TestStatsTotals(t *testing.T) {
	got := fromFunctions(map[string]map[string]float64{
		"sessionop":    {"Applied": 5, "Unchanged": 2, "Rejected": 1, "Failed": 3, "Destroyed": 1, "DeadLettered": 1},
		"sessionquery": {"Queries": 4, "Rejected": 1, "Failed": 1, "Expired": 2},
	})
	want := totals{requests: 5 + 2 + 1 + 3 + 4 + 1 + 2, reads: 4, writes: 5, deletes: 1, rejected: 2, failed: 4}
	if got != want {
		t.Errorf("totals %+v, want %+v", got, want)
	}
}
