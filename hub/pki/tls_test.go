package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs one mutual-TLS exchange over loopback: the server
// completes the handshake and writes "ok"; the client reads it. It returns
// the server's and the client's errors and, on success, the edge id the
// server read from the client certificate.
func handshake(t *testing.T, server, client *tls.Config) (edgeID string, serverErr, clientErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		id  string
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		var id string
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			id, err = EdgeIDFromCert(peers[0])
		}
		if err == nil {
			_, err = c.Write([]byte("ok"))
		}
		done <- result{err: err, id: id}
	}()

	dialer := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		// In TLS 1.3 the client finishes before the server has checked the
		// client certificate: a refusal shows up on the first read.
		buf := make([]byte, 2)
		if _, err = io.ReadFull(c, buf); err == nil && string(buf) != "ok" {
			err = errors.New("unexpected server reply")
		}
		c.Close()
	}
	r := <-done
	return r.id, r.err, err
}

func TestHandshake(t *testing.T) {
	f := newFixture(t)
	srv13, err := ServerTLSConfig(f.l.CACert, f.l.HubCert, f.l.HubKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv12, err := ServerTLSConfig(f.l.CACert, f.l.HubCert, f.l.HubKey, tls.VersionTLS12)
	if err != nil {
		t.Fatal(err)
	}
	rogueSrv, err := ServerTLSConfig(f.rogue.CACert, f.rogue.HubCert, f.rogue.HubKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	edge, err := ClientTLSConfig(f.l.CACert, f.edge.Cert, f.edge.Key)
	if err != nil {
		t.Fatal(err)
	}
	// with returns a copy of the edge config changed by fn.
	with := func(fn func(*tls.Config)) *tls.Config {
		c := edge.Clone()
		fn(c)
		return c
	}
	pair := func(cert, key string) tls.Certificate {
		p, err := LoadKeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rogueEdge := pair(f.rogueEdge.Cert, f.rogueEdge.Key)
	expiredEdge := pair(f.expiredEdge.Cert, f.expiredEdge.Key)
	hubAsClient := pair(f.l.HubCert, f.l.HubKey)

	// force makes the client send cert whatever the server's list of
	// acceptable CAs says (crypto/tls would otherwise send no certificate
	// at all for one of another CA).
	force := func(cert tls.Certificate) func(*tls.Config) {
		return func(c *tls.Config) {
			c.Certificates = nil
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
	}

	tests := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		serverErr string // "" = the handshake succeeds
	}{
		{"edge cert, TLS 1.3", srv13, edge, ""},
		{"edge cert, TLS 1.2 allowed by the hub", srv12, with(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), ""},
		{"certificate of another CA, sent anyway", srv13, with(force(rogueEdge)), "unknown authority"},
		{"certificate of another CA", srv13, with(func(c *tls.Config) { c.Certificates = []tls.Certificate{rogueEdge} }), "didn't provide a certificate"},
		{"no client certificate", srv13, with(func(c *tls.Config) { c.Certificates = nil }), "didn't provide a certificate"},
		{"expired client certificate", srv13, with(force(expiredEdge)), "expired"},
		{"hub server certificate used as client", srv13, with(force(hubAsClient)), "incompatible key usage"},
		{"TLS 1.1 client", srv12, with(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }), "unsupported versions"},
		{"TLS 1.2 client, hub default 1.3", srv13, with(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), "unsupported versions"},
		{"hub of another CA", rogueSrv, edge, "bad certificate"},
		{"wrong server name", srv13, with(func(c *tls.Config) { c.ServerName = "other.warren" }), "bad certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, serverErr, clientErr := handshake(t, tt.server, tt.client)
			if tt.serverErr == "" {
				if serverErr != nil || clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", serverErr, clientErr)
				}
				if id != "edge-1" {
					t.Fatalf("server saw edge id %q, want edge-1", id)
				}
				return
			}
			if serverErr == nil || !strings.Contains(serverErr.Error(), tt.serverErr) {
				t.Fatalf("server error %v, want one containing %q", serverErr, tt.serverErr)
			}
			if clientErr == nil {
				t.Fatalf("client did not notice the refusal (server: %v)", serverErr)
			}
			t.Logf("refused: server %v; client %v", serverErr, clientErr)
		})
	}
}
