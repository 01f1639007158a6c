package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/warren-mesh/warren/hub/notify/target"
)

const (
	brokerUser = "notifier"
	brokerPass = "mqtt-s3cret-pass"
)

// startBroker runs an embedded nats-server with JetStream and its MQTT
// gateway on loopback; port 0 picks a free port. It returns the server and
// its MQTT port.
func startBroker(t *testing.T, storeDir string, port int) (*server.Server, int) {
	t.Helper()
	if port == 0 {
		port = -1
	}
	opts := &server.Options{
		ServerName: "notify-mqtt-test",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
		Username:   brokerUser,
		Password:   brokerPass,
	}
	opts.MQTT.Host = "127.0.0.1"
	opts.MQTT.Port = port
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s, opts.MQTT.Port
}

type delivery struct {
	topic    string
	payload  string
	qos      byte
	retained bool
}

// subscribe connects a real paho subscriber and returns its messages.
func subscribe(t *testing.T, port int, filter string) <-chan delivery {
	t.Helper()
	ch := make(chan delivery, 16)
	opts := paho.NewClientOptions().
		AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID("sub-" + strings.ReplaceAll(t.Name(), "/", "-")).
		SetUsername(brokerUser).SetPassword(brokerPass)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		ch <- delivery{m.Topic(), string(m.Payload()), m.Qos(), m.Retained()}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return ch
}

func receive(t *testing.T, ch <-chan delivery) delivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no message received")
		return delivery{}
	}
}

func msg() *target.Message {
	return &target.Message{
		ID: "e/r/mqtt", Topic: "logging/hare", Edge: "site1", Title: "login", Body: "jo logged in",
		Payload: []byte(`{"user":"jo"}`), Fields: map[string]any{"user": "jo"}, Time: time.Unix(1795384588, 0),
	}
}

func newNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestPublish(t *testing.T) {
	_, port := startBroker(t, t.TempDir(), 0)
	sub := subscribe(t, port, "notify/#")
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte(brokerPass+"\n"), 0o600)

	cfg := DefaultConfig()
	cfg.URL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg.Username = brokerUser
	cfg.PasswordFile = pw
	cfg.Topic = "notify/{{.Edge}}/{{.Fields.user}}"
	n := newNotifier(t, cfg)
	if retry, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	d := receive(t, sub)
	if d.topic != "notify/site1/jo" || d.payload != "jo logged in" {
		t.Errorf("got %+v", d)
	}

	// JSON content, QoS 0, retained: a new subscriber gets the retained copy.
	cfg.Topic = "notify/json"
	cfg.Content = target.ContentJSON
	cfg.QoS = 0
	cfg.Retained = true
	n2 := newNotifier(t, cfg)
	if _, err := n2.Notify(context.Background(), msg()); err != nil {
		t.Fatal(err)
	}
	d = receive(t, sub)
	var doc map[string]any
	if err := json.Unmarshal([]byte(d.payload), &doc); err != nil || doc["message"] != "jo logged in" || doc["id"] != "e/r/mqtt" {
		t.Errorf("json payload %q: %v", d.payload, err)
	}
	late := subscribe(t, port, "notify/json")
	if d := receive(t, late); !d.retained {
		t.Errorf("late subscriber got %+v, want the retained message", d)
	}
}

func TestBadTopics(t *testing.T) {
	_, port := startBroker(t, t.TempDir(), 0)
	cfg := DefaultConfig()
	cfg.URL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg.Username, cfg.Password = brokerUser, brokerPass
	cfg.Topic = "notify/{{.Fields.user}}"
	n := newNotifier(t, cfg)
	for _, user := range []string{"a+b", "a#", "with space", "tab\t", "nul\x00"} {
		m := msg()
		m.Fields = map[string]any{"user": user}
		if retry, err := n.Notify(context.Background(), m); err == nil || retry {
			t.Errorf("user %q: retry=%v err=%v", user, retry, err)
		}
	}
	m := msg()
	m.Fields = nil
	if retry, err := n.Notify(context.Background(), m); err == nil || retry {
		t.Errorf("missing field: retry=%v err=%v", retry, err)
	}
}

