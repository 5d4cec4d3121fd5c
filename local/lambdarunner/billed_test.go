package lambdarunner

import (
	"context"
	"testing"
	"time"
)

// TestBilledDuration: Stats.Billed sums the invocations' durations, each rounded up to
// the millisecond: at least what the function slept, at least 1 ms for an instant one,
// and no more than the callers waited.
func TestBilledDuration(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	fn := start(t, r, Function{Name: "sessionha-local-billed", MemoryMB: 128, Timeout: 5 * time.Second})
	invoke(t, fn, `{"op":"echo","value":1}`) // cold: init is not billed as duration here
	base := fn.Stats().Billed
	if base < time.Millisecond || base%time.Millisecond != 0 {
		t.Fatalf("one instant invocation billed %s, want whole milliseconds, at least 1 ms", base)
	}
	t0 := time.Now()
	for range 3 {
		if _, err := fn.Invoke(context.Background(), []byte(`{"op":"sleep","sleep":"30ms"}`)); err != nil {
			t.Fatal(err)
		}
	}
	waited := time.Since(t0)
	billed := fn.Stats().Billed - base
	if billed < 90*time.Millisecond || billed > waited+3*time.Millisecond {
		t.Fatalf("three invocations of 30 ms billed %s (callers waited %s), want 90 ms or more, and no more than the wait", billed, waited)
	}
}
