package main

import (
	"context"
	"fmt"
	"testing"
)

// TestStatsCountsDirectReads: READS counts the reads auth servers make on the table
// themselves (ReadPath direct), which no function sees: an instance that never wrote the
// session loads it five times, and READS grows by at least five while the functions
// answered no failover query.
func TestStatsCountsDirectReads(t *testing.T) {
	ctx := context.Background()
	w, r := openStore(t, "ctl-reads-w", ""), openStore(t, "ctl-reads-r", "")
	id := create(t, w, w, "rhea", nil)
	queries := func() float64 { return theSite.Metrics.Snapshot().Functions["sessionquery"]["Queries"] }
	q0 := queries()
	before := statsRow(t, ctl(t, "stats", "-i", "1", "-n", "1").stdout)
	for range 5 {
		if _, err := r.Load(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Stats(); st.Reads != 5 || st.BusQueries != 0 {
		t.Fatalf("the reader's own counts: %d reads, %d over the bus; want 5 direct reads", st.Reads, st.BusQueries)
	}
	eventually(t, "READS counts the 5 direct reads", func() (bool, string) {
		res := ctl(t, "stats", "-i", "1", "-n", "1")
		if res.code != 0 {
			return false, res.String()
		}
		row := statsRow(t, res.stdout)
		return num(t, row["READS"]) >= num(t, before["READS"])+5 && num(t, row["REQUESTS"]) >= num(t, before["REQUESTS"])+5,
			fmt.Sprintf("before %v, now %v", before, row)
	})
	if q := queries(); q != q0 {
		t.Errorf("sessionquery answered %v queries meanwhile: the reads were to be direct", q-q0)
	}
}

// TestToTotals: reads are the table's key reads less sessionop's own merge reads, never
// below zero; requests add them to the ops delivered and the queries refused.
func TestToTotals(t *testing.T) {
	fns := map[string]map[string]float64{
		"sessionop":    {"Applied": 10, "Unchanged": 2, "Rejected": 1, "Failed": 1, "Destroyed": 3, "Reads": 4},
		"sessionquery": {"Queries": 6, "Rejected": 2, "Failed": 1},
	}
	got := toTotals(fns, map[string]float64{"GetItem": 20, "BatchGetItem": 1, "PutItem": 50, "Query": 9})
	want := totals{requests: 10 + 2 + 1 + 1 + 2 + 17, reads: 17, writes: 10, deletes: 3, rejected: 3, failed: 2}
	if got != want {
		t.Errorf("toTotals = %+v, want %+v", got, want)
	}
	if got := toTotals(fns, map[string]float64{"GetItem": 3}); got.reads != 0 {
		t.Errorf("reads %v when sessionop's reads exceed the table's (sources lagging): want 0", got.reads)
	}
}
