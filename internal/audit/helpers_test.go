package audit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/natsembed"
	"github.com/warren-mesh/warren/internal/promtest"
)

// testServer is an embedded nats-server with MQTT, watched by an auditor.
type testServer struct {
	s        *server.Server
	sys, tap *nats.Conn
	mqttPort int
	aud      *Auditor
	sink     *memSink
	reg      *prometheus.Registry
}

const testAccounts = `
accounts {
  APP {
    jetstream: enabled
    users: [
      {user: alice, password: right}
      {user: limited, password: pw, permissions: {publish: {deny: ["secret", "secret.>"]}}}
    ]
  }
  SYS {
    users: [{user: sys, password: syspw, allowed_connection_types: ["IN_PROCESS"]}]
  }
}
system_account: SYS
`

// testLogger logs to the test only with WARREN_TEST_LOG=1 (the server is chatty).
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("WARREN_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startAudited starts a server and an auditor attached to it; mod tunes
// the audit configuration. Everything stops at the end of the test.
func startAudited(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PollInterval = 100 * time.Millisecond
	cfg.TrafficInterval = 300 * time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	ts := &testServer{sink: &memSink{}, reg: prometheus.NewRegistry()}
	aud, err := New(cfg, Options{Sink: ts.sink, Registry: ts.reg, Observer: "test-edge", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ts.aud = aud

	opts := &server.Options{}
	if err := opts.ProcessConfigString(testAccounts); err != nil {
		t.Fatal(err)
	}
	opts.ServerName = "audit-test"
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.MQTT.Host, opts.MQTT.Port = "127.0.0.1", server.RANDOM_PORT
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	// The hook must be in place before the server logs anything.
	s.SetLoggerV2(&natsembed.Logger{L: testLogger(t), Hook: aud.NATSLogHook}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { natsembed.Stop(s) })
	ts.s = s
	ts.mqttPort = opts.MQTT.Port
	if vz, err := s.Varz(nil); err == nil && vz.MQTT.Port > 0 {
		ts.mqttPort = vz.MQTT.Port
	}

	ts.sys, err = nats.Connect("", nats.InProcessServer(s), nats.UserInfo("sys", "syspw"), nats.Name("audit-sys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.sys.Close)
	ts.tap, err = nats.Connect("", nats.InProcessServer(s), nats.UserInfo("alice", "right"), nats.Name("audit-tap"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.tap.Close)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- aud.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if err := aud.Attach(s, ts.sys, AttachOptions{Tap: ts.tap}); err != nil {
		t.Fatal(err)
	}
	return ts
}

// openConns counts the server's open client connections of a protocol
// ("mqtt", "nats").
func (ts *testServer) openConns(protocol string) int {
	cz, err := ts.s.Connz(&server.ConnzOptions{Limit: 1 << 20})
	if err != nil {
		return -1
	}
	n := 0
	for _, c := range cz.Conns {
		typ := c.Type
		if typ == "" {
			typ = "nats"
		}
		if typ == protocol && c.IP != "" {
			n++
		}
	}
	return n
}

// canBind tells whether this machine lets a socket bind ip (the loopback
// /8 beyond 127.0.0.1 works on Linux, not everywhere).
func canBind(ip string) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func needLoopbackAlias(t *testing.T, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		if !canBind(ip) {
			t.Skipf("cannot bind %s here: the loopback /8 is not routed to lo", ip)
		}
	}
}

type mqttOpts struct {
	src, id, user, pass string
	onLost              func()
}

func mqttOptions(port int, o mqttOpts) *mqtt.ClientOptions {
	opts := mqtt.NewClientOptions().
		AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID(o.id).SetUsername(o.user).SetPassword(o.pass).
		SetProtocolVersion(4). // no fallback to 3.1 after a refusal
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(30 * time.Second)
	if o.src != "" {
		opts.SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.src)}, Timeout: 5 * time.Second})
	}
	if o.onLost != nil {
		opts.SetConnectionLostHandler(func(mqtt.Client, error) { o.onLost() })
	}
	return opts
}

// mqttConnect connects a paho client; err is the broker's refusal.
func mqttConnect(t *testing.T, port int, o mqttOpts) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(mqttOptions(port, o))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// find returns the first event matching f.
func (s *memSink) find(f func(Event) bool) (Event, bool) {
	for _, e := range s.all() {
		if f(e) {
			return e, true
		}
	}
	return Event{}, false
}

func (s *memSink) waitEvent(t *testing.T, what string, f func(Event) bool) Event {
	t.Helper()
	var ev Event
	waitFor(t, what, func() bool {
		var ok bool
		ev, ok = s.find(f)
		return ok
	})
	return ev
}

func (s *memSink) dump() string {
	var b strings.Builder
	for _, e := range s.all() {
		fmt.Fprintf(&b, "%s rule=%s remote=%s client=%s user=%s reason=%q\n", e.Kind, e.Rule, e.Remote, e.ClientID, e.User, e.Reason)
	}
	return b.String()
}

// metricValue sums the samples of name whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return promtest.Sum(t, reg, name, want)
}

type (
	mqttClient  = mqtt.Client
	mqttMessage = mqtt.Message
)

func mqttNewClient(port int, o mqttOpts) mqtt.Client { return mqtt.NewClient(mqttOptions(port, o)) }
