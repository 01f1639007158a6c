package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/warren-mesh/warren/internal/wire"
)

// Rejections of a hare JSON payload (v0 datagram or v1 payload). Each maps to
// one reason label (see reasonOf).
var (
	// ErrBadUTF8: the payload is not valid UTF-8 (the C hare never sends that).
	ErrBadUTF8 = errors.New("payload is not valid UTF-8")
	// ErrBadJSON: not one JSON value, or trailing bytes after it.
	ErrBadJSON = errors.New("payload is not valid JSON")
	// ErrNotObject: valid JSON but not an object.
	ErrNotObject = errors.New("payload is not a JSON object")
	// ErrBadField: one of hostname, user, service, rhost, tty is neither a
	// string nor null.
	ErrBadField = errors.New("a hare field is neither a string nor null")
	// ErrDuplicateKey: the object repeats a key (two readers could disagree
	// on which value counts).
	ErrDuplicateKey = errors.New("payload repeats a key")
)

// stringFields must be a JSON string or null when present: the C hare sends
// them so, and notification templates use them as text.
var stringFields = []string{"hostname", "user", "service", "rhost", "tty"}

type member struct {
	key string
	raw []byte // the value as sent (compacted on output)
}

// Shape rewrites a hare JSON payload into hared's published shape: the
// payload's keys plus "remote" (the sender's IP, replacing any "remote" the
// payload carries), "tst" an integer, keys sorted, compact. String and other
// values are kept as the sender wrote them.
//
// tst handling: an integer is kept; a float or a decimal string is truncated
// to whole seconds; anything else (missing, null, non-numeric, out of the
// int64 range) is replaced by now, and fixed reports true. The C hare always
// sends an integer, so a fixed tst marks a sender that is not the C hare; the
// login still happened, so the event is kept rather than refused.
func Shape(payload []byte, remote netip.Addr, now time.Time) (out []byte, fixed bool, err error) {
	if !utf8.Valid(payload) {
		return nil, false, ErrBadUTF8
	}
	if !json.Valid(payload) {
		return nil, false, ErrBadJSON
	}
	// payload is one valid JSON value from here on, so a structural scan
	// (no validation) finds the members.
	i := skipWS(payload, 0)
	if payload[i] != '{' {
		return nil, false, ErrNotObject
	}
	i++
	members := make([]member, 0, 8)
	var tstRaw []byte
	haveTst := false
	for {
		i = skipWS(payload, i)
		if payload[i] == '}' {
			break
		}
		if payload[i] == ',' {
			i = skipWS(payload, i+1)
		}
		kend := stringEnd(payload, i)
		key, err := keyString(payload[i:kend])
		if err != nil {
			return nil, false, ErrBadJSON
		}
		i = skipWS(payload, kend)
		i = skipWS(payload, i+1) // ':'
		vend := valueEnd(payload, i)
		raw := payload[i:vend]
		i = vend
		if key == "tst" {
			if haveTst {
				return nil, false, ErrDuplicateKey
			}
			haveTst, tstRaw = true, raw
			continue
		}
		for _, m := range members {
			if m.key == key {
				return nil, false, ErrDuplicateKey
			}
		}
		members = append(members, member{key: key, raw: raw})
	}
	for _, m := range members {
		if slices.Contains(stringFields, m.key) && m.raw[0] != '"' && string(m.raw) != "null" {
			return nil, false, ErrBadField
		}
	}

	tst, ok := parseTst(tstRaw)
	if !ok {
		tst, fixed = now.Unix(), true
	}
	members = slices.DeleteFunc(members, func(m member) bool { return m.key == "remote" })
	members = append(members,
		member{key: "remote", raw: wire.AppendString(nil, remote.Unmap().String())},
		member{key: "tst", raw: strconv.AppendInt(nil, tst, 10)},
	)
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })

	out = make([]byte, 0, len(payload)+48)
	out = append(out, '{')
	for i, m := range members {
		if i > 0 {
			out = append(out, ',')
		}
		out = wire.AppendString(out, m.key)
		out = append(out, ':')
		out = appendCompact(out, m.raw)
	}
	out = append(out, '}')
	return out, fixed, nil
}

// The scanners below assume valid JSON (checked by json.Valid first) and
// only find where things end.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the value starting at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i])) {
			i++
		}
		return i
	}
}

// keyString decodes a JSON string token; the common case has no escapes.
func keyString(tok []byte) (string, error) {
	if bytes.IndexByte(tok, '\\') < 0 {
		return string(tok[1 : len(tok)-1]), nil
	}
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err
}

// appendCompact appends a JSON value without insignificant whitespace.
func appendCompact(dst, raw []byte) []byte {
	if raw[0] != '{' && raw[0] != '[' {
		return append(dst, raw...) // scalars carry no whitespace
	}
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, raw); err != nil {
		return append(dst, raw...) // cannot happen: raw came from the decoder
	}
	return buf.Bytes()
}

// parseTst turns a tst value into integer seconds: an integer, a float
// (truncated) or a string holding a decimal number. ok is false for
// anything else, including numbers outside the int64 range.
func parseTst(raw []byte) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	s := string(raw)
	if raw[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return 0, false
		}
		s = strings.TrimSpace(str)
		if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') || !json.Valid([]byte(s)) {
			return 0, false
		}
	} else if !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, false // null, true, false, object, array
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f >= math.MaxInt64 || f <= math.MinInt64 {
		return 0, false
	}
	return int64(f), true
}
