package hub

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/event"
)

func TestStatusOverAdmin(t *testing.T) {
	cfg := testConfig(t)
	cfg.ServerName = "home"
	mqttUser(t, &cfg, "w", "pw", nil, nil)
	th := startHub(t, cfg, "site-a")
	nc := th.connectEdge(t, "site-a")
	hb, _ := json.Marshal(Heartbeat{ID: "site-a", Version: "v9", BacklogMsgs: 3})
	if _, err := nc.Request(event.IngestPrefix+"site-a."+StatusSubjectRest, hb, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if ans, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "e", seq), []byte(harePayload), nil); err != nil || ans.Error != nil {
			t.Fatalf("%+v %v", ans, err)
		}
	}
	if _, err := th.paho(t, "tool", false, "", ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := th.Addrs().Admin
	var st Status
	waitFor(t, "status with the edge connected", 5*time.Second, func() bool {
		if err := admin.Get(ctx, addr, "/status", &st); err != nil {
			t.Fatal(err)
		}
		return len(st.Edges) == 1 && st.Edges[0].Connected
	})
	if st.ServerName != "home" || st.Version == "" || st.Uptime == "" || st.Started.IsZero() {
		t.Errorf("header %+v", st)
	}
	if st.Listeners != th.Addrs() {
		t.Errorf("listeners %+v, want %+v", st.Listeners, th.Addrs())
	}
	e := st.Edges[0]
	if e.ID != "site-a" || e.Version != "v9" || e.BacklogMsgs != 3 || e.TLSVersion != "TLS 1.3" || e.Stored != 2 || e.Since == nil || e.RTT == "" {
		t.Errorf("edge %+v", e)
	}
	if st.Stream.Name != event.HubStream || st.Stream.Messages != 2 || st.Stream.Bytes == 0 || st.Stream.LastSeq != 2 ||
		st.Stream.DuplicateWindow != "24h0m0s" || st.Stream.Discard != "old" || st.Stream.MaxBytes != 8<<30 {
		t.Errorf("stream %+v", st.Stream)
	}
	if len(st.MQTT.Clients) != 1 || st.MQTT.Clients[0].ClientID != "tool" || st.MQTT.Clients[0].User != "local" || st.MQTT.Clients[0].Via != "mqtt" {
		t.Errorf("mqtt %+v", st.MQTT)
	}
	if st.Ingest[resStored] != 2 || st.Ingest[resHeartbeat] != 1 || st.Republished != 2 {
		t.Errorf("counters %v republished %d", st.Ingest, st.Republished)
	}

	var edges []EdgeStatus
	if err := admin.Get(ctx, addr, "/edges", &edges); err != nil {
		t.Fatal(err)
	}
	if len(edges) != 1 || edges[0].ID != "site-a" {
		t.Errorf("edges %+v", edges)
	}
	var health []byte
	if err := admin.Get(ctx, addr, "/healthz", &health); err != nil || strings.TrimSpace(string(health)) != "ok" {
		t.Errorf("healthz %q %v", health, err)
	}
	var metrics []byte
	if err := admin.Get(ctx, addr, "/metrics", &metrics); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`hub_ingest_events_total{result="stored"} 2`,
		`hub_ingest_events_total{result="forged_msg_id"} 0`,
		"hub_edges_connected 1",
		"hub_mqtt_clients 1",
		"hub_stream_messages 2",
		"hub_republished_total 2",
		"hub_ingest_store_seconds_count 2",
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// the status never shows a password or key
	raw, _ := json.Marshal(st)
	for _, secret := range []string{"pw\"", "PRIVATE"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("status contains %q", secret)
		}
	}
}

func TestServicesAndShutdown(t *testing.T) {
	cfg := testConfig(t)
	cfg.DataDir = t.TempDir()
	h, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	stopped := make(chan struct{})
	h.Go("probe", func(ctx context.Context) error {
		if h.Conn() == nil || h.JetStream() == nil {
			t.Error("no connection for services")
		}
		nc, err := h.Connect("probe")
		if err != nil {
			t.Error(err)
			return err
		}
		defer nc.Close()
		close(started)
		<-ctx.Done()
		close(stopped)
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("service not started")
	}
	if err := h.Healthy(); err != nil {
		t.Errorf("healthy: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	select {
	case <-stopped:
	default:
		t.Error("Run returned before the service stopped")
	}
	if err := h.Healthy(); err == nil {
		t.Error("healthy after stop")
	}
	if err := h.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

func TestServiceErrorStopsHub(t *testing.T) {
	cfg := testConfig(t)
	h, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.Go("broken", func(ctx context.Context) error { return context.DeadlineExceeded })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = h.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Run = %v, want the service's error", err)
	}
}
