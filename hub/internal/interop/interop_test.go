package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/natsembed"
)

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

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// edgeStore is a minimal edge (the EDGE stream per the contract) for the
// bridge to forward from; it is a bridge.Source.
type edgeStore struct {
	js    jetstream.JetStream
	id    string
	epoch string
}

func (e *edgeStore) JetStream() jetstream.JetStream { return e.js }
func (e *edgeStore) EdgeID() string                 { return e.id }
func (e *edgeStore) Epoch() string                  { return e.epoch }

// TestBridgeToHub: events stored at an edge while the hub is down reach it
// once it runs, exactly once and in order, through the real bridge; the
// bridge's heartbeat shows in the hub's status.
func TestBridgeToHub(t *testing.T) {
	logs := &logBuf{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	const id = "site-i"

	cfg := hub.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen, cfg.MQTT.TLSListen, cfg.Admin.Listen = "127.0.0.1:0", "", ""
	l, err := pki.DevPKI(cfg.PKIPath(), id)
	if err != nil {
		t.Fatal(err)
	}

	// the edge store, filled before anything forwards
	s, err := natsembed.Start(&server.Options{ServerName: "edge-i", DontListen: true, JetStream: true,
		JetStreamDomain: event.EdgeDomain, StoreDir: t.TempDir()}, logger.With("component", "edge"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsembed.Stop(s) })
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: event.EdgeStream, Subjects: []string{event.EdgeSubjectPrefix + ">"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	const n = 500
	subj, _ := event.EdgeSubject(event.HareTopic)
	for i := range n {
		m := nats.NewMsg(subj)
		m.Data = []byte(fmt.Sprintf(`{"n":%d}`, i))
		m.Header.Set(event.HdrTopic, event.HareTopic)
		m.Header.Set(event.HdrEdge, id)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	h, err := hub.New(cfg, logger.With("component", "hub"), nil)
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(hctx) }()
	defer func() {
		hcancel()
		if err := <-hdone; err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-h.Ready():
	case err := <-hdone:
		t.Fatal(err)
	}

	bc := bridge.DefaultConfig()
	bc.URL = "tls://" + h.Addrs().NATS
	bc.CAFile, bc.CertFile, bc.KeyFile = l.CACert, l.EdgeCert(id), l.EdgeKey(id)
	bc.Heartbeat = 200 * time.Millisecond
	b, err := bridge.New(bc, &edgeStore{js: js, id: id, epoch: "ep1"}, logger.With("component", "bridge"), nil)
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() {
		bcancel()
		if err := <-bdone; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	}()

	hjs := h.JetStream()
	waitFor(t, "all events at the hub", 30*time.Second, func() bool { return h.Status().Stream.Messages == n })
	hs, err := hjs.Stream(ctx, event.HubStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= n; seq++ {
		m, err := hs.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, seq-1); string(m.Data) != want {
			t.Fatalf("hub seq %d: %q, want %q", seq, m.Data, want)
		}
		if got, want := m.Header.Get(event.HdrMsgID), event.MsgID(id, "ep1", seq); got != want {
			t.Fatalf("hub seq %d: msg id %q, want %q", seq, got, want)
		}
		if m.Subject != "hub.ev."+id+".logging.hare" {
			t.Fatalf("hub seq %d: subject %q", seq, m.Subject)
		}
	}
	waitFor(t, "the bridge's heartbeat in the hub's status", 10*time.Second, func() bool {
		es := h.Edges()
		return len(es) == 1 && es[0].Connected && es[0].LastHeartbeat != nil && es[0].Epoch == "ep1" &&
			es[0].BacklogMsgs == 0 && es[0].Forwarded == n && es[0].TLSVersion == "TLS 1.3"
	})
}
