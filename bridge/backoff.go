package bridge

import (
	"math/rand/v2"
	"time"
)

// backoff returns the delay before retry number attempt (0 for the first
// retry): d = min·2^attempt capped at max, then a uniformly random value in
// [d/2, d] ("equal jitter"), so edges that lost the hub together do not come
// back in lockstep, and no delay is shorter than half the nominal one.
func backoff(attempt int, min, max time.Duration, rnd func(n int64) int64) time.Duration {
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	d := max
	if attempt < 62 {
		if m := min << uint(attempt); m > 0 && m < max && m>>uint(attempt) == min {
			d = m
		}
	}
	half := d / 2
	return half + time.Duration(rnd(int64(d-half)+1))
}

// jitter is the random source of backoff.
func jitter(n int64) int64 { return rand.Int64N(n) }
