package sender

import "time"

// bucket is a token bucket that may go into debt: a request larger than the burst is let
// through once the debt it leaves has been waited off, so any batch size works with any
// rate, and over any interval T no more than burst + rate·T is sent.
type bucket struct {
	rate   float64 // tokens per second
	burst  float64 // the bucket's capacity: one second's worth
	tokens float64
	last   time.Time
}

func newBucket(rate float64, now time.Time) *bucket {
	return &bucket{rate: rate, burst: rate, tokens: rate, last: now}
}

// take removes n tokens and returns how long to wait before using them.
func (b *bucket) take(n float64, now time.Time) time.Duration {
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+b.rate*elapsed)
	}
	b.last = now
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	// Rounded up, so that after the wait the debt is paid in full.
	return time.Duration(-b.tokens/b.rate*float64(time.Second)) + 1
}

// limiter is the sender's drain rate: samples and compressed bytes per second. Every batch,
// retries included, passes through it.
type limiter struct {
	samples, bytes *bucket
}

func newLimiter(cfg Config, now time.Time) *limiter {
	return &limiter{samples: newBucket(cfg.MaxRate, now), bytes: newBucket(float64(cfg.MaxBytesPerSecond), now)}
}

// take accounts for a batch of n samples in size compressed bytes and returns the wait before
// sending it.
func (l *limiter) take(n int, size int, now time.Time) time.Duration {
	return max(l.samples.take(float64(n), now), l.bytes.take(float64(size), now))
}