// TestReconnect stops the broker, checks the failure is retryable and the
// password stays out of the error, restarts it on the same port and polls
// until the reused client delivers again.
func TestReconnect(t *testing.T) {
	store := t.TempDir()
	s, port := startBroker(t, store, 0)
	cfg := DefaultConfig()
	cfg.URL = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	cfg.Username, cfg.Password = brokerUser, brokerPass
	cfg.Topic = "notify/reconnect"
	cfg.Timeout = 500 * time.Millisecond
	cfg.ReconnectMax = 200 * time.Millisecond
	n := newNotifier(t, cfg)
	if _, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatalf("first publish: %v", err)
	}

	s.Shutdown()
	s.WaitForShutdown()
	deadline := time.Now().Add(15 * time.Second)
	for {
		retry, err := n.Notify(context.Background(), msg())
		if err != nil {
			if !retry {
				t.Fatalf("broker down: not retryable: %v", err)
			}
			if strings.Contains(err.Error(), brokerPass) {
				t.Fatalf("password in error: %v", err)
			}
			break
		}
		// The client may not have noticed the loss yet.
		if time.Now().After(deadline) {
			t.Fatal("publishing kept succeeding with the broker down")
		}
		time.Sleep(20 * time.Millisecond)
	}

	_, port2 := startBroker(t, store, port)
	if port2 != port {
		t.Fatalf("restarted on port %d, want %d", port2, port)
	}
	sub := subscribe(t, port, "notify/reconnect")
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, err := n.Notify(context.Background(), msg())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := receive(t, sub); d.payload != "jo logged in" {
		t.Errorf("after reconnect got %+v", d)
	}
}

func TestNeverConnected(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL = "tcp://notifier:" + brokerPass + "@127.0.0.1:1"
	cfg.Topic = "x"
	cfg.Timeout = 200 * time.Millisecond
	n := newNotifier(t, cfg)
	retry, err := n.Notify(context.Background(), msg())
	if err == nil || !retry || !errors.Is(err, ErrNotConnected) {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	if strings.Contains(err.Error(), brokerPass) {
		t.Errorf("password in error: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"bad scheme", func(c *Config) { c.URL = "http://h:1" }, "url"},
		{"client id", func(c *Config) { c.ClientID = "a.b" }, "client_id"},
		{"no topic", func(c *Config) { c.Topic = "" }, "topic"},
		{"wildcard topic", func(c *Config) { c.Topic = "a/#" }, "topic"},
		{"bad template", func(c *Config) { c.Topic = "{{" }, "topic"},
		{"qos", func(c *Config) { c.QoS = 3 }, "qos"},
		{"content", func(c *Config) { c.Content = "x" }, "content"},
		{"password without user", func(c *Config) { c.Password = "x" }, "username"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"reconnect", func(c *Config) { c.ReconnectMax = 0 }, "reconnect_max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.URL = "tcp://127.0.0.1:1883"
			c.Topic = "a/b"
			tt.mut(&c)
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("empty config accepted")
	}
	// No url validates (the notifier fills in the hub's own listener),
	// but New needs one.
	c := DefaultConfig()
	c.Topic = "a/b"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() without url = %v, want nil (the hub's listener)", err)
	}
	if _, err := New(c, slog.New(slog.DiscardHandler)); err == nil || !strings.HasPrefix(err.Error(), "url") {
		t.Errorf("New without url = %v, want an error about url", err)
	}
}

// TestNewDialsNothing: building the target (as check-config and the hub's
// start-up check do) opens no connection; the first notification does.
func TestNewDialsNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	c := DefaultConfig()
	c.URL = "tcp://" + ln.Addr().String()
	c.Topic = "a/b"
	c.Timeout = 300 * time.Millisecond
	built, err := New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	built.Close()
	n, err := New(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	select {
	case <-accepted:
		t.Fatal("New connected to the broker")
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := n.Notify(context.Background(), &target.Message{ID: "x", Body: "b"}); err == nil {
		t.Error("Notify succeeded against a broker that closes every connection")
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Error("Notify did not connect")
	}
}
