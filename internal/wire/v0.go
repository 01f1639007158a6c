// Package wire holds the hare datagram formats and nothing else: the legacy
// v0 JSON that the C hare sends (reproduced byte for byte), the signed v1
// envelope that wraps it, and the key files that hare and the edge share.
//
// Everything here is a pure function over bytes, except the key-file loaders,
// which read one file. The package imports the standard library only and
// avoids encoding/json and net, because cmd/hare links it and hare's start-up
// time is part of every login. The byte layouts are specified in
// ARCHITECTURE.md ("Wire format: hare datagram v0/v1").
package wire

import (
	"strconv"
	"unicode/utf8"
)

// V0Start is the first byte of every v0 datagram: the JSON object's "{".
const V0Start = '{'

// Event names carried in the optional "event" key of a v0 payload.
const (
	// EventOpen is a session open. Open events carry no "event" key, so they
	// stay byte-identical with what the C hare sends.
	EventOpen = ""
	// EventClose is a session close (hare -close). It adds "event":"close"
	// after "tty".
	EventClose = "close"
)

// Opt is a PAM variable that may be unset. An unset variable encodes as JSON
// null; a set but empty one encodes as "".
type Opt struct {
	// Value is the variable's value; ignored when Set is false.
	Value string
	// Set says whether the variable was present in the environment.
	Set bool
}

// Some returns a set Opt holding s.
func Some(s string) Opt { return Opt{Value: s, Set: true} }

// Login is one hare event: what the C hare puts into its datagram.
type Login struct {
	// Tst is the event time in integer unix seconds ("tst").
	Tst int64
	// Hostname is the sender's gethostname(3) result ("hostname"); the C hare
	// sends "?" when that call fails.
	Hostname string
	// User is PAM_USER ("user").
	User Opt
	// Service is PAM_SERVICE ("service").
	Service Opt
	// RHost is PAM_RHOST ("rhost").
	RHost Opt
	// TTY is PAM_TTY ("tty").
	TTY Opt
	// Event is EventOpen (no "event" key) or another name, e.g. EventClose,
	// which is appended as the last key.
	Event string
}

// AppendV0 appends the v0 JSON of l to dst and returns the extended slice:
// compact, no trailing newline, keys in the C hare's order
// tst, hostname, user, service, rhost, tty (then event, if l.Event is set).
func AppendV0(dst []byte, l Login) []byte {
	dst = append(dst, `{"tst":`...)
	dst = strconv.AppendInt(dst, l.Tst, 10)
	dst = append(dst, `,"hostname":`...)
	dst = AppendString(dst, l.Hostname)
	dst = append(dst, `,"user":`...)
	dst = appendOpt(dst, l.User)
	dst = append(dst, `,"service":`...)
	dst = appendOpt(dst, l.Service)
	dst = append(dst, `,"rhost":`...)
	dst = appendOpt(dst, l.RHost)
	dst = append(dst, `,"tty":`...)
	dst = appendOpt(dst, l.TTY)
	if l.Event != EventOpen {
		dst = append(dst, `,"event":`...)
		dst = AppendString(dst, l.Event)
	}
	return append(dst, '}')
}

func appendOpt(dst []byte, o Opt) []byte {
	if !o.Set {
		return append(dst, "null"...)
	}
	return AppendString(dst, o.Value)
}

// upperHex matches the C hare's JSON library, which writes \u escapes with
// upper-case hex digits.
const upperHex = "0123456789ABCDEF"

// AppendString appends s as a JSON string the way the C hare's JSON library
// (ccan/json, json_stringify) writes it:
//
//   - `"` and `\` are escaped as \" and \\;
//   - \b, \f, \n, \r and \t use their short escapes;
//   - every other byte below 0x20 becomes \u00XX with upper-case hex;
//   - everything else, including "/", DEL, "<", ">", "&", U+2028 and any valid
//     multi-byte UTF-8, is copied through unchanged;
//   - each byte that does not start a valid UTF-8 sequence becomes U+FFFD,
//     which is what ccan/json does when built with NDEBUG (a build with
//     assertions aborts instead, and sends nothing).
//
// One deliberate difference: ccan/json leaves 0x1F unescaped (its test is
// c < 0x1F), which makes its output invalid JSON that hared's json.loads
// rejects. AppendString escapes it as \u001F, so its output is always valid.
// A NUL byte (impossible in an environment variable) becomes \u0000.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', upperHex[c>>4], upperHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
