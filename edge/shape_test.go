package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	testNow    = time.Unix(1795384600, 0)
	testRemote = netip.MustParseAddr("192.0.2.9")
)

func TestShape(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  string
		fixed bool
		err   error
	}{
		{"c hare", `{"tst":1795384588,"hostname":"vm","user":"jjolie","service":"sshd","rhost":"198.51.100.7","tty":"ssh"}`,
			`{"hostname":"vm","remote":"192.0.2.9","rhost":"198.51.100.7","service":"sshd","tst":1795384588,"tty":"ssh","user":"jjolie"}`, false, nil},
		{"nulls kept", `{"tst":1,"hostname":"vm","user":null,"service":null,"rhost":null,"tty":null}`,
			`{"hostname":"vm","remote":"192.0.2.9","rhost":null,"service":null,"tst":1,"tty":null,"user":null}`, false, nil},
		{"missing tst (hared crashed)", `{"hostname":"vm","user":"u"}`,
			`{"hostname":"vm","remote":"192.0.2.9","tst":1795384600,"user":"u"}`, true, nil},
		{"tst float truncated", `{"tst":1795384588.9}`, `{"remote":"192.0.2.9","tst":1795384588}`, false, nil},
		{"tst exponent", `{"tst":1.7e9}`, `{"remote":"192.0.2.9","tst":1700000000}`, false, nil},
		{"tst numeric string", `{"tst":"1795384588"}`, `{"remote":"192.0.2.9","tst":1795384588}`, false, nil},
		{"tst padded float string", `{"tst":" 12.5 "}`, `{"remote":"192.0.2.9","tst":12}`, false, nil},
		{"tst negative", `{"tst":-5}`, `{"remote":"192.0.2.9","tst":-5}`, false, nil},
		{"tst word", `{"tst":"yesterday"}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst hex string", `{"tst":"0x10"}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst NaN string", `{"tst":"NaN"}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst huge", `{"tst":1e400}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst beyond int64", `{"tst":9223372036854775808}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst null", `{"tst":null}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst bool", `{"tst":true}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"tst object", `{"tst":{"a":1}}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"remote replaced", `{"remote":"203.0.113.1","tst":1}`, `{"remote":"192.0.2.9","tst":1}`, false, nil},
		{"extra keys kept and compacted", "{ \"tst\" : 1 , \"event\" : \"close\", \"x\": [1, {\"b\": 2}] }",
			`{"event":"close","remote":"192.0.2.9","tst":1,"x":[1,{"b":2}]}`, false, nil},
		{"escapes kept as sent", `{"tst":1,"user":"a\"b\\c\u00e9\n","hostname":"\/x"}`,
			`{"hostname":"\/x","remote":"192.0.2.9","tst":1,"user":"a\"b\\c\u00e9\n"}`, false, nil},
		{"escaped key", `{"tst":1,"us\u0065r":"x"}`, `{"remote":"192.0.2.9","tst":1,"user":"x"}`, false, nil},
		{"raw utf-8", `{"tst":1,"user":"jöl"}`, `{"remote":"192.0.2.9","tst":1,"user":"jöl"}`, false, nil},
		{"empty object", `{}`, `{"remote":"192.0.2.9","tst":1795384600}`, true, nil},
		{"non-utf8", "{\"tst\":1,\"user\":\"\xff\"}", "", false, ErrBadUTF8},
		{"truncated", `{"tst":1,"user":"x"`, "", false, ErrBadJSON},
		{"trailing", `{"tst":1} x`, "", false, ErrBadJSON},
		{"two objects", `{"tst":1}{"tst":2}`, "", false, ErrBadJSON},
		{"bom", "\xef\xbb\xbf{\"tst\":1}", "", false, ErrBadJSON},
		{"array", `[{"tst":1}]`, "", false, ErrNotObject},
		{"string", `"hello"`, "", false, ErrNotObject},
		{"number", `42`, "", false, ErrNotObject},
		{"hostname number", `{"tst":1,"hostname":5}`, "", false, ErrBadField},
		{"user object", `{"tst":1,"user":{}}`, "", false, ErrBadField},
		{"tty array", `{"tst":1,"tty":["x"]}`, "", false, ErrBadField},
		{"rhost bool", `{"tst":1,"rhost":false}`, "", false, ErrBadField},
		{"duplicate user", `{"tst":1,"user":"root","user":"x"}`, "", false, ErrDuplicateKey},
		{"duplicate tst", `{"tst":1,"tst":2}`, "", false, ErrDuplicateKey},
		{"duplicate via escape", `{"tst":1,"user":"a","\u0075ser":"b"}`, "", false, ErrDuplicateKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fixed, err := Shape([]byte(tt.in), testRemote, testNow)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if fixed != tt.fixed {
				t.Errorf("fixed = %v, want %v", fixed, tt.fixed)
			}
			if err == nil {
				checkHaredShape(t, got, testRemote.String())
			}
		})
	}
}

func TestShapeIPv6AndMapped(t *testing.T) {
	for in, want := range map[string]string{"::ffff:10.1.2.3": "10.1.2.3", "2001:db8::1": "2001:db8::1"} {
		got, _, err := Shape([]byte(`{"tst":1}`), netip.MustParseAddr(in), testNow)
		if err != nil {
			t.Fatal(err)
		}
		checkHaredShape(t, got, want)
	}
}

