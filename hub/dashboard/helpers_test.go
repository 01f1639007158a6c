package dashboard

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/natsembed"
)

// hubServer is an embedded nats-server shaped like the hub's: an account
// with JetStream and the HUB stream, a system account, MQTT.
type hubServer struct {
	s        *server.Server
	nc, sys  *nats.Conn
	js       jetstream.JetStream
	mqttPort int
	logger   *natsembed.Logger
}

const hubAccounts = `
accounts {
  HUB {
    jetstream: enabled
    users: [
      {user: hub, password: hubpw}
      {user: alice, password: right}
      {user: sensor, password: pw, permissions: {publish: {deny: ["secret", "secret.>"]}}}
    ]
  }
  SYS { users: [{user: sys, password: syspw}] }
}
system_account: SYS
`

func testLogger() *slog.Logger {
	if os.Getenv("WARREN_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startHubServer starts the server; hook (may be nil) sees its log lines.
func startHubServer(t *testing.T, mqtt bool, hook func(slog.Level, string)) *hubServer {
	t.Helper()
	opts := &server.Options{}
	if err := opts.ProcessConfigString(hubAccounts); err != nil {
		t.Fatal(err)
	}
	opts.ServerName = "dash-hub"
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.JetStreamDomain, opts.StoreDir = true, event.HubDomain, t.TempDir()
	if mqtt {
		opts.MQTT.Host, opts.MQTT.Port = "127.0.0.1", server.RANDOM_PORT
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := &hubServer{s: s, logger: &natsembed.Logger{L: testLogger(), Hook: hook}}
	s.SetLoggerV2(hs.logger, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { natsembed.Stop(s) })
	if mqtt {
		vz, err := s.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		hs.mqttPort = vz.MQTT.Port
	}
	if hs.nc, err = nats.Connect("", nats.InProcessServer(s), nats.UserInfo("hub", "hubpw"), nats.Name("hub")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hs.nc.Close)
	if hs.sys, err = nats.Connect("", nats.InProcessServer(s), nats.UserInfo("sys", "syspw"), nats.Name("hub-sys")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hs.sys.Close)
	if hs.js, err = jetstream.New(hs.nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := hs.js.CreateStream(ctx, jetstream.StreamConfig{Name: event.HubStream, Subjects: []string{event.HubSubjectPrefix + ">"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	return hs
}

// store publishes one event into the HUB stream as the hub's ingest does.
func (hs *hubServer) store(t *testing.T, edge, topic, source string, at time.Time, payload []byte) {
	t.Helper()
	subj, err := event.TopicToSubject(topic)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(event.HubSubject(edge, subj))
	m.Data = payload
	m.Header.Set(event.HdrEdge, edge)
	m.Header.Set(event.HdrSource, source)
	m.Header.Set(event.HdrTopic, topic)
	m.Header.Set(event.HdrReceived, at.UTC().Format(time.RFC3339Nano))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := hs.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// runFollow runs Follow until the test ends.
func runFollow(t *testing.T, js jetstream.JetStream, agg *Aggregator, o FollowOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, js, agg, o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow: %v", err)
		}
	})
}
