package replication

import "errors"

// Errors callers branch on, with errors.Is. Every other error describes a bad argument.
var (
	// ErrInvalid: Options or an argument has a bad value; the message names it.
	ErrInvalid = errors.New("replication: invalid argument")
	// ErrUnknownRegion: no replica of the replicator has that region.
	ErrUnknownRegion = errors.New("replication: unknown region")
	// ErrKilled: the region was killed; it neither sends nor receives any more.
	ErrKilled = errors.New("replication: region killed")
	// ErrClosed: the replicator was closed.
	ErrClosed = errors.New("replication: replicator closed")
	// ErrApply: a change could not be applied in its destination and is being retried.
	// The error wraps the cause, e.g. dynamo.ErrNoTable for a table missing there.
	ErrApply = errors.New("replication: a change could not be applied")
)
