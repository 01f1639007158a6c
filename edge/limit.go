package edge

import (
	"net/netip"
	"time"

	"github.com/warren-mesh/warren/internal/wire"
)

// limiter is a per-source token bucket with a bounded table. It is not safe
// for concurrent use: the UDP read loop owns it.
//
// IPv6 sources are limited per /64, since one host usually controls a whole
// /64 and could otherwise rotate addresses to escape its bucket. When the
// table is full and idle buckets (refilled to the brim, so identical to a
// new one) cannot be swept out, sources without a bucket share one overflow
// bucket: a flood of spoofed addresses then slows only other unknown
// sources, never the ones already in the table.
type limiter struct {
	rate      float64 // tokens per second; 0 = unlimited
	burst     float64
	max       int
	buckets   map[netip.Addr]*bucket
	overflow  bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(cfg RateLimitConfig) *limiter {
	return &limiter{
		rate:     cfg.Rate,
		burst:    float64(cfg.Burst),
		max:      cfg.MaxSources,
		buckets:  make(map[netip.Addr]*bucket),
		overflow: bucket{tokens: float64(cfg.Burst)},
	}
}

// sourceKey is the address a bucket belongs to.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

// allow takes one token from src's bucket and reports whether there was one.
func (l *limiter) allow(src netip.Addr, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	k := sourceKey(src)
	b, ok := l.buckets[k]
	if !ok {
		if len(l.buckets) >= l.max {
			l.sweep(now)
		}
		if len(l.buckets) >= l.max {
			return l.take(&l.overflow, now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[k] = b
	}
	return l.take(b, now)
}

func (l *limiter) take(b *bucket, now time.Time) bool {
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// sweep drops buckets that have refilled completely; at most once a second
// so a full table of busy sources does not cost a scan per datagram.
func (l *limiter) sweep(now time.Time) {
	if !l.lastSweep.IsZero() && now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// replayKey identifies one signed datagram: its key id and nonce.
type replayKey struct {
	kid   string
	nonce [wire.NonceSize]byte
}

// replayCache remembers the (key id, nonce) of accepted signed datagrams
// until their timestamp can no longer pass the window check. Entries are
// grouped by timestamp bucket (one window wide), so expiry drops whole
// maps. It is bounded: when full, add refuses and the caller relies on the
// nonce stream's duplicate detection alone. Not safe for concurrent use.
type replayCache struct {
	window  int64 // milliseconds
	buckets map[int64]map[replayKey]struct{}
	size    int
	max     int
}

func newReplayCache(window time.Duration, max int) *replayCache {
	return &replayCache{window: window.Milliseconds(), buckets: map[int64]map[replayKey]struct{}{}, max: max}
}

func (r *replayCache) bucketOf(tsMillis int64) int64 { return tsMillis / r.window }

// seen reports whether k with timestamp ts was added before.
func (r *replayCache) seen(k replayKey, tsMillis int64) bool {
	_, ok := r.buckets[r.bucketOf(tsMillis)][k]
	return ok
}

// add records k; false when the cache is full.
func (r *replayCache) add(k replayKey, tsMillis int64) bool {
	if r.size >= r.max {
		return false
	}
	b := r.bucketOf(tsMillis)
	m := r.buckets[b]
	if m == nil {
		m = make(map[replayKey]struct{})
		r.buckets[b] = m
	}
	if _, ok := m[k]; !ok {
		m[k] = struct{}{}
		r.size++
	}
	return true
}

// expire drops buckets whose every timestamp is older than now − window:
// such datagrams fail the window check before the cache is asked.
func (r *replayCache) expire(nowMillis int64) {
	limit := r.bucketOf(nowMillis-r.window) - 1
	for b, m := range r.buckets {
		if b < limit {
			r.size -= len(m)
			delete(r.buckets, b)
		}
	}
}
