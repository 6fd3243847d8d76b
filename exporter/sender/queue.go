package sender

import (
	"context"
	"time"
)

// Record is one spooled sample as the queue hands it out: internal/spool's record, copied
// here so that the sender does not depend on the spool's package.
type Record struct {
	// Seq orders the records; Ack(seq) removes every record up to it.
	Seq uint64
	// Time is when the record was spooled.
	Time time.Time
	// Data is the record: a sample as sample.MarshalRecord encodes it.
	Data []byte
}

// Queue is the durable queue of samples to send: internal/spool, or an in-memory fake in
// tests. The sender is its only consumer.
type Queue interface {
	// Peek returns the oldest unacked records, in Seq order, without removing them: at most
	// max records and, past the first, maxBytes of Data. It returns at least one record
	// whenever one is unacked, even one larger than maxBytes.
	Peek(max int, maxBytes int64) ([]Record, error)
	// Ack removes every record with Seq up to through, durably.
	Ack(through uint64) error
	// Wait returns nil once at least one unacked record exists, or ctx's error.
	Wait(ctx context.Context) error
}
