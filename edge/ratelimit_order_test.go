package edge

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/wire"
)

// TestRateLimitBeforeSizeAndCrypto: a source over its rate is refused as
// rate_limited before anything else is looked at — an oversized datagram,
// a forged v1 (no key lookup, no HMAC) or an unsigned one from a source
// outside allow_unsigned all count as rate_limited, and the key lookup is
// not called for them (issue 3: "per-source rate limit before crypto").
func TestRateLimitBeforeSizeAndCrypto(t *testing.T) {
	var lookups atomic.Int64
	ring := wire.NewKeyring([]wire.Key{{ID: "host1", Secret: testKey}})
	c := &datagramCore{
		maxSize: DefaultMaxSize,
		allow:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		keys: func(id string) ([]byte, bool) {
			lookups.Add(1)
			return ring.Lookup(id)
		},
		window:  30 * time.Second,
		limiter: newLimiter(RateLimitConfig{Rate: 1, Burst: 2, MaxSources: 16}),
		replay:  newReplayCache(30*time.Second, 1024),
	}
	now := time.Unix(1795384600, 0)
	src := netip.MustParseAddr("192.0.2.7")
	forged := func() []byte {
		return seal(t, "host1", bytes.Repeat([]byte{9}, wire.KeySize), now, randNonce(), v0(1, "forged"))
	}
	// The burst's two tokens: decoded normally.
	if _, r := c.decode(forged(), src, now); r != ReasonBadTag {
		t.Fatalf("first forged datagram: %q, want bad_tag", r)
	}
	if _, r := c.decode(v0(1, "u"), src, now); r != ReasonUnsigned {
		t.Fatalf("v0 from outside allow_unsigned: %q, want unsigned_refused", r)
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("%d key lookups for one v1 datagram", n)
	}
	// Out of tokens: everything is rate_limited, nothing reaches the key.
	for name, b := range map[string][]byte{
		"forged v1": forged(),
		"oversized": bytes.Repeat([]byte("{"), DefaultMaxSize+1),
		"empty":     {},
		"garbage":   []byte("garbage"),
		"v0":        v0(1, "u"),
	} {
		if _, r := c.decode(b, src, now); r != ReasonRateLimited {
			t.Errorf("%s over the rate: %q, want rate_limited", name, r)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Errorf("key looked up %d times; rate-limited datagrams must not reach the key", n)
	}
	// Another source is not affected, and a refill lets src through again.
	if _, r := c.decode(forged(), netip.MustParseAddr("192.0.2.8"), now); r != ReasonBadTag {
		t.Errorf("other source: %q, want bad_tag", r)
	}
	if _, r := c.decode(forged(), src, now.Add(1100*time.Millisecond)); r != ReasonBadTag {
		t.Errorf("after a refill: %q, want bad_tag", r)
	}
}

// TestFloodAndOverloadVisible: the two load-shedding reasons that the
// bad-input corpus cannot produce one datagram at a time (rate_limited
// from a flood, overload from a full ingest queue) are counted and show in
// /status, in /metrics and in `edge status`-shaped Status, like every
// corpus reason.
func TestFloodAndOverloadVisible(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.UDP.RateLimit = RateLimitConfig{Rate: 1, Burst: 5, MaxSources: 16}
	cfg.Ingest.QueueSize = 1
	cfg.Ingest.BatchSize = 1
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	e, _ := startEdgeWith(t, cfg, func(e *Edge) {
		e.publishHook = func() {
			if calls.Add(1) == 1 {
				entered <- struct{}{}
				<-release
			}
		}
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	// Overload: the publisher holds event 1, the queue (1) takes event 2,
	// the next datagrams of a calm source find it full.
	calm := sender(t, "127.0.0.3")
	send(t, calm, e.UDPAddr(), v0(1, "held"))
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("publisher never took the first event")
	}
	for i := range 3 {
		send(t, calm, e.UDPAddr(), v0(int64(i+2), "calm"))
	}
	waitFor(t, "2 overload", 5*time.Second, func() bool { return e.Status().Rejected[ReasonOverload] == 2 })

	// Flood: 40 datagrams from one source, burst 5 at 1/s.
	flooder := sender(t, "127.0.0.2")
	const flood = 40
	for i := range flood {
		send(t, flooder, e.UDPAddr(), []byte(fmt.Sprintf("flood-%d", i)))
	}
	waitFor(t, "the flood counted", 10*time.Second, func() bool {
		st := e.Status()
		return st.Rejected[ReasonRateLimited]+st.Rejected[ReasonUnknownFormat] >= flood
	})
	close(release)
	released = true
	waitFor(t, "the held and the queued event stored", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 2 })

	st := e.Status()
	limited := st.Rejected[ReasonRateLimited]
	if limited < flood-6 || st.Rejected[ReasonUnknownFormat]+limited != flood {
		t.Errorf("flood of %d: rate_limited %d, unknown_format %d", flood, limited, st.Rejected[ReasonUnknownFormat])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var fromAdmin Status
	if err := admin.Get(ctx, e.AdminAddr(), "/status", &fromAdmin); err != nil {
		t.Fatal(err)
	}
	var metrics []byte
	if err := admin.Get(ctx, e.AdminAddr(), "/metrics", &metrics); err != nil {
		t.Fatal(err)
	}
	for reason, n := range map[string]uint64{ReasonOverload: 2, ReasonRateLimited: limited} {
		if fromAdmin.Rejected[reason] != n {
			t.Errorf("/status rejected[%s] = %d, want %d", reason, fromAdmin.Rejected[reason], n)
		}
		line := fmt.Sprintf("warren_edge_events_rejected_total{reason=%q} %d\n", reason, n)
		if !bytes.Contains(metrics, []byte(line)) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if !bytes.Contains(metrics, []byte("warren_edge_ingest_queue_capacity 1\n")) {
		t.Error("/metrics lacks the queue capacity")
	}
}
