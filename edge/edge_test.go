package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/event"
)

func TestV0AndV1Accepted(t *testing.T) {
	e, _ := startEdge(t, testConfig(t, t.TempDir()))
	s := sender(t, "127.0.0.1")
	send(t, s, e.UDPAddr(), v0(1795384588, "jjolie"))
	send(t, s, e.UDPAddr(), seal(t, "host1", testKey, time.Now(), randNonce(), v0(1795384589, "signed")))
	waitFor(t, "2 accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 2 })
	evs := storedEvents(t, e.JetStream())
	if len(evs) != 2 {
		t.Fatalf("%d events stored, want 2", len(evs))
	}
	want := []string{
		`{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384588,"tty":"ssh","user":"jjolie"}`,
		`{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384589,"tty":"ssh","user":"signed"}`,
	}
	for i, m := range evs {
		if m.Subject != "ev.logging.hare" {
			t.Errorf("subject %q", m.Subject)
		}
		if string(m.Data) != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, m.Data, want[i])
		}
	}
	if got := evs[1].Header.Get(event.HdrAuth); got != "signed:host1" {
		t.Errorf("auth header %q", got)
	}
	if st := e.Status(); st.UnsignedAccepted != 1 || st.Datagrams["v0"] != 1 || st.Datagrams["v1"] != 1 {
		t.Errorf("status counts: unsigned %d datagrams %v", st.UnsignedAccepted, st.Datagrams)
	}
}

func TestCustomTopic(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.UDP.Topic = "site.a/logins"
	e, _ := startEdge(t, cfg)
	send(t, sender(t, "127.0.0.1"), e.UDPAddr(), v0(1, "u"))
	waitFor(t, "accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 1 })
	evs := storedEvents(t, e.JetStream())
	if len(evs) != 1 || evs[0].Subject != "ev.site//a.logins" || evs[0].Header.Get(event.HdrTopic) != "site.a/logins" {
		t.Fatalf("stored %v", evs)
	}
}

// TestFlood: one source floods and is rate limited; another source still
// gets every datagram through.
func TestFlood(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.UDP.RateLimit = RateLimitConfig{Rate: 20, Burst: 10, MaxSources: 100}
	e, _ := startEdge(t, cfg)
	flooder, victim := sender(t, "127.0.0.2"), sender(t, "127.0.0.3")
	const flood = 600
	calm := 0
	for i := range flood {
		send(t, flooder, e.UDPAddr(), v0(int64(i), "flood"))
		if i%100 == 50 {
			send(t, victim, e.UDPAddr(), v0(int64(i), "calm"))
			calm++
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // stay under the socket buffer
		}
	}
	waitFor(t, "every datagram counted", 10*time.Second, func() bool {
		st := e.Status()
		return st.Accepted[event.SourceUDP]+total(st.Rejected) == uint64(flood+calm)
	})
	st := e.Status()
	if st.Rejected[ReasonRateLimited] == 0 {
		t.Fatal("flood not rate limited")
	}
	if other := total(st.Rejected) - st.Rejected[ReasonRateLimited]; other != 0 {
		t.Fatalf("other rejections: %v", st.Rejected)
	}
	var calmGot int
	for _, m := range storedEvents(t, e.JetStream()) {
		if bytes.Contains(m.Data, []byte(`"user":"calm"`)) {
			calmGot++
			if !bytes.Contains(m.Data, []byte(`"remote":"127.0.0.3"`)) {
				t.Errorf("calm event from wrong remote: %s", m.Data)
			}
		}
	}
	if calmGot != calm {
		t.Fatalf("calm source got %d of %d through", calmGot, calm)
	}
}

func TestStoreFull(t *testing.T) {
	for name, set := range map[string]func(*StoreConfig){
		"max_msgs":  func(s *StoreConfig) { s.MaxMsgs = 5 },
		"max_bytes": func(s *StoreConfig) { s.MaxBytes = 5 * 400 },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, t.TempDir())
			set(&cfg.Store)
			e, logs := startEdge(t, cfg)
			s := sender(t, "127.0.0.1")
			const n = 12
			for i := range n {
				send(t, s, e.UDPAddr(), v0(int64(i), fmt.Sprintf("user%02d", i)))
				// one at a time, so which ones fit is deterministic
				waitFor(t, "counted", 5*time.Second, func() bool {
					st := e.Status()
					return st.Accepted[event.SourceUDP]+st.Rejected[ReasonStoreFull] == uint64(i+1)
				})
			}
			st := e.Status()
			if st.Rejected[ReasonStoreFull] == 0 || st.Accepted[event.SourceUDP] == 0 {
				t.Fatalf("accepted %d, store_full %d", st.Accepted[event.SourceUDP], st.Rejected[ReasonStoreFull])
			}
			evs := storedEvents(t, e.JetStream())
			if uint64(len(evs)) != st.Accepted[event.SourceUDP] || st.Stream.Messages != uint64(len(evs)) {
				t.Fatalf("stored %d, accepted %d, stream says %d", len(evs), st.Accepted[event.SourceUDP], st.Stream.Messages)
			}
			// The accepted ones are the first ones: nothing stored was dropped.
			for i, m := range evs {
				if !bytes.Contains(m.Data, fmt.Appendf(nil, `"user":"user%02d"`, i)) {
					t.Errorf("event %d is %s", i, m.Data)
				}
			}
			if !strings.Contains(logs.String(), "edge store full") {
				t.Errorf("no store-full log line")
			}
		})
	}
}

