package wire

import (
	"bytes"
	"testing"
)

// FuzzEnvelope feeds arbitrary bytes to Open (it must never panic, and must
// accept only what Seal could have produced under the known key) and checks
// that Seal→Open round-trips arbitrary fields.
func FuzzEnvelope(f *testing.F) {
	f.Add(mustSeal(f, "web1", testKey, 1795384588123, testNonce, testPay), "web1", uint64(1795384588123), []byte("{}"))
	f.Add([]byte{0x01}, "k", uint64(0), []byte("x"))
	f.Add(testPay, "a.b-c_D", ^uint64(0), testPay)
	f.Add([]byte{}, "", uint64(1), []byte{})
	ring := NewKeyring([]Key{{ID: "web1", Secret: testKey}})
	f.Fuzz(func(t *testing.T, datagram []byte, id string, ts uint64, payload []byte) {
		// 1. Arbitrary input: no panic, a known reason, and a success only
		// for a datagram whose re-seal reproduces it exactly.
		e, err := Open(datagram, ring.Lookup)
		if err != nil {
			if r := Reason(err); r == "" || r == "other" {
				t.Fatalf("Open returned unclassified error %v", err)
			}
		} else {
			again, serr := Seal(e.KeyID, testKey, e.TsMillis, e.Nonce, e.Payload)
			if serr != nil || !bytes.Equal(again, datagram) {
				t.Fatalf("Open accepted %x, which Seal does not reproduce (%v)", datagram, serr)
			}
		}
		if _, perr := Parse(datagram); (perr == nil) != (err == nil || err == ErrBadTag || err == ErrUnknownKey) {
			t.Fatalf("Parse (%v) disagrees with Open (%v)", perr, err)
		}

		// 2. Round trip.
		nonce := [NonceSize]byte{byte(ts), byte(len(payload)), 3}
		d, err := Seal(id, testKey, ts, nonce, payload)
		if err != nil {
			if ValidKeyID(id) && len(payload) > 0 && len(payload) <= MaxPayload {
				t.Fatalf("Seal rejected valid input: %v", err)
			}
			return
		}
		if len(d) < MinDatagram || len(d) > MaxDatagram || KindOf(d) != KindV1 {
			t.Fatalf("Seal produced %d bytes", len(d))
		}
		got, err := Open(d, func(k string) ([]byte, bool) { return testKey, k == id })
		if err != nil {
			t.Fatalf("Open(Seal(...)) = %v", err)
		}
		if got.KeyID != id || got.TsMillis != ts || got.Nonce != nonce || !bytes.Equal(got.Payload, payload) {
			t.Fatalf("round trip mismatch: %+v", got)
		}
		// Any single flipped bit must be rejected.
		i := int(ts % uint64(len(d)))
		d[i] ^= 1 << (ts % 8)
		if _, err := Open(d, func(k string) ([]byte, bool) { return testKey, k == id }); err == nil {
			t.Fatalf("Open accepted a datagram with bit %d of byte %d flipped", ts%8, i)
		}
	})
}

// FuzzV0 checks that the v0 encoder always produces valid JSON with the C
// hare's key order, whose strings decode back to the inputs (invalid UTF-8
// replaced per byte, as encoding/json does), and that AppendString matches
// the ccan/json reference wherever the two are meant to agree.
func FuzzV0(f *testing.F) {
	f.Add(int64(1795384588), "vm", "jjolie", "sshd", "198.51.100.7", "ssh", uint8(0x0f), false)
	f.Add(int64(0), "", "", "", "", "", uint8(0), true)
	f.Add(int64(-1), "\"\\/\b\f\n\r\t", "\x00\x01\x1f\x7f", "\xff\xfe\xc0\xaf", "\xed\xa0\x80", "日本🐇\u2028", uint8(0x0a), false)
	f.Fuzz(func(t *testing.T, tst int64, host, user, service, rhost, tty string, set uint8, closing bool) {
		opt := func(bit uint8, v string) Opt { return Opt{Value: v, Set: set&bit != 0} }
		l := Login{Tst: tst, Hostname: host, User: opt(1, user), Service: opt(2, service), RHost: opt(4, rhost), TTY: opt(8, tty)}
		if closing {
			l.Event = EventClose
		}
		checkV0(t, l, AppendV0(nil, l))
		for _, s := range []string{host, user, service, rhost, tty} {
			got := string(AppendString(nil, s))
			if ref, ok := ccanEmitString(s); ok && ref != got {
				t.Fatalf("AppendString(%q) = %q, ccan/json reference %q", s, got, ref)
			}
		}
	})
}
