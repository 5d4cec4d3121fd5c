package lambdarunner

import (
	"errors"
	"fmt"
	"strings"
)

// FunctionError is a function error: the handler returned an error or panicked, and the
// runtime reported it to the Runtime API (POST .../invocation/{id}/error). The
// environment stays warm unless the runtime exits.
type FunctionError struct {
	Type    string // errorType, e.g. the Go error's type name
	Message string // errorMessage
}

// Error says it is a function error, with its type and message.
func (e *FunctionError) Error() string {
	if e.Type == "" {
		return "function error: " + e.Message
	}
	return "function error " + e.Type + ": " + e.Message
}

// Errors an invocation reports when the execution environment failed rather than the
// function; test them with errors.Is. The message also carries the bootstrap's last
// output lines.
var (
	// ErrCrashed: the bootstrap exited during init or during an invocation, or reported
	// an init error.
	ErrCrashed = errors.New("bootstrap crashed")
	// ErrTimeout: the invocation (or init) outlasted its limit and the environment was
	// killed.
	ErrTimeout = errors.New("timed out")
	// ErrStopped: the Runner is stopped.
	ErrStopped = errors.New("lambdarunner: runner stopped")
)

// envError is an environment failure: a message for people, a sentinel for errors.Is.
type envError struct {
	msg  string
	kind error
}

func (e *envError) Error() string { return e.msg }
func (e *envError) Unwrap() error { return e.kind }

// tailLines is how many of the bootstrap's last output lines an error quotes: enough for
// a Go panic's first frames or the last few structured log lines.
const tailLines = 10

func newEnvError(kind error, tail string, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if tail = strings.TrimRight(tail, "\n"); tail == "" {
		msg += "; last output: (none)"
	} else {
		msg += "; last output:\n" + tail
	}
	return &envError{msg: msg, kind: kind}
}

// backoffError wraps the last init failure while new environments are held back.
type backoffError struct {
	last     error
	failures int
	wait     string
}

func (e *backoffError) Error() string {
	return fmt.Sprintf("%v\n(%d consecutive init failures: next environment start in %s)", e.last, e.failures, e.wait)
}
func (e *backoffError) Unwrap() error { return e.last }
