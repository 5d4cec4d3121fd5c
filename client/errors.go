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
	// ErrSealed: a sealed attribute value does not open: sealed with a key this store's
	// Keyring lacks (or the store has none), or changed since it was sealed, or moved from
	// another session or attribute (see Keyring). Load fails with it for the whole
	// session, naming the attribute and the key id, never the value: serving the session
	// without one of its attributes could change what it grants.
	ErrSealed = errors.New("client: sealed attribute value does not open")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("client: store closed")
)
