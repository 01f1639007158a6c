package audit

import (
	"net"
	"regexp"
	"strconv"
	"strings"
)

// LogLine is a nats-server client log line split into its parts:
//
//	127.0.0.1:50844 - mid:8 - "dev1" - Publish Violation - Subject "secret.x"
//	^Remote           ^Conn:CID ^Names  ^Text
//
// Names are the quoted parts between the connection id and the text: an
// MQTT client id, or for NATS clients "v<version>:<lang>:<name>" and
// "<account>/<user>" (each only when known).
type LogLine struct {
	Remote string   // client "ip:port"
	Conn   string   // "cid" (NATS), "mid" (MQTT), "wid" (websocket), "lid" (leafnode), ...
	CID    uint64   // connection id
	Names  []string // unquoted
	Text   string   // the message
}

// reLogPrefix is the timestamp and level nats-server's own logger writes
// (present in captured logs, absent in lines handed to a Logger).
var reLogPrefix = regexp.MustCompile(`^(?:\[\d+\] )?\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \[[A-Z]+\] `)

// ParseLogLine splits a client log line; ok is false for server-level
// lines and anything it does not recognise.
func ParseLogLine(msg string) (LogLine, bool) {
	msg = strings.TrimRight(msg, "\r\n")
	if loc := reLogPrefix.FindStringIndex(msg); loc != nil {
		msg = msg[loc[1]:]
	}
	l, rest, ok := parseClientPrefix(msg)
	if !ok {
		return LogLine{}, false
	}
	if rest == "" {
		return LogLine{}, false
	}
	l.Text = rest
	return l, true
}

// parseClientPrefix reads `ip:port - kind:N[ - "name"]...` and returns the
// text after the following " - " (empty when the prefix is all there is).
func parseClientPrefix(s string) (LogLine, string, bool) {
	var l LogLine
	addr, rest, ok := strings.Cut(s, " - ")
	if !ok {
		return l, "", false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) == nil {
		return l, "", false
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return l, "", false
	}
	l.Remote = addr
	idPart, rest, more := strings.Cut(rest, " - ")
	kind, num, ok := strings.Cut(idPart, ":")
	if !ok || !validConnKind(kind) {
		return LogLine{}, "", false
	}
	cid, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return LogLine{}, "", false
	}
	l.Conn, l.CID = kind, cid
	if !more {
		return l, "", true
	}
	for strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			break
		}
		after := rest[len(q):]
		if after != "" && !strings.HasPrefix(after, " - ") {
			break // a quote that starts the text, not a name
		}
		name, err := strconv.Unquote(q)
		if err != nil {
			break
		}
		l.Names = append(l.Names, name)
		rest = strings.TrimPrefix(after, " - ")
		if after == "" {
			return l, "", true
		}
	}
	return l, rest, true
}

func validConnKind(k string) bool {
	switch k {
	case "cid", "mid", "mid_ws", "wid", "lid", "lid_ws", "rid", "gid":
		return true
	}
	return false
}

// protocolOf maps a log line's connection kind to Event.Protocol.
func protocolOf(conn string) string {
	switch conn {
	case "cid":
		return "nats"
	case "mid", "mid_ws":
		return "mqtt"
	case "wid":
		return "websocket"
	case "lid", "lid_ws":
		return "leafnode"
	}
	return conn
}

// Needles that make a log line worth parsing; checked before anything else
// so the hook costs a few substring searches per line.
var logNeedles = []string{"Violation", "authentication error", "TLS handshake", "Replacing old client"}

func interestingLog(msg string) bool {
	for _, n := range logNeedles {
		if strings.Contains(msg, n) {
			return true
		}
	}
	return false
}

// ClassifyLogLine turns a client log line into an audit event: publish or
// subscribe violations (the only trace of a denied MQTT QoS 0/1 publish),
// authentication errors, TLS handshake errors and client-id takeovers.
// The event carries what the line says (remote, connection id, client id
// for MQTT, subject or user); the auditor adds the rest from its
// connection table.
func ClassifyLogLine(l LogLine) (Event, bool) {
	ev := Event{Remote: l.Remote, CID: l.CID, Protocol: protocolOf(l.Conn), Source: SourceNATS}
	if ev.Protocol == "mqtt" && len(l.Names) > 0 {
		ev.ClientID = l.Names[0]
	}
	t := l.Text
	switch {
	case strings.HasPrefix(t, "Publish Violation - Subject "):
		ev.Kind, ev.Reason = KindPermission, "publish"
		ev.Subject = firstQuoted(strings.TrimPrefix(t, "Publish Violation - Subject "))
	case strings.HasPrefix(t, "Publish Violation - Reply "):
		ev.Kind, ev.Reason = KindPermission, "publish_reply"
		ev.Subject = firstQuoted(strings.TrimPrefix(t, "Publish Violation - Reply "))
	case strings.HasPrefix(t, "Subscription Violation"):
		ev.Kind, ev.Reason = KindPermission, "subscribe"
		if _, after, ok := strings.Cut(t, `Subject `); ok {
			ev.Subject = firstQuoted(after)
		}
	case t == "authentication error" || strings.HasPrefix(t, "authentication error - "):
		ev.Kind, ev.Reason = KindAuthFail, "authentication error"
		if _, after, ok := strings.Cut(t, ` - User `); ok {
			ev.User = firstQuoted(after)
		}
	case strings.HasPrefix(t, "TLS handshake error: "):
		ev.Kind, ev.Reason = KindTLSFailure, strings.TrimPrefix(t, "TLS handshake error: ")
	case strings.HasPrefix(t, "TLS handshake timeout"):
		ev.Kind, ev.Reason = KindTLSFailure, "TLS handshake timeout"
	case strings.HasPrefix(t, "Replacing old client "):
		ev.Kind = KindTakeover
		old := firstQuoted(strings.TrimPrefix(t, "Replacing old client "))
		if ol, _, ok := parseClientPrefix(old); ok {
			ev.Reason = "replaced " + ol.Remote + " (" + ol.Conn + ":" + strconv.FormatUint(ol.CID, 10) + ")"
		} else {
			ev.Reason = "replaced " + old
		}
		if _, after, ok := strings.Cut(t, "same client ID "); ok {
			if id := firstQuoted(after); id != "" {
				ev.ClientID = id
			}
		}
	default:
		return Event{}, false
	}
	return ev, true
}

// firstQuoted unquotes a Go-quoted string at the start of s; without one
// it returns s up to the first comma or space.
func firstQuoted(s string) string {
	if q, err := strconv.QuotedPrefix(s); err == nil {
		if u, err := strconv.Unquote(q); err == nil {
			return u
		}
	}
	if i := strings.IndexAny(s, ", "); i >= 0 {
		return s[:i]
	}
	return s
}
