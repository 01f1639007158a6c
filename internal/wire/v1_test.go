package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	testKey   = bytes.Repeat([]byte{0x42}, KeySize)
	otherKey  = bytes.Repeat([]byte{0x43}, KeySize)
	testNonce = [NonceSize]byte{1, 2, 3, 4, 5, 6, 7, 8}
	testPay   = []byte(`{"tst":1795384588,"hostname":"vm","user":"jjolie","service":"sshd","rhost":"198.51.100.7","tty":"ssh"}`)
)

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func mustSeal(t testing.TB, id string, key []byte, ts uint64, nonce [NonceSize]byte, payload []byte) []byte {
	t.Helper()
	b, err := Seal(id, key, ts, nonce, payload)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return b
}

// TestSealLayout checks Seal's bytes against the table in ARCHITECTURE.md,
// computing the tag independently.
func TestSealLayout(t *testing.T) {
	const id = "web-1.example_x"
	const ts = 1795384588123
	b := mustSeal(t, id, testKey, ts, testNonce, testPay)
	L, N := len(id), len(testPay)
	if len(b) != 52+L+N {
		t.Fatalf("len = %d, want %d", len(b), 52+L+N)
	}
	want := []byte{0x01, byte(L)}
	want = append(want, id...)
	want = append(want, 0, 0, 0x01, 0xa2, 0x05, 0x42, 0xb7, 0x5b) // 1795384588123 big-endian
	if got := binary.BigEndian.Uint64(want[2+L:]); got != ts {
		t.Fatalf("test table wrong: %d", got)
	}
	want = append(want, testNonce[:]...)
	want = append(want, byte(N>>8), byte(N))
	want = append(want, testPay...)
	if !bytes.Equal(b[:20+L+N], want) {
		t.Fatalf("header/payload mismatch:\n got %x\nwant %x", b[:20+L+N], want)
	}
	tag := hmacSHA256(testKey, append([]byte("warren-hare-v1\x00"), want...))
	if !bytes.Equal(b[20+L+N:], tag) {
		t.Fatalf("tag mismatch")
	}
}

// TestSealKnownAnswer pins one datagram so that the format cannot drift
// without this test noticing (an edge in the field verifies these bytes).
func TestSealKnownAnswer(t *testing.T) {
	b := mustSeal(t, "k1", testKey, 1, [NonceSize]byte{}, []byte("{}"))
	const want = "01026b310000000000000001000000000000000000027b7d" // header + payload
	if got := hex.EncodeToString(b[:len(b)-TagSize]); got != want {
		t.Fatalf("header = %s, want %s", got, want)
	}
	// Computed with Python's hmac module, not with this package.
	const wantTag = "31f0bfc35599f670c36f98ac460c769b774ddc469d804b46b7242439fd2feeef"
	if got := hex.EncodeToString(b[len(b)-TagSize:]); got != wantTag {
		t.Fatalf("tag = %s, want %s", got, wantTag)
	}
}

func TestSealErrors(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		key     []byte
		payload []byte
		want    error
	}{
		{"empty key id", "", testKey, testPay, ErrKeyID},
		{"key id too long", strings.Repeat("a", 33), testKey, testPay, ErrKeyID},
		{"key id bad char", "a b", testKey, testPay, ErrKeyID},
		{"key id slash", "a/b", testKey, testPay, ErrKeyID},
		{"empty payload", "k", testKey, nil, ErrPayloadSize},
		{"payload too large", "k", testKey, make([]byte, MaxPayload+1), ErrPayloadSize},
		{"short key", "k", testKey[:31], testPay, ErrKeySize},
		{"long key", "k", append(testKey, 0), testPay, ErrKeySize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Seal(tt.id, tt.key, 1, testNonce, tt.payload)
			if err != tt.want {
				t.Fatalf("Seal error = %v, want %v", err, tt.want)
			}
		})
	}
	// Bounds that must work.
	mustSeal(t, strings.Repeat("Z", 32), testKey, 0, testNonce, make([]byte, MaxPayload))
	mustSeal(t, "a", testKey, ^uint64(0), testNonce, []byte("x"))
}

