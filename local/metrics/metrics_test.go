package metrics

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sessionha/sessionha/internal/batch"
)

// emit renders counters the way the functions do (internal/batch.Emit).
func emit(t *testing.T, function string, counts map[string]int64) []byte {
	t.Helper()
	var c batch.Counters
	names := make([]string, 0, len(counts))
	for n, v := range counts {
		c.Add(n, v)
		names = append(names, n)
	}
	var b bytes.Buffer
	batch.Emit(&b, function, &c, names...)
	return b.Bytes()
}

// TestCollectorSums: EMF lines of the namespace are summed per function, whole or split
// across writes; other lines and other namespaces are ignored.
func TestCollectorSums(t *testing.T) {
	c := New("sessionha")
	line1 := emit(t, "sessionop", map[string]int64{"Applied": 3, "Rejected": 1})
	line2 := emit(t, "sessionop", map[string]int64{"Applied": 2, "Destroyed": 1})
	line3 := emit(t, "sessionquery", map[string]int64{"Queries": 4})
	other := bytes.Replace(emit(t, "sessionop", map[string]int64{"Applied": 100}), []byte(`"sessionha"`), []byte(`"other"`), 1)
	logLine := []byte(`{"level":"WARN","msg":"record rejected","Applied":50,"kind":"malformed"}` + "\n")

	_, _ = c.Write(line1)
	_, _ = c.Write(line2[:10]) // a line in pieces
	_, _ = c.Write(append(line2[10:], logLine...))
	_, _ = c.Write(append(append([]byte("not json at all\n"), other...), line3...))

	s := c.Snapshot()
	want := map[string]map[string]float64{
		"sessionop":    {"Applied": 5, "Rejected": 1, "Destroyed": 1},
		"sessionquery": {"Queries": 4},
	}
	for fn, m := range want {
		for name, v := range m {
			if got := s.Functions[fn][name]; got != v {
				t.Errorf("%s %s = %v, want %v", fn, name, got, v)
			}
		}
	}
	if s.Lines != 3 {
		t.Errorf("Lines = %d, want 3", s.Lines)
	}

	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	var got Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET: %d %v %s", rec.Code, err, rec.Body)
	}
	if got.Functions["sessionop"]["Applied"] != 5 || got.Namespace != "sessionha" || got.Since.IsZero() {
		t.Errorf("GET answered %+v", got)
	}
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
}

// TestCountTables: the snapshot carries the table counts of its source, as of the call,
// and none without one.
func TestCountTables(t *testing.T) {
	c := New("sessionha")
	if s := c.Snapshot(); len(s.Tables) != 0 {
		t.Errorf("tables without a source: %v", s.Tables)
	}
	n := int64(0)
	c.CountTables(func() map[string]map[string]int64 {
		n++
		return map[string]map[string]int64{"sessions": {"GetItem": n, "PutItem": 2}}
	})
	c.Snapshot()
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, Path, nil))
	var got Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Tables["sessions"]["GetItem"] != 2 || got.Tables["sessions"]["PutItem"] != 2 {
		t.Errorf("tables %v, want GetItem 2 (read at each snapshot) and PutItem 2", got.Tables)
	}
}
