package events

// Message attributes of a dead letter. A function that receives a message which can never
// apply (malformed, too large, a schema version it does not read, invalid) sends it to its
// queue's dead-letter queue at once, with the original body and message attributes plus
// these, which say why; sessionctl's dlq list shows them. They never carry a session id,
// hashed or not, nor anything of the body.
const (
	// DeadLetterKind is the error's kind, as ErrorKind names it: malformed, too-large,
	// schema-version or invalid.
	DeadLetterKind = "sessionha.dlq.kind"
	// DeadLetterReason is the error's message, which names the offending field.
	DeadLetterReason = "sessionha.dlq.reason"
	// DeadLetterFunction is the function that dead-lettered it (sessionop, sessionquery).
	DeadLetterFunction = "sessionha.dlq.function"
	// DeadLetterSourceQueue is the ARN of the queue it was received from.
	DeadLetterSourceQueue = "sessionha.dlq.source-queue"
	// DeadLetterMessageID is its message id on that queue.
	DeadLetterMessageID = "sessionha.dlq.message-id"
	// DeadLetterReceiveCount is how many times it had been received (a Number).
	DeadLetterReceiveCount = "sessionha.dlq.receive-count"
	// Redrives counts how many times sessionctl has moved it back to its source queue
	// (a Number); a function that dead-letters it again keeps the count.
	Redrives = "sessionha.redrives"
)

// DeadLetterPrefix begins the name of every attribute a function adds to a dead letter;
// a function dead-lettering a message again replaces them all.
const DeadLetterPrefix = "sessionha.dlq."
