package edge

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/wire"
)

// fuzzNow is the clock of FuzzDatagram; signed seeds carry this timestamp.
var fuzzNow = time.UnixMilli(1795384600000)

func fuzzCore() *datagramCore {
	ring := wire.NewKeyring([]wire.Key{{ID: "host1", Secret: testKey}})
	return &datagramCore{
		maxSize: DefaultMaxSize,
		allow:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		keys:    ring.Lookup,
		window:  30 * time.Second,
		limiter: newLimiter(RateLimitConfig{Rate: 0, MaxSources: 1}),
		replay:  newReplayCache(30*time.Second, 1<<16),
	}
}

// FuzzDatagram runs the whole UDP decode path (format dispatch, source
// check, v1 envelope, window, replay, JSON shape) on arbitrary bytes. It
// must never panic, must return an event or a known reason, an accepted
// event must be in hared's shape, and a signed datagram accepted once must
// be a replay the second time.
func FuzzDatagram(f *testing.F) {
	seeds := [][]byte{
		v0(1795384588, "jjolie"),
		[]byte(`{"hostname":"vm","user":"u"}`),
		[]byte(`{"tst":"x","user":null}`),
		[]byte(`{"tst":1e999}`),
		[]byte(`[1]`),
		{},
		{0x01},
	}
	for _, s := range seeds {
		f.Add(s, true)
	}
	signed, err := wire.Seal("host1", testKey, uint64(fuzzNow.UnixMilli()), [8]byte{1, 2, 3}, v0(1795384588, "s"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed, false)
	validReasons := Reasons()
	f.Fuzz(func(t *testing.T, b []byte, loopback bool) {
		c := fuzzCore()
		src := netip.MustParseAddr("192.0.2.1")
		if loopback {
			src = netip.MustParseAddr("127.0.0.1")
		}
		d, reason := c.decode(b, src, fuzzNow)
		if reason != "" {
			if d.payload != nil {
				t.Fatalf("reason %q with a payload", reason)
			}
			if !slices.Contains(validReasons, reason) {
				t.Fatalf("unknown reason %q", reason)
			}
			return
		}
		if !d.signed && !loopback {
			t.Fatal("unsigned datagram accepted from a source outside allow_unsigned")
		}
		checkHaredShape(t, d.payload, src.String())
		if d.signed {
			if _, again := c.decode(b, src, fuzzNow); again != ReasonReplay {
				t.Fatalf("second decode of a signed datagram: %q, want replay", again)
			}
		}
	})
}
