package natspub

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// startServer runs an embedded nats-server with JetStream on loopback and
// returns a connection to it.
func startServer(t *testing.T) (*server.Server, *nats.Conn) {
	t.Helper()
	opts := &server.Options{
		ServerName: "natspub-test",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 4096,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL(), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}

func msg() *target.Message {
	return &target.Message{
		ID: "site1:abc:42/route/nats", Topic: "logging/hare", Edge: "site1", Title: "login\r\nX-Evil: 1",
		Body: "jo logged in", Priority: 2, Payload: []byte(`{"user":"jo"}`), Fields: map[string]any{"user": "jo"},
	}
}

func TestCorePublish(t *testing.T) {
	_, nc := startServer(t)
	sub, err := nc.SubscribeSync("notify.>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	cfg := DefaultConfig()
	cfg.Subject = "notify.{{.Edge}}.{{.Fields.user}}"
	n, err := New(cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	got, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "notify.site1.jo" || string(got.Data) != "jo logged in" {
		t.Errorf("got %s %q", got.Subject, got.Data)
	}
	for k, want := range map[string]string{
		HeaderID: "site1:abc:42/route/nats", HeaderTopic: "logging/hare", HeaderEdge: "site1",
		HeaderTitle: "login  X-Evil: 1", HeaderPriority: "2",
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if got.Header.Get("X-Evil") != "" {
		t.Error("header injection through the title")
	}
}

func TestJetStreamPublish(t *testing.T) {
	_, nc := startServer(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NOTIFY", Subjects: []string{"notify.>"}, Duplicates: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Subject = "notify.{{.Edge}}"
	cfg.JetStream = true
	cfg.Content = target.ContentPayload
	n, err := New(cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	// The same notification twice (a retry after a lost PubAck) is
	// stored once; a different one is stored too.
	for range 2 {
		if retry, err := n.Notify(ctx, msg()); err != nil {
			t.Fatalf("retry=%v err=%v", retry, err)
		}
	}
	other := msg()
	other.ID = "site1:abc:43/route/nats"
	if _, err := n.Notify(ctx, other); err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2", info.State.Msgs)
	}
	raw, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Subject != "notify.site1" || string(raw.Data) != `{"user":"jo"}` || raw.Header.Get(jetstream.MsgIDHeader) != "site1:abc:42/route/nats" {
		t.Errorf("stored %s %q %v", raw.Subject, raw.Data, raw.Header)
	}

	// No stream for the subject: retryable (the stream may come later).
	cfg.Subject = "elsewhere.x"
	cfg.Timeout = time.Second
	n2, err := New(cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	retry, err := n2.Notify(ctx, msg())
	if err == nil || !retry || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("no stream: retry=%v err=%v", retry, err)
	}
}

func TestFailures(t *testing.T) {
	s, nc := startServer(t)
	cfg := DefaultConfig()
	cfg.Subject = "notify.{{.Fields.user}}"
	n, err := New(cfg, nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"a b", "*", ">", "a..b", ""} {
		m := msg()
		m.Fields = map[string]any{"user": user}
		if retry, err := n.Notify(context.Background(), m); err == nil || retry {
			t.Errorf("user %q: retry=%v err=%v", user, retry, err)
		}
	}
	big := msg()
	big.Body = strings.Repeat("x", 5000)
	if retry, err := n.Notify(context.Background(), big); err == nil || retry {
		t.Errorf("over max payload: retry=%v err=%v", retry, err)
	}

	// Server gone: retryable.
	s.Shutdown()
	s.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	retry, err := n.Notify(context.Background(), msg())
	if err == nil || !retry || !errors.Is(err, ErrNotConnected) {
		t.Errorf("server down: retry=%v err=%v", retry, err)
	}
	nc.Close()
	if retry, err := n.Notify(context.Background(), msg()); err == nil || !retry {
		t.Errorf("closed: retry=%v err=%v", retry, err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no subject", func(c *Config) { c.Subject = "" }, "subject"},
		{"wildcard", func(c *Config) { c.Subject = "a.>" }, "subject"},
		{"system", func(c *Config) { c.Subject = "$JS.API.x" }, "subject"},
		{"bad template", func(c *Config) { c.Subject = "{{" }, "subject"},
		{"domain without jetstream", func(c *Config) { c.Domain = "hub" }, "domain"},
		{"bad domain", func(c *Config) { c.JetStream = true; c.Domain = "a.b" }, "domain"},
		{"content", func(c *Config) { c.Content = "xml" }, "content"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Subject = "notify.x"
			tt.mut(&c)
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
	c := DefaultConfig()
	c.Subject = "x"
	if _, err := New(c, nil); err == nil {
		t.Error("nil connection accepted")
	}
}