// checkHaredShape asserts hared's published shape: a JSON object with keys
// in sorted order, "remote" the sender's IP and "tst" an integer.
func checkHaredShape(t testing.TB, b []byte, remote string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	if got, _ := m["remote"].(string); got != remote {
		t.Errorf("remote = %v, want %s in %s", m["remote"], remote, b)
	}
	n, ok := m["tst"].(json.Number)
	if !ok || strings.ContainsAny(n.String(), ".eE") {
		t.Errorf("tst = %v, want an integer in %s", m["tst"], b)
	}
	keys := topKeys(t, b)
	if !slices.IsSorted(keys) {
		t.Errorf("keys not sorted: %v", keys)
	}
	if len(keys) != len(m) {
		t.Errorf("duplicate keys in %s", b)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, b)
	if !bytes.Equal(compact.Bytes(), b) {
		t.Errorf("not compact: %s", b)
	}
	return m
}

func topKeys(t testing.TB, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestLimiter(t *testing.T) {
	l := newLimiter(RateLimitConfig{Rate: 10, Burst: 3, MaxSources: 2})
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if !l.allow(a, t0) {
			t.Fatalf("burst token %d refused", i)
		}
	}
	if l.allow(a, t0) {
		t.Fatal("4th datagram in a burst of 3 allowed")
	}
	if !l.allow(b, t0) {
		t.Fatal("other source limited by a's flood")
	}
	if !l.allow(a, t0.Add(100*time.Millisecond)) {
		t.Fatal("no token after 100ms at 10/s")
	}
	if l.allow(a, t0.Add(100*time.Millisecond)) {
		t.Fatal("second token after 100ms at 10/s")
	}

	// Table full (a, b busy): a third source uses the shared overflow bucket.
	c := netip.MustParseAddr("192.0.2.3")
	d := netip.MustParseAddr("192.0.2.4")
	if !l.allow(c, t0) || !l.allow(d, t0) || !l.allow(c, t0) {
		t.Fatal("overflow bucket refused within its burst")
	}
	if l.allow(d, t0) {
		t.Fatal("overflow bucket exceeded its burst")
	}
	if len(l.buckets) != 2 {
		t.Fatalf("table grew to %d past max 2", len(l.buckets))
	}
	// After a while a and b are idle (refilled) and are swept for new sources.
	later := t0.Add(10 * time.Second)
	if !l.allow(c, later) {
		t.Fatal("new source refused after idle sweep")
	}
	if _, ok := l.buckets[sourceKey(c)]; !ok {
		t.Fatal("c did not get its own bucket after the sweep")
	}
}

func TestLimiterIPv6Per64(t *testing.T) {
	l := newLimiter(RateLimitConfig{Rate: 1, Burst: 1, MaxSources: 10})
	t0 := time.Unix(1000, 0)
	if !l.allow(netip.MustParseAddr("2001:db8::1"), t0) {
		t.Fatal("first refused")
	}
	if l.allow(netip.MustParseAddr("2001:db8::2"), t0) {
		t.Fatal("same /64 got a fresh bucket")
	}
	if !l.allow(netip.MustParseAddr("2001:db8:0:1::1"), t0) {
		t.Fatal("other /64 limited")
	}
	if !l.allow(netip.MustParseAddr("::ffff:192.0.2.1"), t0) || l.allow(netip.MustParseAddr("192.0.2.1"), t0) {
		t.Fatal("mapped and plain IPv4 should share a bucket")
	}
}

func TestLimiterOff(t *testing.T) {
	l := newLimiter(RateLimitConfig{Rate: 0, Burst: 0, MaxSources: 1})
	for range 1000 {
		if !l.allow(netip.MustParseAddr("192.0.2.1"), time.Unix(0, 0)) {
			t.Fatal("rate 0 should not limit")
		}
	}
}

func TestReplayCache(t *testing.T) {
	w := 30 * time.Second
	r := newReplayCache(w, 3)
	ts := int64(1_000_000_000_000)
	k1 := replayKey{kid: "h", nonce: [8]byte{1}}
	k2 := replayKey{kid: "h", nonce: [8]byte{2}}
	if r.seen(k1, ts) {
		t.Fatal("seen before add")
	}
	r.add(k1, ts)
	if !r.seen(k1, ts) || r.seen(k2, ts) {
		t.Fatal("seen wrong")
	}
	if !r.seen(k1, ts) {
		t.Fatal("replay with same ts not seen")
	}
	// Still remembered while ts can pass the window check.
	r.expire(ts + w.Milliseconds())
	if !r.seen(k1, ts) {
		t.Fatal("expired while still inside the window")
	}
	// Gone once ts is older than two windows.
	r.expire(ts + 3*w.Milliseconds())
	if r.seen(k1, ts) || r.size != 0 {
		t.Fatalf("not expired: size %d", r.size)
	}
	// Bounded.
	for i := range 5 {
		r.add(replayKey{kid: "h", nonce: [8]byte{byte(i)}}, ts)
	}
	if r.size != 3 {
		t.Fatalf("size %d, want bound 3", r.size)
	}
}

func TestNonceRecordRoundTrip(t *testing.T) {
	n := [8]byte{0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3}
	b := nonceRecord("host-1.x", n, 1795384588123)
	k, ts, ok := parseNonceRecord(b)
	if !ok || k.kid != "host-1.x" || k.nonce != n || ts != 1795384588123 {
		t.Fatalf("round trip: %q -> %v %v %v", b, k, ts, ok)
	}
	for _, bad := range []string{"", "1 a", "x host deadbeef00010203", "1 host zz", "1 host dead", "1 bad/id deadbeef00010203"} {
		if _, _, ok := parseNonceRecord([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