func TestRequireSigned(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.UDP.RequireSigned = true
	e, _ := startEdge(t, cfg)
	s := sender(t, "127.0.0.1")
	send(t, s, e.UDPAddr(), v0(1, "u"))
	send(t, s, e.UDPAddr(), seal(t, "host1", testKey, time.Now(), randNonce(), v0(1, "s")))
	waitFor(t, "both counted", 5*time.Second, func() bool {
		st := e.Status()
		return st.Rejected[ReasonUnsigned] == 1 && st.Accepted[event.SourceUDP] == 1
	})
}

// TestOverload blocks the publisher and fills the queue: further datagrams
// are counted as overload, queued ones are stored once it resumes.
func TestOverload(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Ingest.QueueSize = 2
	cfg.Ingest.BatchSize = 1
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	var calls atomic.Int32
	e, _ := startEdgeWith(t, cfg, func(e *Edge) {
		e.publishHook = func() {
			if calls.Add(1) == 1 {
				entered <- struct{}{}
				<-release
			}
		}
	})
	s := sender(t, "127.0.0.1")
	send(t, s, e.UDPAddr(), v0(1, "first"))
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("publisher never took the first event")
	}
	for i := range 4 {
		send(t, s, e.UDPAddr(), v0(int64(i+2), "more"))
	}
	waitFor(t, "2 overload", 5*time.Second, func() bool { return e.Status().Rejected[ReasonOverload] == 2 })
	close(release)
	waitFor(t, "3 accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 3 })
}

