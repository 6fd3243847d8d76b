package sampler

import "time"

// bucket is a token bucket holding up to capacity captures and refilling capacity per period.
// It starts full. Over any interval T it lets through at most capacity·(1 + T/period), so a
// `minutely: 10` limit passes a burst of 10 and then one every 6 s. Buckets are guarded by
// the Sampler's mutex.
type bucket struct {
	capacity float64
	period   float64 // nanoseconds
	tokens   float64
	last     time.Time
}

func newBucket(value int, period time.Duration, now time.Time) bucket {
	c := float64(value)
	return bucket{capacity: c, period: float64(period), tokens: c, last: now}
}

// tokenSlack absorbs the rounding of refills summed over many calls, so that a token earned
// in three 20-second steps of a minutely bucket is as whole as one earned in a minute.
const tokenSlack = 1e-9

// refill adds the tokens earned since the last call. A clock that steps back earns nothing
// and does not move last back, so it cannot be used to mint tokens later.
func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.capacity, b.tokens+float64(d)*b.capacity/b.period)
		b.last = now
	}
}

// available reports whether one token can be taken now, without taking it.
func (b *bucket) available(now time.Time) bool {
	b.refill(now)
	return b.tokens >= 1-tokenSlack
}

// take removes one token; the caller has checked available under the same lock.
func (b *bucket) take() { b.tokens-- }

// buckets is one limits list: every bucket must have a token for a capture to pass.
type buckets []bucket

func newBuckets(limits []Limit, now time.Time) buckets {
	bs := make(buckets, 0, len(limits))
	for _, l := range limits {
		bs = append(bs, newBucket(l.Value, period(l.Type), now))
	}
	return bs
}

func (bs buckets) available(now time.Time) bool {
	ok := true
	for i := range bs {
		// Refill every bucket, not only up to the first empty one, so each stays current.
		if !bs[i].available(now) {
			ok = false
		}
	}
	return ok
}

func (bs buckets) take() {
	for i := range bs {
		bs[i].take()
	}
}

// byteBudget caps the bytes captured per UTC day. It resets at midnight UTC rather than
// refilling continuously because metered uplinks bill by the calendar day (or month), and a
// budget that an operator can check against a bill must use the same day.
type byteBudget struct {
	max  int64 // 0: no budget
	day  int64 // days since the Unix epoch (UTC) that used counts
	used int64
}

func dayOf(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s < 0 && s%86400 != 0 {
		d-- // floor, for clocks before 1970 in tests
	}
	return d
}

// fits reports whether size more bytes fit in today's budget, without spending them.
func (b *byteBudget) fits(size int64, now time.Time) bool {
	if b.max == 0 {
		return true
	}
	// Only a later day resets: a clock stepping back over midnight must not grant a new day.
	if d := dayOf(now); d > b.day {
		b.day, b.used = d, 0
	}
	return b.used+size <= b.max
}

// spend adds size bytes to today's use; the caller has checked fits under the same lock.
func (b *byteBudget) spend(size int64) { b.used += size }
