package refusal

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"plaintext", "tls: first record does not look like a TLS handshake", Plaintext},
		{"tls 1.1", "tls: client offered only unsupported versions: [302]", TLSVersion},
		{"no cert", "tls: client didn't provide a certificate", NoClientCert},
		{"other ca", "tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \"crypto/rsa: verification error\" while trying to verify candidate authority certificate \"evil CA\") (CN=x SHA-256: ab)", UntrustedCert},
		{"expired", "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time", ExpiredCert},
		{"usage", "tls: failed to verify certificate: x509: certificate specifies an incompatible key usage", BadCert},
		{"client refused hub", "remote error: tls: bad certificate", ClientRejectedCert},
		{"client unknown ca", "remote error: tls: unknown certificate authority", ClientRejectedCert},
		{"timeout", "TLS handshake timeout", Timeout},
		{"read timeout", "read tcp 127.0.0.1:4222->127.0.0.1:5: i/o timeout", Timeout},
		{"eof", "EOF", Aborted},
		{"reset", "read tcp: connection reset by peer", Aborted},
		{"cipher", "tls: no cipher suite supported by both client and server", Cipher},
		{"unknown", "something new", Other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Classify(c.text); got != c.want {
				t.Errorf("Classify(%q) = %q, want %q", c.text, got, c.want)
			}
		})
	}
}

func TestParseNATSLine(t *testing.T) {
	cases := []struct {
		name string
		line string
		want NATSLine
		ok   bool
	}{
		{"v4", "127.0.0.1:54321 - cid:7 - TLS handshake error: EOF", NATSLine{"127.0.0.1:54321", 7, "TLS handshake error: EOF"}, true},
		{"v6", "[::1]:1234 - cid:12 - \"v1.55.0:go\" - Slow Consumer", NATSLine{"[::1]:1234", 12, "\"v1.55.0:go\" - Slow Consumer"}, true},
		{"server line", "Server is ready", NATSLine{}, false},
		{"bad cid", "1.2.3.4:5 - cid:x - y", NATSLine{}, false},
		{"bad host", "nohost - cid:1 - y", NATSLine{}, false},
		{"no text", "1.2.3.4:5 - cid:1", NATSLine{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ParseNATSLine(c.line)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestHandshakeError(t *testing.T) {
	if e, ok := HandshakeError("TLS handshake error: tls: x"); !ok || e != "tls: x" {
		t.Errorf("got %q %v", e, ok)
	}
	if e, ok := HandshakeError("TLS handshake timeout"); !ok || e != "TLS handshake timeout" {
		t.Errorf("got %q %v", e, ok)
	}
	if _, ok := HandshakeError("Client connection closed"); ok {
		t.Error("non-handshake line matched")
	}
}

func FuzzParseNATSLine(f *testing.F) {
	f.Add("127.0.0.1:54321 - cid:7 - TLS handshake error: EOF")
	f.Add("[::1]:1 - cid:1 - x - y")
	f.Fuzz(func(t *testing.T, line string) {
		l, ok := ParseNATSLine(line)
		if ok && (l.Remote == "" || len(l.Text) > len(line)) {
			t.Fatalf("bad parse %+v of %q", l, line)
		}
		_ = Classify(line)
	})
}
