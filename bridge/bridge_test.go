package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/version"
)

func newBridge(tb testing.TB, cfg Config, src Source, reg prometheus.Registerer, opts ...Option) *Bridge {
	tb.Helper()
	b, err := New(cfg, src, testLogger(tb), reg, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestForwardOrderExactlyOnce(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	edge.publish(t, 500) // a backlog before the bridge starts

	reg := prometheus.NewRegistry()
	cfg := bridgeConfig(l, "site-1", hub.url())
	cfg.Batch, cfg.Inflight = 64, 100 // windows smaller than the bursts
	b := newBridge(t, cfg, edge, reg)
	runBridge(t, b)
	for range 3 { // and bursts while it runs
		edge.publish(t, 700)
	}
	waitDrained(t, edge, hub, 2600, 20*time.Second)
	hub.check(t, edge)

	st := b.Status()
	if st.State != StateConnected || st.Forwarded != 2600 || st.Duplicates != 0 {
		t.Errorf("status %+v: want connected, 2600 forwarded, no duplicates", st)
	}
	if got := metric(t, reg, "warren_bridge_forwarded_total"); got != 2600 {
		t.Errorf("warren_bridge_forwarded_total = %v, want 2600", got)
	}
	if got := metric(t, reg, "warren_bridge_link_state", "state", StateConnected); got != 1 {
		t.Errorf("link_state{connected} = %v", got)
	}
	if got := metric(t, reg, "warren_bridge_link_state", "state", StateDisconnected); got != 0 {
		t.Errorf("link_state{disconnected} = %v", got)
	}
}

func TestStatusAndHeartbeat(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	reg := prometheus.NewRegistry()
	b := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge, reg)
	runBridge(t, b)
	edge.publish(t, 10)
	waitDrained(t, edge, hub, 10, 10*time.Second)

	var st LinkStatus
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("%+v", st) }, func() bool {
		st = b.Status()
		return st.State == StateConnected && st.RTTMillis > 0 && st.Forwarded == 10
	})
	if st.TLSVersion != "1.3" || st.URL != hub.url() || st.ServerName != DefaultServerName {
		t.Errorf("status %+v: want TLS 1.3, url %s, server name %s", st, hub.url(), DefaultServerName)
	}
	if st.ConnectedSince.IsZero() || time.Since(st.ConnectedSince) > time.Minute {
		t.Errorf("connected since %v", st.ConnectedSince)
	}
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"state":"connected"`, `"tls_version":"1.3"`, `"rtt_ms":`, `"backlog_msgs":`, `"forwarded":10`} {
		if !strings.Contains(string(js), k) {
			t.Errorf("status JSON %s lacks %s", js, k)
		}
	}

	// Heartbeats reach the hub with real fields.
	var hb Heartbeat
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("last heartbeat %+v", hb) }, func() bool {
		beats := hub.heartbeats()
		if len(beats) == 0 {
			return false
		}
		hb = beats[len(beats)-1]
		return hb.Forwarded == 10
	})
	if hb.ID != "site-1" || hb.Epoch != edge.epoch || hb.Version != version.Version || hb.Started.IsZero() || hb.LinkSince.IsZero() {
		t.Errorf("heartbeat %+v", hb)
	}

	// The hub goes away: backlog counts what the edge holds, the link says
	// why it is down.
	hub.stop()
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("%+v", b.Status()) }, func() bool {
		return b.Status().State == StateDisconnected
	})
	edge.publish(t, 123)
	msgs, bytes := edge.stored(t)
	if msgs != 123 {
		t.Fatalf("edge holds %d, want 123", msgs)
	}
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("%+v, edge holds %d/%d", b.Status(), msgs, bytes) }, func() bool {
		st := b.Status()
		return st.BacklogMsgs == msgs && st.BacklogBytes == bytes && st.OldestAgeMillis >= 0
	})
	st = b.Status()
	if st.LastError == "" || st.LastErrorAt.IsZero() || st.TLSVersion != "" || !st.ConnectedSince.IsZero() {
		t.Errorf("status while down: %+v", st)
	}
	if got := metric(t, reg, "warren_bridge_backlog_messages"); got != 123 {
		t.Errorf("backlog gauge = %v", got)
	}
}

func TestHubOutage10k(t *testing.T) {
	l := testPKI(t, "site-1")
	hubDir := t.TempDir()
	hub := startHub(t, l, hubDir, 0, "site-1")
	port := hub.port()
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge, nil)
	runBridge(t, b)
	edge.publish(t, 100)
	waitDrained(t, edge, hub, 100, 10*time.Second)

	hub.stop()
	edge.publish(t, 10000) // accepted at the edge while the hub is away
	if m, _ := edge.stored(t); m != 10000 {
		t.Fatalf("edge holds %d, want 10000", m)
	}
	hub.start(t, port) // same store, same port
	waitDrained(t, edge, hub, 10100, 30*time.Second)
	hub.check(t, edge)
	if st := b.Status(); st.Forwarded < 10100 {
		t.Errorf("forwarded %d", st.Forwarded)
	}
}

func TestHubRefusesOnceKeepsOrder(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	hub.refuse[37] = 1
	hub.refuse[500] = 2
	hub.dropReply[800] = 1 // stored, but the answer is lost: resent, deduplicated
	edge := startEdge(t, "site-1", t.TempDir())
	edge.publish(t, 1000)
	reg := prometheus.NewRegistry()
	b := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge, reg)
	runBridge(t, b)
	waitDrained(t, edge, hub, 1000, 30*time.Second)
	hub.check(t, edge)

	hub.mu.Lock()
	refused, left := hub.refused, hub.refuse[37]+hub.refuse[500]+hub.dropReply[800]
	hub.mu.Unlock()
	if left != 0 || refused < 3 {
		t.Errorf("injections left %d, refusals %d", left, refused)
	}
	st := b.Status()
	if st.Failures < 3 || st.Duplicates < 1 || !strings.Contains(st.LastError, "seq") {
		t.Errorf("status %+v: want >= 3 failures, a duplicate, the last error naming a seq", st)
	}
	if got := metric(t, reg, "warren_bridge_rewinds_total"); got < 3 {
		t.Errorf("rewinds = %v", got)
	}
}

func TestWipedEdgeStoreNewEpoch(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")

	edge1 := startEdge(t, "site-1", t.TempDir())
	b1 := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge1, nil)
	stop1 := runBridge(t, b1)
	edge1.publish(t, 300)
	waitDrained(t, edge1, hub, 300, 10*time.Second)
	stop1()
	edge1.stop()

	// A new store starts at sequence 1 again, with a new epoch.
	edge2 := startEdge(t, "site-1", t.TempDir())
	if edge2.epoch == edge1.epoch {
		t.Fatal("same epoch")
	}
	edge2.publish(t, 300)
	b2 := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge2, nil)
	runBridge(t, b2)
	waitDrained(t, edge2, hub, 600, 10*time.Second)
	hub.check(t, edge1, edge2)
	if st := b2.Status(); st.Duplicates != 0 || st.Forwarded != 300 {
		t.Errorf("second store: %+v (its events must not be taken for the old ones)", st)
	}
}

func TestDialHookFollowsHub(t *testing.T) {
	l := testPKI(t, "site-1")
	hubDir := t.TempDir()
	hub := startHub(t, l, hubDir, 0, "site-1")
	first := hub.url()
	var addr atomic.Value
	addr.Store([]string{first})
	hook := func() []string { return addr.Load().([]string) }

	edge := startEdge(t, "site-1", t.TempDir())
	// The static URL stays at the first address; only the hook knows the move.
	b := newBridge(t, bridgeConfig(l, "site-1", first), edge, nil, WithHubAddrs(hook))
	runBridge(t, b)
	edge.publish(t, 100)
	waitDrained(t, edge, hub, 100, 10*time.Second)

	hub.stop()
	hub.start(t, 0) // same store, another port
	if hub.url() == first {
		t.Skip("the hub came back on the same port by chance")
	}
	edge.publish(t, 100)
	addr.Store([]string{"nats://127.0.0.1:1", hub.url()}) // a dead address first, then the hub
	waitDrained(t, edge, hub, 200, 15*time.Second)
	hub.check(t, edge)
	if st := b.Status(); st.URL != hub.url() || st.State != StateConnected {
		t.Errorf("status %+v: want connected to %s", st, hub.url())
	}
}

func TestStaticFallbackWhenHookEmpty(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge, nil, WithHubAddrs(func() []string { return nil }))
	runBridge(t, b)
	edge.publish(t, 5)
	waitDrained(t, edge, hub, 5, 10*time.Second)
}

func TestRefusedCertificateKeepsRetrying(t *testing.T) {
	l := testPKI(t, "site-1")
	other := testPKI(t, "site-1") // another CA
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, bridgeConfig(other, "site-1", hub.url()), edge, nil)
	runBridge(t, b)
	edge.publish(t, 3)
	var st LinkStatus
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("%+v", st) }, func() bool {
		st = b.Status()
		return st.Failures >= 2 && st.LastError != ""
	})
	if st.State != StateConnecting || !strings.Contains(st.LastError, "certificate") {
		t.Errorf("status %+v: want connecting with a certificate error", st)
	}
	if m, _ := edge.stored(t); m != 3 {
		t.Errorf("edge holds %d, want 3", m)
	}
}

func TestUnknownEdgeRefused(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-2") // no user for site-1
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge, nil)
	runBridge(t, b)
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("%+v", b.Status()) }, func() bool {
		return strings.Contains(strings.ToLower(b.Status().LastError), "authorization")
	})
	if st := b.Status(); st.State == StateConnected {
		t.Errorf("connected without a hub user: %+v", st)
	}
}

func TestWrongServerNameRefused(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	cfg := bridgeConfig(l, "site-1", hub.url())
	cfg.ServerName = "not-the-hub.example"
	b := newBridge(t, cfg, edge, nil)
	runBridge(t, b)
	waitFor(t, 10*time.Second, func() string { return fmt.Sprintf("%+v", b.Status()) }, func() bool {
		return strings.Contains(b.Status().LastError, "not-the-hub.example")
	})
	if st := b.Status(); st.State == StateConnected {
		t.Errorf("connected despite the wrong server name: %+v", st)
	}
}

func TestNotConfigured(t *testing.T) {
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, DefaultConfig(), edge, nil)
	if st := b.Status(); st.State != StateNotConfigured || st.URL != "" {
		t.Errorf("status %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestRunTwice(t *testing.T) {
	l := testPKI(t, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, bridgeConfig(l, "site-1", "tls://127.0.0.1:1"), edge, nil)
	runBridge(t, b)
	waitFor(t, 5*time.Second, func() string { return "not running" }, b.running.Load)
	if err := b.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	l := testPKI(t, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	good := bridgeConfig(l, "site-1", "tls://hub.example:4222")

	cases := []struct {
		name string
		cfg  func(c *Config)
		src  Source
		opts []Option
		want string
	}{
		{name: "bad edge id", cfg: func(*Config) {}, src: &testEdge{id: "Bad.ID", js: edge.js}, want: "edge id"},
		{name: "no source", cfg: func(*Config) {}, want: "no edge source"},
		{name: "missing ca file", cfg: func(c *Config) { c.CAFile = l.Dir + "/nope.crt" }, src: edge, want: "hub.ca_file"},
		{name: "ca file is not pem", cfg: func(c *Config) { c.CAFile = l.EdgeKey("site-1") }, src: edge, want: "hub.ca_file"},
		{name: "key does not match", cfg: func(c *Config) { c.KeyFile = l.EdgeKey("ingest") }, src: edge, want: "hub.key_file"},
		{name: "invalid config", cfg: func(c *Config) { c.Batch = 0 }, src: edge, want: "hub.batch"},
		{name: "certificate of another edge", cfg: func(c *Config) { c.CertFile, c.KeyFile = l.EdgeCert("ingest"), l.EdgeKey("ingest") },
			src: edge, want: `certificate is for edge "ingest"`},
		{name: "hook without files", cfg: func(c *Config) { *c = DefaultConfig() }, src: edge,
			opts: []Option{WithHubAddrs(func() []string { return nil })}, want: "hub.ca_file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.cfg(&cfg)
			var src Source
			if c.src != nil {
				src = c.src
			}
			_, err := New(cfg, src, nil, nil, c.opts...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error about %s", err, c.want)
			}
		})
	}
	// Metrics registered twice are refused.
	reg := prometheus.NewRegistry()
	if _, err := New(good, edge, nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := New(good, edge, nil, reg); err == nil {
		t.Error("second New on the same registry succeeded")
	}
}

func TestGap(t *testing.T) {
	edge := startEdge(t, "site-1", t.TempDir())
	edge.publish(t, 5)
	ctx := context.Background()
	s, err := edge.js.Stream(ctx, "EDGE")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	b := &Bridge{}
	cases := []struct {
		next, got uint64
		gap       bool
		first     uint64
	}{
		{next: 3, got: 4, gap: false, first: 4}, // 3 was deleted (acked): no gap
		{next: 2, got: 4, gap: true, first: 2},  // 2 is stored and was skipped
		{next: 1, got: 5, gap: true, first: 1},
		{next: 6, got: 9, gap: false}, // nothing stored from 6 on
	}
	for _, c := range cases {
		first, gap := b.gap(ctx, s, c.next, c.got)
		if gap != c.gap || (c.first != 0 && first != c.first) {
			t.Errorf("gap(%d, %d) = %d, %v; want %d, %v", c.next, c.got, first, gap, c.first, c.gap)
		}
	}
}

// The consumer the bridge makes is the one the contract names.
func TestConsumerConfig(t *testing.T) {
	l := testPKI(t, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	b := newBridge(t, bridgeConfig(l, "site-1", "tls://127.0.0.1:1"), edge, nil)
	ctx := context.Background()
	c, err := b.ensureConsumer(ctx, edge.js)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cc := info.Config
	if cc.Durable != Durable || cc.FilterSubject != "ev.>" || cc.AckPolicy != jetstream.AckExplicitPolicy || cc.MaxAckPending < 65536 || cc.AckWait != 10*time.Second {
		t.Errorf("consumer config %+v", cc)
	}
	// A consumer of the same name made differently is replaced.
	if err := edge.js.DeleteConsumer(ctx, "EDGE", Durable); err != nil {
		t.Fatal(err)
	}
	if _, err := edge.js.CreateConsumer(ctx, "EDGE", incompatibleConsumer()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ensureConsumer(ctx, edge.js); err != nil {
		t.Fatalf("replacing an incompatible consumer: %v", err)
	}
	if info, err := c.Info(ctx); err != nil || info.Config.MemoryStorage {
		t.Errorf("after replacement: %+v, %v", info, err)
	}
}

func incompatibleConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       Durable,
		MemoryStorage: true, // cannot be updated
		AckPolicy:     jetstream.AckExplicitPolicy,
		FilterSubject: "ev.>",
	}
}

func TestServerNameMatchesPKI(t *testing.T) {
	if DefaultServerName != pki.DefaultServerName {
		t.Errorf("DefaultServerName %q, hub/pki uses %q", DefaultServerName, pki.DefaultServerName)
	}
}

// metric reads one counter or gauge from reg; labels are name/value pairs.
func metric(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	tb.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func TestHubStoppedMidForward(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	port := hub.port()
	edge := startEdge(t, "site-1", t.TempDir())
	edge.publish(t, 8000)
	cfg := bridgeConfig(l, "site-1", hub.url())
	b := newBridge(t, cfg, edge, nil)
	runBridge(t, b)
	for round := 1; round <= 3; round++ {
		// Stop the hub while events are in flight.
		target := uint64(round * 2000)
		waitFor(t, 20*time.Second, func() string { return fmt.Sprintf("round %d: hub holds %d", round, hub.stored(t)) },
			func() bool { return hub.stored(t) >= target })
		hub.stop()
		edge.publish(t, 1000)
		hub.start(t, port)
	}
	waitDrained(t, edge, hub, 11000, 30*time.Second)
	hub.check(t, edge)
	if st := b.Status(); st.Failures < 3 || st.BacklogMsgs != 0 || st.Forwarded < 11000 {
		t.Errorf("status %+v: want >= 3 failures, empty backlog, all forwarded", st)
	}
}

// A network path that silently stops carrying bytes: publishes time out
// instead of hanging, the dead link is noticed and dropped, connect attempts
// time out, and when the path returns everything arrives once, in order.
func TestBlackholedLink(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	proxy := startProxy(t, hub.addr())
	edge := startEdge(t, "site-1", t.TempDir())
	cfg := bridgeConfig(l, "site-1", proxy.url())
	cfg.DialTimeout = time.Second
	b := newBridge(t, cfg, edge, nil)
	runBridge(t, b)
	edge.publish(t, 300)
	waitDrained(t, edge, hub, 300, 10*time.Second)

	proxy.freeze()
	edge.publish(t, 700)
	waitFor(t, 20*time.Second, func() string { return fmt.Sprintf("%+v", b.Status()) }, func() bool {
		st := b.Status()
		return st.State == StateDisconnected && strings.Contains(st.LastError, "connect to hub")
	})
	if m, _ := edge.stored(t); m != 700 {
		t.Errorf("edge holds %d while the path is down, want 700", m)
	}
	proxy.thaw()
	waitDrained(t, edge, hub, 1000, 20*time.Second)
	hub.check(t, edge)
}
