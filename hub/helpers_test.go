package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
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

// lines returns the log lines containing every one of parts.
func (l *logBuf) lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok && line != "" {
			out = append(out, line)
		}
	}
	return out
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

type testHub struct {
	*Hub
	logs *logBuf
	dir  string // pki dir
}

// testConfig is a hub on loopback random ports with a temporary store.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.MQTT.TLSListen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	return cfg
}

// startHub makes a dev PKI with certificates for edges, starts a hub and
// stops it at cleanup.
func startHub(t testing.TB, cfg Config, edges ...string) *testHub {
	t.Helper()
	dir := cfg.PKIPath()
	if _, err := pki.DevPKI(dir, edges...); err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h, err := New(cfg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("hub run: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("hub not ready\n%s", logs.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hub run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("hub did not stop")
		}
		if t.Failed() {
			t.Logf("hub log:\n%s", logs.String())
		}
	})
	return &testHub{Hub: h, logs: logs, dir: dir}
}

// edgeTLS is the client TLS configuration of edge id from the hub's PKI.
func (th *testHub) edgeTLS(t testing.TB, id string) *tls.Config {
	t.Helper()
	l := pki.LayoutOf(th.dir)
	tc, err := pki.ClientTLSConfig(l.CACert, l.EdgeCert(id), l.EdgeKey(id))
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// connectEdge connects as edge id (its certificate from the hub's PKI).
func (th *testHub) connectEdge(t testing.TB, id string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return th.connectTLS(t, id, th.edgeTLS(t, id), opts...)
}

func (th *testHub) connectTLS(t testing.TB, id string, tc *tls.Config, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.Secure(tc),
		nats.CustomInboxPrefix("_INBOX_" + id),
		nats.Name("edge-" + id),
		nats.NoReconnect(),
	}, opts...)
	nc, err := nats.Connect("tls://"+th.Addrs().NATS, all...)
	if err != nil {
		t.Fatalf("edge %s connect: %v", id, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// answer is an ingest answer: a PubAck or an API error.
type answer struct {
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
	Stream    string `json:"stream"`
	Domain    string `json:"domain"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// send publishes one event as edge `from` on edge.<subjectEdge>.<rest>
// with the given Msg-Id and returns the hub's answer.
func send(t testing.TB, nc *nats.Conn, subjectEdge, rest, msgID string, data []byte, extra nats.Header) (answer, error) {
	t.Helper()
	m := nats.NewMsg(event.IngestPrefix + subjectEdge + "." + rest)
	m.Data = data
	if msgID != "" {
		m.Header.Set(event.HdrMsgID, msgID)
	}
	for k, v := range extra {
		m.Header[k] = v
	}
	reply, err := nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		return answer{}, err
	}
	var a answer
	if err := json.Unmarshal(reply.Data, &a); err != nil {
		return answer{}, fmt.Errorf("answer %q: %w", reply.Data, err)
	}
	return a, nil
}

// stored reads the whole hub stream.
func (th *testHub) stored(t testing.TB) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := th.JetStream().Stream(ctx, event.HubStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func pkiLayout(th *testHub) pki.Layout { return pki.LayoutOf(th.dir) }
