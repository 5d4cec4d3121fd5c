package client

import "errors"

// Errors callers branch on, with errors.Is. Every other error wraps one of these or
// describes a bad argument; none exposes AWS SDK error types.
var (
	// ErrNotFound: no such session, or it expired, or it was destroyed. The three are not
	// told apart, so a probe learns nothing about ids.
	ErrNotFound = errors.New("client: session not found")
	// ErrTimeout: a read over the bus got no answer within MaxWait.
	ErrTimeout = errors.New("client: no answer within MaxWait")
	// ErrUnavailable: the table or the bus did not answer (after the SDK's retries).
	ErrUnavailable = errors.New("client: session store unavailable")
	// ErrInvalid: the session cannot be stored as it is (say, an attribute name too long).
	ErrInvalid = errors.New("client: invalid session")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("client: store closed")
)
