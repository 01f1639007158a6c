// Package refusal names why a connection to one of the hub's TLS listeners
// was refused, from the TLS handshake error text (Go's crypto/tls errors, as
// nats-server logs them or as the hub's own listeners see them), and parses
// the client prefix of nats-server's log lines.
package refusal

import (
	"net"
	"strconv"
	"strings"
)

// Reasons a connection is refused. They are metric label values and log
// fields, so the set is small and fixed.
const (
	Plaintext          = "plaintext"                // not TLS at all
	TLSVersion         = "tls-version"              // protocol older than the configured minimum
	NoClientCert       = "no-client-certificate"    // mutual TLS, but no certificate was presented
	UntrustedCert      = "untrusted-certificate"    // not signed by the warren CA
	ExpiredCert        = "expired-certificate"      // outside its validity period
	BadCert            = "bad-certificate"          // any other verification failure (usage, format)
	ClientRejectedCert = "client-rejected-hub-cert" // the peer did not accept the hub's certificate
	Cipher             = "no-common-cipher"         // no cipher suite in common
	Timeout            = "handshake-timeout"        // handshake not finished in time
	Aborted            = "aborted"                  // peer closed or reset during the handshake
	Other              = "other"                    // anything else
)

// rules are checked in order; the first whose needle is in the text wins.
var rules = []struct {
	needle string
	reason string
}{
	{"does not look like a TLS handshake", Plaintext},
	{"unsupported SSLv2 handshake", Plaintext},
	{"first record does not look like", Plaintext},
	{"offered only unsupported versions", TLSVersion},
	{"protocol version not supported", TLSVersion},
	{"unsupported versions", TLSVersion},
	{"didn't provide a certificate", NoClientCert},
	{"did not provide a certificate", NoClientCert},
	{"remote error: tls: bad certificate", ClientRejectedCert},
	{"remote error: tls: unknown certificate authority", ClientRejectedCert},
	{"remote error: tls: certificate", ClientRejectedCert},
	{"remote error: tls: handshake failure", ClientRejectedCert},
	{"has expired or is not yet valid", ExpiredCert},
	{"signed by unknown authority", UntrustedCert},
	{"certificate is not trusted", UntrustedCert},
	{"failed to verify certificate", BadCert},
	{"incompatible key usage", BadCert},
	{"no cipher suite supported", Cipher},
	{"handshake timeout", Timeout},
	{"i/o timeout", Timeout},
	{"EOF", Aborted},
	{"connection reset", Aborted},
	{"broken pipe", Aborted},
	{"use of closed network connection", Aborted},
}

// Classify returns the reason for a TLS handshake error text.
func Classify(text string) string {
	for _, r := range rules {
		if strings.Contains(text, r.needle) {
			return r.reason
		}
	}
	return Other
}

// NATSLine is what ParseNATSLine finds in a nats-server client log line.
type NATSLine struct {
	Remote string // "ip:port" of the client
	CID    uint64 // nats-server connection id
	Text   string // the rest of the line
}

// ParseNATSLine splits a nats-server client log line of the form
// "ip:port - cid:N - [optional name - ]text". ok is false for lines without
// that prefix (server-level lines).
func ParseNATSLine(line string) (NATSLine, bool) {
	remote, rest, ok := strings.Cut(line, " - cid:")
	if !ok || remote == "" {
		return NATSLine{}, false
	}
	if _, _, err := net.SplitHostPort(remote); err != nil {
		return NATSLine{}, false
	}
	idText, text, ok := strings.Cut(rest, " - ")
	if !ok {
		return NATSLine{}, false
	}
	cid, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return NATSLine{}, false
	}
	return NATSLine{Remote: remote, CID: cid, Text: text}, true
}

// HandshakeError returns the error text of a nats-server "TLS handshake
// error" or "TLS handshake timeout" line, and whether the line is one.
func HandshakeError(text string) (string, bool) {
	if i := strings.Index(text, "TLS handshake error: "); i >= 0 {
		return text[i+len("TLS handshake error: "):], true
	}
	if strings.Contains(text, "TLS handshake timeout") {
		return "TLS handshake timeout", true
	}
	return "", false
}
