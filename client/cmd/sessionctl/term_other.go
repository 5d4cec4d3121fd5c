//go:build !linux

package main

import "os"

// isTerminal reports whether f is a character device: a terminal, or /dev/null, which
// errs on the side of asking for --yes and of drawing progress nobody sees.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
