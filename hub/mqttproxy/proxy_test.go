package mqttproxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/warren-mesh/warren/hub/pki"
)

// upstream is a minimal MQTT broker stand-in: it records the first packet
// of each connection, answers CONNACK 0 and echoes what follows.
type upstream struct {
	ln    net.Listener
	mu    sync.Mutex
	first [][]byte
	conns int
}

func startUpstream(t *testing.T) *upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				pkt, err := ReadPacket(br, 1<<16)
				u.mu.Lock()
				u.conns++
				if err == nil {
					u.first = append(u.first, pkt)
				}
				u.mu.Unlock()
				if err != nil {
					return
				}
				c.Write(ConnAck(0))
				io.Copy(c, br)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *upstream) stats() (int, [][]byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns, append([][]byte(nil), u.first...)
}

type refusals struct {
	mu      sync.Mutex
	reasons []string
}

func (r *refusals) add(remote, reason, detail string) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
}

func (r *refusals) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		got := append([]string(nil), r.reasons...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("refusals %v, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func setup(t *testing.T, maxConns int) (*Proxy, *upstream, *refusals, *tls.Config) {
	dir := t.TempDir()
	l, err := pki.DevPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := pki.ServerTLSConfig(l.CACert, l.HubCert, l.HubKey, tls.VersionTLS12)
	if err != nil {
		t.Fatal(err)
	}
	sc.ClientAuth = tls.NoClientCert
	up := startUpstream(t)
	ref := &refusals{}
	p, err := Listen(Config{
		Listen:           "127.0.0.1:0",
		TLS:              sc,
		Upstream:         up.ln.Addr().String(),
		MaxConns:         maxConns,
		HandshakeTimeout: 2 * time.Second,
		OnRefused:        ref.add,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	caPEM, _ := os.ReadFile(l.CACert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return p, up, ref, &tls.Config{RootCAs: pool, ServerName: pki.DefaultServerName}
}

func dialTLS(t *testing.T, p *Proxy, cc *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", p.Addr().String(), cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func TestRelayWithUser(t *testing.T) {
	p, up, _, cc := setup(t, 0)
	c := dialTLS(t, p, cc)
	pkt := connectPacket("MQTT", 4, 0xC2, "cli-1", [2]string{}, "alice", "pw")
	ping := []byte{0xC0, 0x00}
	c.Write(append(append([]byte{}, pkt...), ping...)) // CONNECT and PINGREQ in one write
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || !bytes.Equal(ack, ConnAck(0)) {
		t.Fatalf("connack %x %v", ack, err)
	}
	echo := make([]byte, 2)
	if _, err := io.ReadFull(c, echo); err != nil || !bytes.Equal(echo, ping) {
		t.Fatalf("bytes after CONNECT: %x %v", echo, err)
	}
	_, first := up.stats()
	if len(first) != 1 || !bytes.Equal(first[0], pkt) {
		t.Fatalf("upstream got %x, want the CONNECT byte for byte", first)
	}
	peers := p.Peers()
	if len(peers) != 1 || peers[0].User != "alice" || peers[0].ClientID != "cli-1" || peers[0].Remote != c.LocalAddr().String() || peers[0].TLSVersion != "TLS 1.3" {
		t.Fatalf("peers %+v", peers)
	}
	if got, ok := p.Lookup(peers[0].LocalPort); !ok || got != peers[0] {
		t.Fatalf("lookup %+v %v", got, ok)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(p.Peers()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("peer not removed after close")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRefusals(t *testing.T) {
	p, up, ref, cc := setup(t, 0)

	c := dialTLS(t, p, cc)
	c.Write(connectPacket("MQTT", 4, 0x02, "anon", [2]string{}, "", ""))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || !bytes.Equal(ack, ConnAck(ConnAckNotAuthorized)) {
		t.Fatalf("connack %x %v, want not authorized", ack, err)
	}
	c2 := dialTLS(t, p, cc)
	c2.Write(connectPacket("MQTT", 4, 0x80, "nopw", [2]string{}, "bob", ""))
	c3 := dialTLS(t, p, cc)
	c3.Write([]byte{0x30, 0x02, 0x00, 0x00}) // PUBLISH first
	raw, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(connectPacket("MQTT", 4, 0xC2, "x", [2]string{}, "u", "p")) // no TLS
	defer raw.Close()
	old := cc.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if c, err := tls.Dial("tcp", p.Addr().String(), old); err == nil {
		c.Close()
		t.Error("TLS 1.1 accepted")
	}
	got := ref.wait(t, 5)
	want := map[string]int{ReasonNoUser: 2, ReasonBadConnect: 1, "plaintext": 1, "tls-version": 1}
	counts := map[string]int{}
	for _, r := range got {
		counts[r]++
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("reason %s: %d, want %d (all: %v)", k, counts[k], v, got)
		}
	}
	if n, _ := up.stats(); n != 0 {
		t.Errorf("upstream saw %d connections, want 0", n)
	}
}

func TestMaxConnsAndClose(t *testing.T) {
	p, _, ref, cc := setup(t, 1)
	c := dialTLS(t, p, cc)
	c.Write(connectPacket("MQTT", 4, 0xC2, "one", [2]string{}, "u", "p"))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if got := ref.wait(t, 1); got[0] != ReasonTooMany {
		t.Fatalf("refusal %v", got)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("relayed connection still open after Close")
	}
}