// TestRestart: events and epoch survive a clean stop; a wiped store gets a
// new epoch.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	e, _ := startEdge(t, cfg)
	s := sender(t, "127.0.0.1")
	const n = 50
	for i := range n {
		send(t, s, e.UDPAddr(), v0(int64(i), "restart"))
	}
	waitFor(t, "accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == n })
	epoch := e.Epoch()
	if !validEpoch(epoch) {
		t.Fatalf("epoch %q", epoch)
	}
	before := storedEvents(t, e.JetStream())
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e2, _ := startEdge(t, cfg)
	if e2.Epoch() != epoch {
		t.Fatalf("epoch changed over a restart: %s -> %s", epoch, e2.Epoch())
	}
	after := storedEvents(t, e2.JetStream())
	if len(after) != n {
		t.Fatalf("%d events after restart, want %d", len(after), n)
	}
	for i := range after {
		if after[i].Sequence != before[i].Sequence || !bytes.Equal(after[i].Data, before[i].Data) {
			t.Fatalf("event %d differs after restart", i)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream", Account, epochFile)); err != nil {
		t.Fatalf("epoch file: %v", err)
	}
	e2.Close()

	if err := os.RemoveAll(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatal(err)
	}
	e3, _ := startEdge(t, cfg)
	if e3.Epoch() == epoch {
		t.Fatal("wiped store kept its epoch")
	}
	if got := e3.Status().Stream.Messages; got != 0 {
		t.Fatalf("wiped store has %d events", got)
	}
}

// TestReplayAcrossRestart: a signed datagram accepted before a restart is a
// replay after it, through the reloaded cache and through the nonce
// stream's duplicate detection alone.
func TestReplayAcrossRestart(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	e, _ := startEdge(t, cfg)
	s := sender(t, "127.0.0.1")
	d := seal(t, "host1", testKey, time.Now(), randNonce(), v0(1, "once"))
	send(t, s, e.UDPAddr(), d)
	waitFor(t, "accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 1 })
	e.Close()

	for _, skipLoad := range []bool{false, true} {
		e, logs := startEdgeWith(t, cfg, func(e *Edge) { e.skipNonceLoad = skipLoad })
		if !skipLoad && e.replaySize.Load() != 1 {
			t.Fatalf("replay cache has %d entries after restart, want 1\n%s", e.replaySize.Load(), logs)
		}
		send(t, s, e.UDPAddr(), d)
		waitFor(t, fmt.Sprintf("replay (skipLoad=%v)", skipLoad), 5*time.Second, func() bool {
			return e.Status().Rejected[ReasonReplay] == 1
		})
		if got := e.Status().Accepted[event.SourceUDP]; got != 0 {
			t.Fatalf("replay accepted (skipLoad=%v)", skipLoad)
		}
		// A fresh datagram still passes.
		send(t, s, e.UDPAddr(), seal(t, "host1", testKey, time.Now(), randNonce(), v0(2, "fresh")))
		waitFor(t, "fresh accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 1 })
		e.Close()
	}
}

func TestExpiry(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Store.MaxAge = time.Minute
	e, _ := startEdge(t, cfg)
	s := sender(t, "127.0.0.1")
	for i := range 3 {
		send(t, s, e.UDPAddr(), v0(int64(i), "old"))
	}
	waitFor(t, "accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 3 })
	ctx := context.Background()
	if n, err := e.expireOnce(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("fresh events expired: %d %v", n, err)
	}
	n, err := e.expireOnce(ctx, time.Now().Add(2*time.Minute))
	if err != nil || n != 3 {
		t.Fatalf("expired %d (%v), want 3", n, err)
	}
	st := e.Status()
	if st.Expired != 3 || st.Stream.Messages != 0 {
		t.Fatalf("expired %d, stream %d", st.Expired, st.Stream.Messages)
	}
}

func TestStatusAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, t.TempDir())
	e, err := New(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s := sender(t, "127.0.0.1")
	send(t, s, e.UDPAddr(), v0(1, "u"))
	send(t, s, e.UDPAddr(), []byte("garbage"))
	waitFor(t, "counted", 5*time.Second, func() bool {
		st := e.Status()
		return st.Accepted[event.SourceUDP] == 1 && st.Rejected[ReasonUnknownFormat] == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw []byte
	if err := admin.Get(ctx, e.AdminAddr(), "/status", &raw); err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	if hub, _ := st["hub"].(map[string]any); hub["state"] != "not configured" {
		t.Errorf("hub = %v, want not configured", st["hub"])
	}
	for _, k := range []string{"version", "id", "epoch", "uptime_seconds", "listeners", "accepted", "rejected", "stream"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status lacks %q: %s", k, raw)
		}
	}
	l := st["listeners"].(map[string]any)
	if l["udp"] != e.UDPAddr() || l["mqtt"] != e.MQTTAddr() || l["admin"] != e.AdminAddr() || l["nats"] != "" {
		t.Errorf("listeners %v", l)
	}
	stream := st["stream"].(map[string]any)
	if stream["messages"] != 1.0 || stream["oldest_age_seconds"].(float64) <= 0 || stream["oldest"] == nil {
		t.Errorf("stream %v", stream)
	}

	e.SetLinkStatus(func() any { return map[string]string{"state": "connected", "url": "tls://hub:4222"} })
	if got := fmt.Sprint(e.Status().Hub); !strings.Contains(got, "connected") {
		t.Errorf("hub status with hook = %s", got)
	}
	e.SetLinkStatus(nil)
	if got := e.Status().Hub; got != (HubNotConfigured{State: "not configured"}) {
		t.Errorf("hub status after removing hook = %v", got)
	}

	var metrics []byte
	if err := admin.Get(ctx, e.AdminAddr(), "/metrics", &metrics); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`warren_edge_events_accepted_total{source="udp"} 1`,
		`warren_edge_events_accepted_total{source="mqtt"} 0`,
		`warren_edge_events_rejected_total{reason="unknown_format"} 1`,
		`warren_edge_events_rejected_total{reason="store_full"} 0`,
		`warren_edge_udp_datagrams_total{format="v0"} 1`,
		`warren_edge_stream_messages 1`,
		`warren_edge_stream_up 1`,
		`warren_edge_udp_unsigned_accepted_total 1`,
	} {
		if !bytes.Contains(metrics, []byte(line+"\n")) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	var health []byte
	if err := admin.Get(ctx, e.AdminAddr(), "/healthz", &health); err != nil || string(health) != "ok\n" {
		t.Errorf("healthz %q %v", health, err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("bad key file", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir())
		p := filepath.Join(t.TempDir(), "keys")
		os.WriteFile(p, []byte("host1 nothex\n"), 0o600)
		cfg.UDP.KeysFile = p
		e, err := New(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = e.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "udp.keys_file") || strings.Contains(err.Error(), "nothex") {
			t.Fatalf("err = %v", err)
		}
		e.Close()
	})
	t.Run("mqtt port taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := testConfig(t, t.TempDir())
		cfg.MQTT.Listen = ln.Addr().String()
		e, _ := New(cfg, nil, nil)
		err = e.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "mqtt.listen") {
			t.Fatalf("err = %v", err)
		}
		e.Close()
	})
	t.Run("invalid config", func(t *testing.T) {
		cfg := testConfig(t, t.TempDir())
		cfg.ID = "NO"
		if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "id:") {
			t.Fatalf("err = %v", err)
		}
	})
}
