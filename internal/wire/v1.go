package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"time"
)

// Layout of a v1 datagram (ARCHITECTURE.md, "Wire format: hare datagram v1").
const (
	// Version1 is the first byte of a v1 datagram.
	Version1 byte = 0x01
	// MaxKeyIDLen is the longest key id, in bytes.
	MaxKeyIDLen = 32
	// MaxPayload is the largest payload (the v0 JSON), in bytes.
	MaxPayload = 1200
	// KeySize is the HMAC key length Seal requires (the key file's 64 hex digits).
	KeySize = 32
	// NonceSize is the length of the sender's random nonce.
	NonceSize = 8
	// TagSize is the length of the HMAC-SHA-256 tag.
	TagSize = 32
	// Overhead is the number of bytes of a v1 datagram that are neither key id
	// nor payload: version, key-id length, timestamp, nonce, payload length, tag.
	Overhead = 1 + 1 + 8 + NonceSize + 2 + TagSize
	// MinDatagram is the length of the smallest well-formed v1 datagram.
	MinDatagram = Overhead + 1 + 1
	// MaxDatagram is the length of the largest well-formed v1 datagram.
	MaxDatagram = Overhead + MaxKeyIDLen + MaxPayload
)

// tagContext prefixes the HMAC input so that a hare key signs nothing else.
const tagContext = "warren-hare-v1\x00"

// Reasons a datagram is rejected. Open and Parse return exactly one of these
// (unwrapped), so callers can compare with == or errors.Is and count
// rejections per reason; Reason maps them to metric labels.
var (
	// ErrTruncated: shorter than its own length fields say (or empty).
	ErrTruncated = errors.New("wire: datagram truncated")
	// ErrTooLarge: longer than MaxDatagram.
	ErrTooLarge = errors.New("wire: datagram too large")
	// ErrTrailing: longer than its own length fields say.
	ErrTrailing = errors.New("wire: trailing bytes after tag")
	// ErrVersion: the first byte is not Version1.
	ErrVersion = errors.New("wire: unknown version")
	// ErrKeyID: key-id length outside 1..MaxKeyIDLen or a byte outside [A-Za-z0-9._-].
	ErrKeyID = errors.New("wire: invalid key id")
	// ErrPayloadSize: payload length outside 1..MaxPayload.
	ErrPayloadSize = errors.New("wire: invalid payload length")
	// ErrUnknownKey: the key lookup does not know the key id.
	ErrUnknownKey = errors.New("wire: unknown key id")
	// ErrBadTag: the HMAC tag does not match.
	ErrBadTag = errors.New("wire: bad tag")
	// ErrKeySize: Seal was given a key that is not KeySize bytes.
	ErrKeySize = errors.New("wire: key must be 32 bytes")
)

// Reason returns a short, stable label for a rejection error from this
// package ("truncated", "too_large", "trailing", "version", "key_id",
// "payload_size", "unknown_key", "bad_tag", "key_size"), "" for nil, and
// "other" for anything else. Use it as a metric label.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrTrailing):
		return "trailing"
	case errors.Is(err, ErrVersion):
		return "version"
	case errors.Is(err, ErrKeyID):
		return "key_id"
	case errors.Is(err, ErrPayloadSize):
		return "payload_size"
	case errors.Is(err, ErrUnknownKey):
		return "unknown_key"
	case errors.Is(err, ErrBadTag):
		return "bad_tag"
	case errors.Is(err, ErrKeySize):
		return "key_size"
	default:
		return "other"
	}
}

// Kind tells the datagram formats apart by their first byte.
type Kind int

// Datagram kinds.
const (
	KindUnknown Kind = iota // empty, or a first byte that is neither
	KindV0                  // starts with '{'
	KindV1                  // starts with Version1
)

// KindOf reports which format b claims to be, from its first byte only.
func KindOf(b []byte) Kind {
	switch {
	case len(b) == 0:
		return KindUnknown
	case b[0] == V0Start:
		return KindV0
	case b[0] == Version1:
		return KindV1
	default:
		return KindUnknown
	}
}

// ValidKeyID reports whether id is a usable key id: 1..MaxKeyIDLen bytes of
// [A-Za-z0-9._-].
func ValidKeyID(id string) bool {
	if len(id) == 0 || len(id) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !keyIDByte(id[i]) {
			return false
		}
	}
	return true
}

func keyIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// Seal builds a v1 datagram: payload (the v0 JSON) signed with key under
// keyID, stamped with tsMillis (unix milliseconds) and nonce (8 bytes the
// caller drew from crypto/rand). It fails with ErrKeyID, ErrPayloadSize or
// ErrKeySize; it never returns a datagram Open would reject for its shape.
func Seal(keyID string, key []byte, tsMillis uint64, nonce [NonceSize]byte, payload []byte) ([]byte, error) {
	if !ValidKeyID(keyID) {
		return nil, ErrKeyID
	}
	if len(payload) == 0 || len(payload) > MaxPayload {
		return nil, ErrPayloadSize
	}
	if len(key) != KeySize {
		return nil, ErrKeySize
	}
	b := make([]byte, 0, Overhead+len(keyID)+len(payload))
	b = append(b, Version1, byte(len(keyID)))
	b = append(b, keyID...)
	b = binary.BigEndian.AppendUint64(b, tsMillis)
	b = append(b, nonce[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	return appendTag(b, key, b), nil
}

// appendTag appends HMAC-SHA-256(key, tagContext ‖ signed) to dst.
func appendTag(dst, key, signed []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tagContext))
	m.Write(signed)
	return m.Sum(dst)
}

// Envelope is a parsed v1 datagram. Payload, and the bytes Verify checks,
// alias the datagram passed to Parse or Open: copy them before reusing that
// buffer.
type Envelope struct {
	// KeyID names the key the sender claims to have signed with.
	KeyID string
	// TsMillis is the sender's clock at sending, unix milliseconds. Checking
	// it against a window is the caller's job.
	TsMillis uint64
	// Nonce is the sender's random per-datagram value. Checking it against a
	// replay cache is the caller's job.
	Nonce [NonceSize]byte
	// Payload is the v0 JSON, byte for byte.
	Payload []byte

	signed []byte // bytes 0 .. 20+L+N-1
	tag    []byte // the last TagSize bytes
}

// Time returns TsMillis as a time.Time (clamped to the int64 range).
func (e *Envelope) Time() time.Time {
	ms := e.TsMillis
	if ms > math.MaxInt64 {
		ms = math.MaxInt64
	}
	return time.UnixMilli(int64(ms))
}

// NonceHex returns the nonce as 16 lower-case hex digits.
func (e *Envelope) NonceHex() string { return hex.EncodeToString(e.Nonce[:]) }

// Parse checks the shape of a v1 datagram without any key: overall length,
// version, key-id length, payload length, exact total length, key-id
// characters, in that order. It returns the first failing reason as one of
// ErrTruncated, ErrTooLarge, ErrVersion, ErrKeyID, ErrPayloadSize or
// ErrTrailing. A nil error means only that the datagram is well formed: call
// Verify (or use Open) before trusting any field.
func Parse(b []byte) (Envelope, error) {
	var e Envelope
	switch {
	case len(b) == 0:
		return e, ErrTruncated
	case len(b) > MaxDatagram:
		return e, ErrTooLarge
	case b[0] != Version1:
		return e, ErrVersion
	case len(b) < 2:
		return e, ErrTruncated
	}
	l := int(b[1])
	if l == 0 || l > MaxKeyIDLen {
		return e, ErrKeyID
	}
	if len(b) < 20+l {
		return e, ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(b[18+l:]))
	if n == 0 || n > MaxPayload {
		return e, ErrPayloadSize
	}
	total := Overhead + l + n
	if len(b) < total {
		return e, ErrTruncated
	}
	if len(b) > total {
		return e, ErrTrailing
	}
	id := b[2 : 2+l]
	for _, c := range id {
		if !keyIDByte(c) {
			return e, ErrKeyID
		}
	}
	e.KeyID = string(id)
	e.TsMillis = binary.BigEndian.Uint64(b[2+l:])
	copy(e.Nonce[:], b[10+l:18+l])
	e.Payload = b[20+l : 20+l+n : 20+l+n]
	e.signed = b[0 : 20+l+n : 20+l+n]
	e.tag = b[20+l+n:]
	return e, nil
}

// Verify checks the envelope's tag against key in constant time and returns
// nil or ErrBadTag. An Envelope that did not come from a successful Parse
// never verifies.
func (e *Envelope) Verify(key []byte) error {
	if len(e.tag) != TagSize || len(e.signed) == 0 {
		return ErrBadTag
	}
	var buf [TagSize]byte
	want := appendTag(buf[:0], key, e.signed)
	if !hmac.Equal(want, e.tag) {
		return ErrBadTag
	}
	return nil
}

// KeyLookup returns the key for a key id, and whether there is one.
// Keyring.Lookup is one.
type KeyLookup func(keyID string) (key []byte, ok bool)

// Open parses b (see Parse), looks its key id up and verifies the tag. On
// ErrUnknownKey and ErrBadTag the returned Envelope still holds the parsed
// (untrusted) fields, so the caller can log which key id was claimed.
// Timestamp window and replay checks are left to the caller.
func Open(b []byte, lookup KeyLookup) (Envelope, error) {
	e, err := Parse(b)
	if err != nil {
		return e, err
	}
	key, ok := lookup(e.KeyID)
	if !ok {
		return e, ErrUnknownKey
	}
	if err := e.Verify(key); err != nil {
		return e, err
	}
	return e, nil
}
