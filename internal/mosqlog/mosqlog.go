// Package mosqlog turns mosquitto broker log lines (formats of 1.4, 1.6 and
// 2.x) into connection records, so an edge at a site that keeps its mosquitto
// can report who connects to it. Parse is pure; Follow tails a log file
// across rotation.
package mosqlog

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind is what a log line reports.
type Kind string

// Kinds of records.
const (
	KindServer        Kind = "server"         // broker start/stop (Version set)
	KindNewConnection Kind = "new_connection" // TCP connection accepted
	KindConnected     Kind = "connected"      // MQTT CONNECT accepted
	KindDisconnected  Kind = "disconnected"   // client gone (Reason may say why)
	KindAuthFailed    Kind = "auth_failed"    // "not authorised"
	KindTakeover      Kind = "takeover"       // same client id connected again
	KindTLSFailed     Kind = "tls_failed"     // TLS handshake failure
	KindRefused       Kind = "refused"        // "Connection Refused: ..." (bridge side)
)

// Record is one parsed log line.
type Record struct {
	Time      time.Time
	Kind      Kind
	Addr      string // client IP
	SrcPort   int    // client source port (2.x only)
	Port      int    // listener port (new connection lines)
	ClientID  string
	Username  string // empty when none was given
	Protocol  int    // MQTT protocol level: 3 (3.1), 4 (3.1.1), 5; 0 when the line does not say (1.4)
	Clean     *bool
	KeepAlive int
	Bridge    bool
	Reason    string
	Version   string // broker version on server lines
	Line      string // the message part of the line
}

var (
	reNewConn   = regexp.MustCompile(`^New connection from (\S+) on port (\d+)\.$`)
	reConnected = regexp.MustCompile(`^New (client|bridge) connected from (\S+) as (.+) \(([^()]*)\)\.$`)
	reDisc      = regexp.MustCompile(`^Client (.+?) disconnected(?:(, not authorised)|: (.+?)| due to (.+?))?\.$`)
	reClosed    = regexp.MustCompile(`^Client (.+?) closed its connection\.$`)
	reSockErr   = regexp.MustCompile(`^Socket error on client (.+?), disconnecting\.$`)
	reTimeout   = regexp.MustCompile(`^Client (.+?) has exceeded timeout, disconnecting\.$`)
	reTakeover  = regexp.MustCompile(`^Client (.+?) already connected, closing old connection\.$`)
	reTLSFail   = regexp.MustCompile(`^Client connection from (\S+) failed: (.+?)\.?$`)
	reRefused   = regexp.MustCompile(`^Connection Refused: (.+)$`)
	reServer    = regexp.MustCompile(`^mosquitto version (\S+)(?: \(.*\))? (starting|running|terminating)`)
)

// timeLayouts are the timestamp prefixes mosquitto writes: epoch seconds by
// default, or a log_timestamp_format an operator chose.
var timeLayouts = []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", time.RFC3339}

// Parse parses one log line. ok is false for lines that are not about
// connections (subscriptions, publishes, configuration, …). loc is the time
// zone for timestamps without one (mosquitto writes local time).
func Parse(line string, loc *time.Location) (Record, bool) {
	line = strings.TrimRight(line, "\r\n")
	ts, msg := splitTime(line, loc)
	r := Record{Time: ts, Line: msg}
	switch {
	case match(reServer, msg, func(m []string) {
		r.Kind, r.Version, r.Reason = KindServer, m[1], m[2]
	}):
	case match(reNewConn, msg, func(m []string) {
		r.Kind = KindNewConnection
		r.Addr, r.SrcPort = splitAddr(m[1])
		r.Port, _ = strconv.Atoi(m[2])
	}):
	case match(reConnected, msg, func(m []string) {
		r.Kind = KindConnected
		r.Bridge = m[1] == "bridge"
		r.Addr, r.SrcPort = splitAddr(m[2])
		r.ClientID = m[3]
		parseFlags(&r, m[4])
	}):
	case match(reDisc, msg, func(m []string) {
		r.Kind, r.ClientID = KindDisconnected, m[1]
		switch {
		case m[2] != "":
			r.Kind, r.Reason = KindAuthFailed, "not authorised"
		case m[3] != "":
			r.Reason = m[3]
		case m[4] != "":
			r.Reason = m[4]
		}
	}):
	case match(reClosed, msg, func(m []string) { r.Kind, r.ClientID, r.Reason = KindDisconnected, m[1], "closed by client" }):
	case match(reSockErr, msg, func(m []string) { r.Kind, r.ClientID, r.Reason = KindDisconnected, m[1], "socket error" }):
	case match(reTimeout, msg, func(m []string) { r.Kind, r.ClientID, r.Reason = KindDisconnected, m[1], "keepalive timeout" }):
	case match(reTakeover, msg, func(m []string) { r.Kind, r.ClientID = KindTakeover, m[1] }):
	case match(reTLSFail, msg, func(m []string) { r.Kind, r.Addr, r.Reason = KindTLSFailed, m[1], m[2] }):
	case match(reRefused, msg, func(m []string) { r.Kind, r.Reason = KindRefused, m[1] }):
	default:
		return Record{}, false
	}
	if r.ClientID == "<unknown>" {
		r.ClientID = ""
	}
	return r, true
}

func match(re *regexp.Regexp, s string, f func([]string)) bool {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	f(m)
	return true
}

// splitTime cuts the "<timestamp>: " prefix.
func splitTime(line string, loc *time.Location) (time.Time, string) {
	if loc == nil {
		loc = time.Local
	}
	// The timestamp ends at the first ": " (ISO times contain ':' but not ": ").
	i := strings.Index(line, ": ")
	if i <= 0 {
		return time.Time{}, line
	}
	prefix, msg := line[:i], line[i+2:]
	if n, err := strconv.ParseInt(prefix, 10, 64); err == nil {
		return time.Unix(n, 0), msg
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, prefix, loc); err == nil {
			return t, msg
		}
	}
	return time.Time{}, line
}

// splitAddr splits "ip:port" (2.x) or "ip" (1.x); IPv6 addresses have no
// brackets in mosquitto's lines.
func splitAddr(s string) (string, int) {
	if ip := net.ParseIP(s); ip != nil {
		return s, 0
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || net.ParseIP(s[:i]) == nil {
		return s, 0
	}
	return s[:i], port
}

// parseFlags reads "p2, c1, k60, u'alice'" (1.6+) or "c0, k60, u'alice'" (1.4;
// older brokers print the user without quotes).
func parseFlags(r *Record, flags string) {
	for _, f := range strings.Split(flags, ", ") {
		if len(f) < 2 {
			continue
		}
		v := f[1:]
		switch f[0] {
		case 'p':
			r.Protocol, _ = strconv.Atoi(v)
			if r.Protocol == 1 {
				r.Protocol = 3 // mosquitto prints p1 for MQTT 3.1
			} else if r.Protocol == 2 {
				r.Protocol = 4 // and p2 for 3.1.1
			}
		case 'c':
			b := v == "1"
			r.Clean = &b
		case 'k':
			r.KeepAlive, _ = strconv.Atoi(v)
		case 'u':
			r.Username = strings.Trim(v, "'")
		}
	}
}
