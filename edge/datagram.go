package edge

import (
	"errors"
	"net/netip"
	"time"

	"github.com/warren-mesh/warren/internal/wire"
)

// Rejection reasons: the label values of warren_edge_events_rejected_total
// and the keys of Status.Rejected. ARCHITECTURE.md ("Edge") explains each.
const (
	ReasonEmpty         = "empty"            // zero-length datagram
	ReasonTooLarge      = "too_large"        // longer than udp.max_size (or a v1 datagram longer than the format allows)
	ReasonUnknownFormat = "unknown_format"   // first byte neither '{' (v0) nor 0x01 (v1)
	ReasonRateLimited   = "rate_limited"     // the source's token bucket is empty
	ReasonUnsigned      = "unsigned_refused" // v0 from a source outside udp.allow_unsigned, or udp.require_signed
	ReasonBadUTF8       = "bad_utf8"         // payload not valid UTF-8
	ReasonBadJSON       = "bad_json"         // payload not one valid JSON value
	ReasonNotObject     = "not_object"       // payload valid JSON but not an object
	ReasonBadField      = "bad_field"        // hostname/user/service/rhost/tty neither string nor null
	ReasonDuplicateKey  = "duplicate_key"    // a key appears twice in the payload
	ReasonTruncated     = "truncated"        // v1 shorter than its length fields say
	ReasonTrailing      = "trailing"         // v1 longer than its length fields say
	ReasonKeyID         = "key_id"           // v1 key id empty, too long or with bad characters
	ReasonPayloadSize   = "payload_size"     // v1 payload length 0 or above 1200
	ReasonUnknownKey    = "unknown_key"      // v1 key id not in udp.keys_file
	ReasonBadTag        = "bad_tag"          // v1 HMAC does not verify
	ReasonStale         = "stale"            // v1 timestamp older than now − udp.ts_window
	ReasonFuture        = "future"           // v1 timestamp newer than now + udp.ts_window
	ReasonReplay        = "replay"           // v1 (key id, nonce) seen before
	ReasonOverload      = "overload"         // the ingest queue was full (UDP has no back-pressure)
	ReasonMQTTDropped   = "mqtt_dropped"     // MQTT messages the ingest subscriber had to drop (slow consumer)
	ReasonStoreFull     = "store_full"       // the edge stream is at store.max_bytes/max_msgs or the disk is full
	ReasonStoreError    = "store_error"      // JetStream refused or did not acknowledge in time
	ReasonOther         = "other"            // anything not listed (should stay 0)
)

// Reasons lists every rejection reason, in a stable order.
func Reasons() []string {
	return []string{
		ReasonEmpty, ReasonTooLarge, ReasonUnknownFormat, ReasonRateLimited, ReasonUnsigned,
		ReasonBadUTF8, ReasonBadJSON, ReasonNotObject, ReasonBadField, ReasonDuplicateKey,
		ReasonTruncated, ReasonTrailing, ReasonKeyID, ReasonPayloadSize, ReasonUnknownKey,
		ReasonBadTag, ReasonStale, ReasonFuture, ReasonReplay, ReasonOverload, ReasonMQTTDropped,
		ReasonStoreFull, ReasonStoreError, ReasonOther,
	}
}

// reasonOf maps a Shape or wire error to its reason label.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrBadUTF8):
		return ReasonBadUTF8
	case errors.Is(err, ErrBadJSON):
		return ReasonBadJSON
	case errors.Is(err, ErrNotObject):
		return ReasonNotObject
	case errors.Is(err, ErrBadField):
		return ReasonBadField
	case errors.Is(err, ErrDuplicateKey):
		return ReasonDuplicateKey
	}
	switch r := wire.Reason(err); r {
	case "truncated", "too_large", "trailing", "key_id", "payload_size", "unknown_key", "bad_tag":
		return r
	case "version":
		return ReasonUnknownFormat
	}
	return ReasonOther
}

// decoded is an accepted datagram, ready to be stored.
type decoded struct {
	payload  []byte // hared's shape
	signed   bool
	keyID    string
	nonce    [wire.NonceSize]byte
	tsMillis int64
	tstFixed bool
}

// datagramCore is the pure part of UDP ingest: every check a datagram goes
// through, in order, with no I/O. The read loop owns it (not safe for
// concurrent use); time is passed in.
type datagramCore struct {
	maxSize       int
	allow         []netip.Prefix
	requireSigned bool
	keys          wire.KeyLookup // nil: no key known
	window        time.Duration
	limiter       *limiter
	replay        *replayCache
}

// decode checks one datagram from src received at now. It returns the
// event or a reason label (never both).
func (c *datagramCore) decode(b []byte, src netip.Addr, now time.Time) (decoded, string) {
	var d decoded
	if !c.limiter.allow(src, now) {
		return d, ReasonRateLimited
	}
	switch {
	case len(b) == 0:
		return d, ReasonEmpty
	case len(b) > c.maxSize:
		return d, ReasonTooLarge
	}
	switch wire.KindOf(b) {
	case wire.KindV0:
		if c.requireSigned || !c.allowed(src) {
			return d, ReasonUnsigned
		}
		out, fixed, err := Shape(b, src, now)
		if err != nil {
			return d, reasonOf(err)
		}
		d.payload, d.tstFixed = out, fixed
		return d, ""
	case wire.KindV1:
		return c.decodeV1(b, src, now)
	default:
		return d, ReasonUnknownFormat
	}
}

func (c *datagramCore) decodeV1(b []byte, src netip.Addr, now time.Time) (decoded, string) {
	var d decoded
	lookup := c.keys
	if lookup == nil {
		lookup = func(string) ([]byte, bool) { return nil, false }
	}
	env, err := wire.Open(b, lookup)
	if err != nil {
		return d, reasonOf(err)
	}
	ts := env.Time()
	switch {
	case ts.Before(now.Add(-c.window)):
		return d, ReasonStale
	case ts.After(now.Add(c.window)):
		return d, ReasonFuture
	}
	nowMs := now.UnixMilli()
	k := replayKey{kid: env.KeyID, nonce: env.Nonce}
	c.replay.expire(nowMs)
	if c.replay.seen(k, ts.UnixMilli()) {
		return d, ReasonReplay
	}
	out, fixed, err := Shape(env.Payload, src, now)
	if err != nil {
		return d, reasonOf(err)
	}
	c.replay.add(k, ts.UnixMilli())
	d.payload, d.tstFixed = out, fixed
	d.signed, d.keyID, d.nonce, d.tsMillis = true, env.KeyID, env.Nonce, ts.UnixMilli()
	return d, ""
}

func (c *datagramCore) allowed(src netip.Addr) bool {
	src = src.Unmap()
	for _, p := range c.allow {
		if p.Contains(src) {
			return true
		}
	}
	return false
}
