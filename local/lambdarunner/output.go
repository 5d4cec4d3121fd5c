package lambdarunner

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// Bounds on what one environment's output may cost us in memory.
const (
	maxLine     = 256 << 10 // a longer "line" is passed on in pieces
	maxTailLine = 2 << 10   // lines quoted in errors are cut to this
	keptLines   = 32        // lines kept for error messages
)

// lineWriter receives one bootstrap's stdout and stderr (exec gives both the same pipe
// when they are the same writer, and calls Write from one goroutine), passes whole lines
// on to the function's Output, and keeps the last lines for error messages.
type lineWriter struct {
	out   io.Writer   // the function's Output, or nil
	outMu *sync.Mutex // shared by every function of the runner: Output may be shared

	mu   sync.Mutex // guards partial and ring, read by tail from other goroutines
	buf  []byte     // an incomplete line
	ring [keptLines]string
	n    int // lines written to ring in total
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLine {
				i = maxLine
			} else {
				break
			}
		}
		line := w.buf[:i]
		if i < len(w.buf) && w.buf[i] == '\n' {
			i++
		}
		w.emit(line)
		w.buf = w.buf[i:]
	}
	// Keep the partial line in a fresh slice so the consumed prefix can be collected.
	w.buf = append([]byte(nil), w.buf...)
	return len(p), nil
}

// flush passes on an unterminated last line, once the process has exited.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

// emit must be called with w.mu held.
func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if w.out != nil {
		whole := make([]byte, len(line)+1)
		copy(whole, line)
		whole[len(line)] = '\n'
		w.outMu.Lock()
		w.out.Write(whole) //nolint:errcheck // a failing log sink must not stop the function
		w.outMu.Unlock()
	}
	s := string(line)
	if len(s) > maxTailLine {
		s = s[:maxTailLine] + "…"
	}
	w.ring[w.n%keptLines] = s
	w.n++
}

// tail returns the last n complete lines, oldest first, and any unterminated line.
func (w *lineWriter) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > keptLines {
		n = keptLines
	}
	if n > w.n {
		n = w.n
	}
	var b strings.Builder
	for i := w.n - n; i < w.n; i++ {
		b.WriteString(w.ring[i%keptLines])
		b.WriteByte('\n')
	}
	if len(w.buf) > 0 {
		b.Write(w.buf[:min(len(w.buf), maxTailLine)])
		b.WriteByte('\n')
	}
	return b.String()
}
