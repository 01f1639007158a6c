package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/wire"
)

// testKey is the HMAC key of key id "host1" in test key files.
var testKey = func() []byte {
	k, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	return k
}()

// testConfig is an edge on loopback ephemeral ports with a temp store.
func testConfig(t testing.TB, dir string) Config {
	t.Helper()
	c := DefaultConfig()
	c.ID = "test-edge"
	c.DataDir = dir
	c.Admin.Listen = "127.0.0.1:0"
	c.UDP.Listen = "127.0.0.1:0"
	c.MQTT.Listen = "127.0.0.1:0"
	c.UDP.KeysFile = writeKeys(t)
	return c
}

func writeKeys(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys")
	body := "# test keys\nhost1 " + hex.EncodeToString(testKey) + "\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startEdge starts an edge; it is closed at the end of the test.
func startEdge(t testing.TB, cfg Config) (*Edge, *logBuf) {
	t.Helper()
	return startEdgeWith(t, cfg, nil)
}

// startEdgeWith lets prep set test hooks between New and Start.
func startEdgeWith(t testing.TB, cfg Config, prep func(*Edge)) (*Edge, *logBuf) {
	t.Helper()
	var buf logBuf
	var w io.Writer = &buf
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := New(cfg, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if prep != nil {
		prep(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatalf("start: %v\nlog:\n%s", err, buf.String())
	}
	t.Cleanup(func() { e.Close() })
	return e, &buf
}

// sender is a UDP socket bound to a chosen loopback address.
func sender(t testing.TB, local string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(local)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t testing.TB, c *net.UDPConn, to string, b []byte) {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDP(b, a); err != nil {
		t.Fatal(err)
	}
}

func v0(tst int64, user string) []byte {
	return wire.AppendV0(nil, wire.Login{Tst: tst, Hostname: "vm", User: wire.Some(user),
		Service: wire.Some("sshd"), RHost: wire.Some("198.51.100.7"), TTY: wire.Some("ssh")})
}

func randNonce() [wire.NonceSize]byte {
	var n [wire.NonceSize]byte
	_, _ = rand.Read(n[:])
	return n
}

func seal(t testing.TB, kid string, key []byte, ts time.Time, nonce [wire.NonceSize]byte, payload []byte) []byte {
	t.Helper()
	b, err := wire.Seal(kid, key, uint64(ts.UnixMilli()), nonce, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// total sums a counter map.
func total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// storedEvents reads every message of the edge stream, in order.
func storedEvents(t testing.TB, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, event.EdgeStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(fmt.Errorf("get %d: %w", seq, err))
		}
		out = append(out, m)
	}
	return out
}

// freePort returns a TCP port that was free a moment ago (for child
// processes that need a fixed port in their config).
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
