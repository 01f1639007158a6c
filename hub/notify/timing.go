package notify

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// limiter is a token bucket of count tokens refilled over interval. Tokens
// may go negative: a reservation past the bucket queues behind the others.
type limiter struct {
	mu       sync.Mutex
	count    int
	interval time.Duration
	tokens   float64
	last     time.Time
}

// newLimiter returns nil (no limit) when count is 0.
func newLimiter(count int, interval time.Duration) *limiter {
	if count <= 0 || interval <= 0 {
		return nil
	}
	return &limiter{count: count, interval: interval, tokens: float64(count)}
}

// reserve takes one token and returns how long to wait before using it.
func (l *limiter) reserve(now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := float64(l.count) / float64(l.interval)
	if !l.last.IsZero() {
		l.tokens += float64(now.Sub(l.last)) * rate
		if l.tokens > float64(l.count) {
			l.tokens = float64(l.count)
		}
	}
	l.last = now
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(math.Ceil(-l.tokens / rate))
}

// same reports whether l implements the given limit (so a reload that
// keeps it keeps the bucket).
func (l *limiter) same(count int, interval time.Duration) bool {
	if l == nil {
		return count <= 0
	}
	return l.count == count && l.interval == interval
}

// backoff is the wait after the attempt-th failed attempt (1-based):
// initial doubled per attempt, capped at max, with "equal jitter" (a
// random point in the upper half) so retries of many notifications
// spread out.
func backoff(attempt int, initial, max time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		d = max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// waitUntil sleeps until t or ctx ends, calling tick every `every` while it
// waits (the target workers use it to keep held messages in progress).
func waitUntil(ctx context.Context, t time.Time, every time.Duration, tick func()) error {
	for {
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		if every > 0 && d > every {
			d = every
		}
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		if tick != nil && time.Until(t) > 0 {
			tick()
		}
	}
}