func TestOpenRoundTrip(t *testing.T) {
	ring := NewKeyring([]Key{{ID: "web1", Secret: testKey}, {ID: "db.2", Secret: otherKey}})
	for _, id := range []string{"web1", "db.2"} {
		key, _ := ring.Lookup(id)
		b := mustSeal(t, id, key, 1795384588123, testNonce, testPay)
		e, err := Open(b, ring.Lookup)
		if err != nil {
			t.Fatalf("Open(%s): %v", id, err)
		}
		want := Envelope{KeyID: id, TsMillis: 1795384588123, Nonce: testNonce, Payload: testPay}
		if diff := cmp.Diff(want, e, cmpopts.IgnoreUnexported(Envelope{})); diff != "" {
			t.Fatalf("Open mismatch (-want +got):\n%s", diff)
		}
		if got := e.Time(); !got.Equal(time.UnixMilli(1795384588123)) {
			t.Errorf("Time() = %v", got)
		}
		if got := e.NonceHex(); got != "0102030405060708" {
			t.Errorf("NonceHex() = %q", got)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	ring := NewKeyring([]Key{{ID: "web1", Secret: testKey}})
	good := mustSeal(t, "web1", testKey, 1795384588123, testNonce, testPay)
	L, N := 4, len(testPay)

	mod := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good))
	}
	// setN rewrites the payload length field, leaving the bytes alone.
	setN := func(n int) []byte {
		return mod(func(b []byte) []byte { binary.BigEndian.PutUint16(b[18+L:], uint16(n)); return b })
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version only", []byte{0x01}, ErrTruncated},
		{"v0 json", testPay, ErrVersion},
		{"version 2", mod(func(b []byte) []byte { b[0] = 2; return b }), ErrVersion},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b }), ErrVersion},
		{"too large", append(bytes.Clone(good), make([]byte, MaxDatagram)...), ErrTooLarge},
		{"key id length 0", mod(func(b []byte) []byte { b[1] = 0; return b }), ErrKeyID},
		{"key id length 33", mod(func(b []byte) []byte { b[1] = 33; return b }), ErrKeyID},
		{"key id length 255", mod(func(b []byte) []byte { b[1] = 255; return b }), ErrKeyID},
		{"key id bad char", mod(func(b []byte) []byte { b[2] = ' '; return b }), ErrKeyID},
		{"key id non-ascii", mod(func(b []byte) []byte { b[3] = 0xc3; return b }), ErrKeyID},
		{"cut inside key id", good[:4], ErrTruncated},
		{"cut inside timestamp", good[:2+L+3], ErrTruncated},
		{"cut inside payload length", good[:2+L+17], ErrTruncated},
		{"cut inside payload", good[:20+L+5], ErrTruncated},
		{"cut inside tag", good[:len(good)-1], ErrTruncated},
		{"payload length 0", setN(0), ErrPayloadSize},
		{"payload length 1201", setN(MaxPayload + 1), ErrPayloadSize},
		{"payload length 65535", setN(65535), ErrPayloadSize},
		{"payload length says more than sent", setN(N + 1), ErrTruncated},
		{"payload length says less than sent", setN(N - 1), ErrTrailing},
		{"trailing byte", append(bytes.Clone(good), 0), ErrTrailing},
		{"unknown key", mustSeal(t, "web2", testKey, 1, testNonce, testPay), ErrUnknownKey},
		{"wrong key", mustSeal(t, "web1", otherKey, 1795384588123, testNonce, testPay), ErrBadTag},
		{"flipped tag bit", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrBadTag},
		{"flipped payload bit", mod(func(b []byte) []byte { b[20+L] ^= 0x20; return b }), ErrBadTag},
		{"changed timestamp", mod(func(b []byte) []byte { b[2+L+7]++; return b }), ErrBadTag},
		{"changed nonce", mod(func(b []byte) []byte { b[10+L] ^= 0xff; return b }), ErrBadTag},
		{"changed key id to another valid one", mod(func(b []byte) []byte { b[2] = 'W'; return b }), ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.in, ring.Lookup)
			if err != tt.want {
				t.Fatalf("Open error = %v, want %v", err, tt.want)
			}
			if r := Reason(err); r == "" || r == "other" {
				t.Fatalf("Reason(%v) = %q", err, r)
			}
		})
	}
}

func TestOpenKeepsClaimedFieldsOnKeyErrors(t *testing.T) {
	b := mustSeal(t, "ghost", testKey, 7, testNonce, testPay)
	e, err := Open(b, NewKeyring(nil).Lookup)
	if err != ErrUnknownKey || e.KeyID != "ghost" || e.TsMillis != 7 {
		t.Fatalf("Open = %+v, %v", e, err)
	}
	e, err = Open(b, func(string) ([]byte, bool) { return otherKey, true })
	if err != ErrBadTag || e.KeyID != "ghost" || !bytes.Equal(e.Payload, testPay) {
		t.Fatalf("Open = %+v, %v", e, err)
	}
}

func TestVerifyZeroEnvelope(t *testing.T) {
	var e Envelope
	if err := e.Verify(testKey); err != ErrBadTag {
		t.Fatalf("zero Envelope verified: %v", err)
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		in   []byte
		want Kind
	}{
		{nil, KindUnknown},
		{[]byte("{}"), KindV0},
		{[]byte{1}, KindV1},
		{[]byte{2}, KindUnknown},
		{[]byte(" {"), KindUnknown},
	}
	for _, tt := range tests {
		if got := KindOf(tt.in); got != tt.want {
			t.Errorf("KindOf(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestReason(t *testing.T) {
	if Reason(nil) != "" {
		t.Error("Reason(nil) not empty")
	}
	if Reason(errors.New("x")) != "other" {
		t.Error("unknown error not other")
	}
	seen := map[string]bool{}
	for _, err := range []error{ErrTruncated, ErrTooLarge, ErrTrailing, ErrVersion, ErrKeyID, ErrPayloadSize, ErrUnknownKey, ErrBadTag, ErrKeySize} {
		r := Reason(err)
		if r == "" || r == "other" || seen[r] {
			t.Errorf("Reason(%v) = %q (duplicate or generic)", err, r)
		}
		seen[r] = true
		if got := Reason(errors.Join(errors.New("ctx"), err)); got != r {
			t.Errorf("wrapped %v: %q, want %q", err, got, r)
		}
	}
}

func TestTimeClamp(t *testing.T) {
	e := Envelope{TsMillis: ^uint64(0)}
	if e.Time().UnixMilli() != 1<<63-1 {
		t.Fatalf("Time() = %v", e.Time())
	}
}

func TestValidKeyID(t *testing.T) {
	for id, want := range map[string]bool{
		"": false, "a": true, "A-Z_0.9": true, strings.Repeat("x", 32): true,
		strings.Repeat("x", 33): false, "a b": false, "a:b": false, "ä": false, "a\x00": false,
	} {
		if got := ValidKeyID(id); got != want {
			t.Errorf("ValidKeyID(%q) = %v, want %v", id, got, want)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	ring := NewKeyring([]Key{{ID: "web1", Secret: testKey}})
	d := mustSeal(b, "web1", testKey, 1795384588123, testNonce, testPay)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(d, ring.Lookup); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal("web1", testKey, 1795384588123, testNonce, testPay); err != nil {
			b.Fatal(err)
		}
	}
}
