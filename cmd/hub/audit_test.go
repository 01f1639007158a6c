package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/dashboard/dashtest"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/audit/audittest"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/promtest"
)

// auditHub is a hub started the way `hub run` starts it: hub.New, every
// registered service's Attach (notifier, audit, dashboard, ...), Run.
type auditHub struct {
	h      *hub.Hub
	cfg    hub.Config
	reg    *prometheus.Registry
	logs   *syncBuf
	alerts string // the notifier's file of audit alerts
	mqtt   int    // plain MQTT port
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startAuditHub starts a hub on loopback with MQTT users alice (password
// "right", publish anything) and sensor ("pw", publish only sensors/#),
// dev certificates for edges, and a notifier route that writes every
// audit alert to a file; mod tunes the configuration.
func startAuditHub(t *testing.T, edges []string, mod func(*hub.Config)) *auditHub {
	t.Helper()
	dir := t.TempDir()
	cfg := hub.DefaultConfig()
	cfg.DataDir = dir
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.MQTT.TLSListen = ""
	cfg.Admin.Listen = "127.0.0.1:0"
	for name, pw := range map[string]string{"alice": "right", "sensor": "pw"} {
		f := filepath.Join(dir, name+".pw")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		u := hub.MQTTUser{Name: name, PasswordFile: f}
		if name == "sensor" {
			u.Publish = []string{"sensors/#"}
		}
		cfg.MQTT.Users = append(cfg.MQTT.Users, u)
	}
	cfg.Audit.PollInterval = 100 * time.Millisecond
	cfg.Audit.TrafficInterval = 200 * time.Millisecond
	alerts := filepath.Join(dir, "alerts.log")
	cfg.Notify = map[string]any{
		// A new notifier consumer starts with new events by default; the
		// audit may store events before the notifier made its consumer.
		"delivery": map[string]any{"deliver_policy": "all"},
		"targets": map[string]any{
			"alerts": map[string]any{"type": "file", "config": map[string]any{"path": alerts}},
			"log":    map[string]any{"type": "log"},
		},
		"routes": []any{
			map[string]any{"name": "alerts", "match": map[string]any{"topic": []any{"warren/audit/alert/#"}}, "targets": []any{"alerts"}},
			map[string]any{"name": "events", "targets": []any{"log"}},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	if _, err := pki.DevPKI(cfg.PKIPath(), edges...); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	h, err := hub.New(cfg, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	env := &hubEnv{Hub: h, Cfg: cfg, Logger: logger, Reg: reg, Load: func() (hub.Config, error) { return cfg, nil }}
	for _, s := range hubServices {
		if err := s.Attach(env); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("hub run: %v\n%s", err, logs.String())
	case <-time.After(30 * time.Second):
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
		case <-time.After(20 * time.Second):
			t.Error("hub did not stop")
		}
		if t.Failed() && os.Getenv("WARREN_TEST_LOG") != "" {
			t.Logf("hub log:\n%s", logs.String())
		}
	})
	// The audit attaches in a service goroutine after Ready: wait until
	// its tap (subscribed last) is in place, so no event of the test is
	// before it.
	waitUntil(t, "the audit to attach", func() bool {
		cz, err := h.Server().Connz(&server.ConnzOptions{Subscriptions: true, Limit: 1 << 16})
		if err != nil {
			return false
		}
		for _, c := range cz.Conns {
			if c.Name == "warren-hub-audit-tap" && c.NumSubs > 0 {
				return true
			}
		}
		return false
	})
	_, p, _ := net.SplitHostPort(h.Addrs().MQTT)
	port, _ := strconv.Atoi(p)
	return &auditHub{h: h, cfg: cfg, reg: reg, logs: logs, alerts: alerts, mqtt: port}
}

// auditEvents reads the hub's own audit events from the HUB stream.
func (ah *auditHub) auditEvents(t *testing.T) []audit.Event {
	t.Helper()
	js := ah.h.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, event.HubStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prefix := event.HubSubjectPrefix + ah.h.EventID() + ".warren.audit."
	var out []audit.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(m.Subject, prefix) {
			continue
		}
		ev, err := audit.Decode(m.Data)
		if err != nil {
			t.Fatalf("stored audit event %s: %v", m.Subject, err)
		}
		if m.Header.Get(event.HdrTopic) != ev.StoreTopic() || m.Subject != prefix+strings.TrimPrefix(mustSubject(t, ev.StoreTopic()), "warren.audit.") {
			t.Errorf("event %s stored as %s with topic %q", ev.Kind, m.Subject, m.Header.Get(event.HdrTopic))
		}
		out = append(out, ev)
	}
	return out
}

func mustSubject(t *testing.T, topic string) string {
	s, err := event.TopicToSubject(topic)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitEvent polls the stream for an audit event matching f.
func (ah *auditHub) waitEvent(t *testing.T, what string, f func(audit.Event) bool) audit.Event {
	t.Helper()
	return audittest.Wait(t, what, func() []audit.Event { return ah.auditEvents(t) }, f)
}

func (ah *auditHub) count(t *testing.T, f func(audit.Event) bool) int {
	return audittest.Count(ah.auditEvents(t), f)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	audittest.WaitUntil(t, what, cond)
}

// notified returns the lines of the notifier's alert file that mention s.
func (ah *auditHub) notified(s string) []string {
	b, _ := os.ReadFile(ah.alerts)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

func needIPs(t *testing.T, ips ...string) {
	t.Helper()
	for _, ip := range ips {
		if !audittest.CanBind(ip) {
			t.Skipf("cannot bind %s here: the loopback /8 is not routed to lo", ip)
		}
	}
}

func mqttOpts(port int, src, id, user, pass string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID(id).SetUsername(user).SetPassword(pass).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	if src != "" {
		o.SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second})
	}
	return o
}

// mqttLogin connects a real paho client; the error is the broker's answer.
func mqttLogin(t *testing.T, port int, src, id, user, pass string, onLost func()) (mqtt.Client, error) {
	t.Helper()
	o := mqttOpts(port, src, id, user, pass)
	if onLost != nil {
		o.SetConnectionLostHandler(func(mqtt.Client, error) { onLost() })
	}
	c := mqtt.NewClient(o)
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

// edgeConn connects to the hub's NATS listener with edge id's dev
// certificate.
func edgeConn(t *testing.T, ah *auditHub, id string) (*nats.Conn, error) {
	t.Helper()
	l := pki.LayoutOf(ah.cfg.PKIPath())
	tc, err := pki.ClientTLSConfig(l.CACert, l.EdgeCert(id), l.EdgeKey(id))
	if err != nil {
		t.Fatal(err)
	}
	return edgeConnTLS(ah, id, tc)
}

func edgeConnTLS(ah *auditHub, id string, tc *tls.Config) (*nats.Conn, error) {
	return nats.Connect("tls://"+ah.h.Addrs().NATS, nats.Secure(tc), nats.CustomInboxPrefix("_INBOX_"+id),
		nats.Name("edge-"+id), nats.NoReconnect(), nats.Timeout(5*time.Second))
}

// TestHubAuditReal causes each audit event on a running hub with real
// clients — paho logins (good, wrong password, denied publish, client-id
// takeover, plain from an untrusted address), an edge with an unlisted
// certificate, an edge reporting an old version — and checks each is
// stored in the HUB stream under the hub's event id, topic
// warren/audit/<kind>, and that the notifier routed every alert.
func TestHubAuditReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub")
	}
	needIPs(t, "127.0.0.2")
	ah := startAuditHub(t, []string{"site-a", "ghost", "warren-hub"}, func(c *hub.Config) {
		c.Audit.Trusted = []string{"127.0.0.1/32"} // 127.0.0.2 stands for a remote address
		c.Audit.MinVersions = []string{"edge:0.4.0"}
	})
	port := ah.mqtt
	if id := ah.h.EventID(); id != "warren-hub" {
		t.Fatalf("event id %q", id)
	}

	t.Run("connect and disconnect", func(t *testing.T) {
		c, err := mqttLogin(t, port, "", "dev1", "alice", "right", nil)
		if err != nil {
			t.Fatal(err)
		}
		ev := ah.waitEvent(t, "connect", func(e audit.Event) bool { return e.Kind == audit.KindConnect && e.ClientID == "dev1" })
		if ev.User != "alice" || ev.Protocol != "mqtt" || ev.Listener != "mqtt" || ev.TLS != "none" || ev.Port != port ||
			!strings.HasPrefix(ev.Remote, "127.0.0.1:") || ev.Observer != "warren-hub" {
			t.Errorf("connect event: %+v", ev)
		}
		c.Disconnect(50)
		ev = ah.waitEvent(t, "disconnect", func(e audit.Event) bool { return e.Kind == audit.KindDisconnect && e.ClientID == "dev1" })
		if ev.Reason != "Client Closed" {
			t.Errorf("disconnect event: %+v", ev)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		if _, err := mqttLogin(t, port, "", "intruder", "alice", "wrong", nil); err == nil {
			t.Fatal("wrong password accepted")
		}
		ev := ah.waitEvent(t, "auth failure", func(e audit.Event) bool { return e.Kind == audit.KindAuthFail && e.ClientID == "intruder" })
		if ev.User != "alice" || ev.Protocol != "mqtt" || !strings.HasPrefix(ev.Remote, "127.0.0.1:") {
			t.Errorf("auth failure event: %+v", ev)
		}
	})

	t.Run("denied publish", func(t *testing.T) {
		c, err := mqttLogin(t, port, "", "sensor-9", "sensor", "pw", nil)
		if err != nil {
			t.Fatal(err)
		}
		// MQTT 3.1.1 cannot say no: the QoS 1 publish is acknowledged.
		if tok := c.Publish("secret/plans", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		ev := ah.waitEvent(t, "permission violation", func(e audit.Event) bool { return e.Kind == audit.KindPermission })
		if ev.ClientID != "sensor-9" || ev.User != "sensor" || ev.Topic != "secret/plans" || ev.Reason != "publish" {
			t.Errorf("permission event: %+v", ev)
		}
	})

	t.Run("takeover", func(t *testing.T) {
		var lost atomic.Bool
		if _, err := mqttLogin(t, port, "", "twin", "alice", "right", func() { lost.Store(true) }); err != nil {
			t.Fatal(err)
		}
		ah.waitEvent(t, "first twin", func(e audit.Event) bool { return e.Kind == audit.KindConnect && e.ClientID == "twin" })
		if _, err := mqttLogin(t, port, "", "twin", "alice", "right", nil); err != nil {
			t.Fatal(err)
		}
		ev := ah.waitEvent(t, "takeover", func(e audit.Event) bool { return e.Kind == audit.KindTakeover && e.ClientID == "twin" })
		if !strings.HasPrefix(ev.Reason, "replaced 127.0.0.1:") {
			t.Errorf("takeover event: %+v", ev)
		}
		waitUntil(t, "old twin to lose its connection", lost.Load)
	})

	t.Run("plain from an untrusted address", func(t *testing.T) {
		if _, err := mqttLogin(t, port, "127.0.0.2", "faraway", "alice", "right", nil); err != nil {
			t.Fatal(err)
		}
		ev := ah.waitEvent(t, "plain_remote alert", func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RulePlain })
		if ev.Key != "127.0.0.2" || ev.ClientID != "faraway" || ev.TLS != "none" {
			t.Errorf("alert: %+v", ev)
		}
		waitUntil(t, "plain_remote notification", func() bool { return len(ah.notified(string(audit.RulePlain))) == 1 })
	})

	t.Run("unlisted edge", func(t *testing.T) {
		l := pki.LayoutOf(ah.cfg.PKIPath())
		tc, err := pki.ClientTLSConfig(l.CACert, l.EdgeCert("ghost"), l.EdgeKey("ghost"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(l.EdgeCert("ghost")); err != nil { // the hub no longer lists it
			t.Fatal(err)
		}
		if nc, err := edgeConnTLS(ah, "ghost", tc); err == nil {
			nc.Close()
			t.Fatal("unlisted edge accepted")
		}
		ev := ah.waitEvent(t, "unknown_edge alert", func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RuleUnknown })
		if ev.Edge != "ghost" || !strings.Contains(ev.Message, "unlisted-edge") || !strings.HasPrefix(ev.Remote, "127.0.0.1:") {
			t.Errorf("alert: %+v", ev)
		}
		ev = ah.waitEvent(t, "unknown_edge event", func(e audit.Event) bool { return e.Kind == audit.KindUnknown })
		if ev.Edge != "ghost" || ev.Reason != "unlisted-edge" {
			t.Errorf("unknown_edge event: %+v", ev)
		}
		waitUntil(t, "unknown_edge notification", func() bool { return len(ah.notified(`"ghost"`)) == 1 })
	})

	t.Run("edge named like the hub", func(t *testing.T) {
		if nc, err := edgeConn(t, ah, "warren-hub"); err == nil {
			nc.Close()
			t.Fatal("an edge with the hub's event id was accepted")
		}
		ev := ah.waitEvent(t, "unknown_edge event", func(e audit.Event) bool { return e.Kind == audit.KindUnknown && e.Edge == "warren-hub" })
		if ev.Reason != "bad-edge-identity" {
			t.Errorf("unknown_edge event: %+v", ev)
		}
	})

	t.Run("old edge version", func(t *testing.T) {
		nc, err := edgeConn(t, ah, "site-a")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		hb, _ := json.Marshal(hub.Heartbeat{ID: "site-a", Version: "0.3.9", Epoch: "e1", Started: time.Now()})
		if _, err := nc.Request(event.IngestSubject("site-a", hub.StatusSubjectRest), hb, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		ev := ah.waitEvent(t, "old_version alert", func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RuleOldVersion })
		if ev.Edge != "site-a" || ev.Version != "0.3.9" {
			t.Errorf("alert: %+v", ev)
		}
		ah.waitEvent(t, "version event", func(e audit.Event) bool { return e.Kind == audit.KindVersion && e.Edge == "site-a" })
		// The edge's TLS connection was audited as such.
		c := ah.waitEvent(t, "edge connect", func(e audit.Event) bool {
			return e.Kind == audit.KindConnect && e.Protocol == "nats" && e.User == pki.EdgeUserName("site-a")
		})
		if c.TLS != "1.3" || c.Listener != "nats" {
			t.Errorf("edge connect: %+v", c)
		}
		waitUntil(t, "old_version notification", func() bool { return len(ah.notified(string(audit.RuleOldVersion))) == 1 })
	})

	t.Run("edge store full", func(t *testing.T) {
		// The edge cannot store an event about its full store; its
		// heartbeat carries the count and the hub raises the alert.
		nc, err := edgeConn(t, ah, "site-a")
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		hb, _ := json.Marshal(hub.Heartbeat{ID: "site-a", Version: "0.5.0", Epoch: "e1", Started: time.Now(), StoreFull: 7})
		if _, err := nc.Request(event.IngestSubject("site-a", hub.StatusSubjectRest), hb, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		ev := ah.waitEvent(t, "edge_store_full alert", func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RuleStoreFull })
		if ev.Key != "site-a" || ev.Severity != audit.SeverityCritical {
			t.Errorf("alert: %+v", ev)
		}
		ah.waitEvent(t, "store_full event", func(e audit.Event) bool { return e.Kind == audit.KindStoreFull && e.Edge == "site-a" && e.Count == 7 })
	})

	t.Run("metrics", func(t *testing.T) {
		if v := gauge(t, ah.reg, "warren_audit_alerts_total", map[string]string{"rule": string(audit.RulePlain)}); v != 1 {
			t.Errorf("alerts_total{plain_remote} = %v", v)
		}
		if v := gauge(t, ah.reg, "warren_audit_connections_total", map[string]string{"listener": "nats", "tls": "1.3"}); v < 1 {
			t.Errorf("connections_total{nats,1.3} = %v", v)
		}
		if v := gauge(t, ah.reg, "warren_notify_sent_total", map[string]string{"target": "alerts"}); v < 3 {
			t.Errorf("warren_notify_sent_total{alerts} = %v, want 3", v)
		}
	})
}

// TestHubBruteForceReal: 1,000 wrong passwords from one address make the
// hub refuse that address (even with the right password), raise one
// alert and send one notification, and leave other addresses alone.
func TestHubBruteForceReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and 1,000 logins")
	}
	needIPs(t, "127.0.0.2", "127.0.0.3")
	ah := startAuditHub(t, nil, func(c *hub.Config) {
		c.Audit.AddrBruteForce = audit.BruteForce{Threshold: 10, Window: time.Minute, Block: 10 * time.Minute}
	})
	port := ah.mqtt
	const attempts = 1000
	var wg sync.WaitGroup
	var accepted atomic.Int32
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := mqtt.NewClient(mqttOpts(port, "127.0.0.2", "guess"+strconv.Itoa(i), "alice", "guess"+strconv.Itoa(i)))
				tok := c.Connect()
				tok.WaitTimeout(10 * time.Second)
				if tok.Error() == nil {
					accepted.Add(1)
					c.Disconnect(0)
				}
			}
		}()
	}
	for i := 0; i < attempts; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if accepted.Load() != 0 {
		t.Fatalf("%d wrong passwords accepted", accepted.Load())
	}
	waitUntil(t, "all failures audited", func() bool {
		return gauge(t, ah.reg, "warren_audit_auth_failures_total", nil) >= attempts
	})
	if v := gauge(t, ah.reg, "warren_audit_auth_failures_total", nil); v != attempts {
		t.Errorf("warren_audit_auth_failures_total = %v, want %d", v, attempts)
	}

	// The block refuses logins from 127.0.0.2, even with the password.
	if _, err := mqttLogin(t, port, "127.0.0.2", "lucky", "alice", "right", nil); err == nil {
		t.Fatal("blocked address logged in with the right password")
	}
	// The block starts when the auditor has seen the 10th failure; the
	// few attempts in flight meanwhile are refused for their password.
	blocked := gauge(t, ah.reg, "hub_refused_connections_total", map[string]string{"reason": "blocked"})
	badLogin := gauge(t, ah.reg, "hub_refused_connections_total", map[string]string{"reason": "bad-login"})
	if blocked < attempts/2 || blocked+badLogin != attempts+1 {
		t.Errorf("hub_refused_connections_total: blocked %v, bad-login %v; want most of the %d (and the right password) blocked", blocked, badLogin, attempts)
	}
	// Other addresses are unaffected.
	good, err := mqttLogin(t, port, "127.0.0.3", "legit", "alice", "right", nil)
	if err != nil {
		t.Fatalf("login from 127.0.0.3 refused: %v", err)
	}
	if tok := good.Publish("sensors/ok", 1, false, "1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("legitimate client cannot publish: %v", tok.Error())
	}
	if _, err := mqttLogin(t, port, "", "local", "alice", "right", nil); err != nil {
		t.Fatalf("login from 127.0.0.1 refused: %v", err)
	}

	// One alert, one notification.
	al := ah.waitEvent(t, "brute force alert", func(e audit.Event) bool { return e.Kind == audit.KindAlert })
	if al.Rule != audit.RuleBruteAddr || al.Key != "127.0.0.2" || al.Until == nil {
		t.Errorf("alert: %+v", al)
	}
	waitUntil(t, "the notification", func() bool { return len(ah.notified(string(audit.RuleBruteAddr))) >= 1 })
	// Give a second alert or notification, if there were one, the time the
	// first took to arrive; then count.
	waitUntil(t, "the auditor's queue to drain", func() bool {
		return gauge(t, ah.reg, "warren_notify_sent_total", map[string]string{"target": "alerts"}) >= 1
	})
	if n := ah.count(t, func(e audit.Event) bool { return e.Kind == audit.KindAlert }); n != 1 {
		t.Errorf("%d alerts stored, want exactly 1", n)
	}
	if n := ah.count(t, func(e audit.Event) bool { return e.Kind == audit.KindAuthFail }); n != 10 {
		t.Errorf("%d auth_failure events stored, want 10 (the rest are counted in the block)", n)
	}
	if l := ah.notified(""); len(l) != 2 || l[1] != "" { // one line and the final newline
		t.Errorf("%d notification lines, want 1:\n%s", len(l)-1, strings.Join(l, "\n"))
	}
	if bl := ah.h.Status(); bl.ServerName == "" {
		t.Error("status empty")
	}
}

// gauge sums the samples of name whose labels include want.
func gauge(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return promtest.Sum(t, reg, name, want)
}

// TestDashboardOnRunningHub loads the dashboard from a running hub's
// admin listener in headless Chromium, after real traffic: an edge
// forwarding hare logins through the ingest, paho clients publishing and
// subscribing, a denied publish, a plain login from an untrusted address
// and a brute force. It checks every chart was drawn from that data and
// saves a screenshot (in $WARREN_ARTIFACTS when set).
func TestDashboardOnRunningHub(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and a browser")
	}
	bin := dashtest.Chromium(t)
	needIPs(t, "127.0.0.2", "127.0.0.3")
	ah := startAuditHub(t, []string{"site-a"}, func(c *hub.Config) {
		c.Audit.Trusted = []string{"127.0.0.1/32"}
		c.Dashboard.Title = "warren test hub"
	})
	port := ah.mqtt

	// An edge forwards hare logins the way the bridge does.
	nc, err := edgeConn(t, ah, "site-a")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hb, _ := json.Marshal(hub.Heartbeat{ID: "site-a", Version: "0.5.0", Epoch: "e1", Started: time.Now()})
	if _, err := nc.Request(event.IngestSubject("site-a", hub.StatusSubjectRest), hb, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	for host, n := range map[string]int{"vm1": 6, "vm2": 3, "jail-www": 2} {
		for i := 0; i < n; i++ {
			seq++
			m := nats.NewMsg(event.IngestSubject("site-a", "logging.hare"))
			m.Data = []byte(`{"hostname":"` + host + `","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384609,"tty":"ssh","user":"jo"}`)
			m.Header.Set(jetstream.MsgIDHeader, event.MsgID("site-a", "e1", seq))
			m.Header.Set(event.HdrSource, event.SourceUDP)
			m.Header.Set(event.HdrTopic, event.HareTopic)
			m.Header.Set(event.HdrReceived, time.Now().UTC().Format(time.RFC3339Nano))
			r, err := nc.RequestMsg(m, 5*time.Second)
			if err != nil || bytes.Contains(r.Data, []byte(`"error"`)) {
				t.Fatalf("store event %d: %v %s", seq, err, r.Data)
			}
		}
	}
	// MQTT clients: a display subscribed, sensors publishing.
	display, err := mqttLogin(t, port, "", "display-1", "alice", "right", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok := display.Subscribe("sensors/#", 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	for i, n := range []int{12, 5} {
		id := "sensor-" + strconv.Itoa(i+1)
		c, err := mqttLogin(t, port, "", id, "sensor", "pw", nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < n; j++ {
			c.Publish("sensors/"+id+"/temp", 0, false, "21.5").WaitTimeout(5 * time.Second)
		}
		c.Publish("secret/plans", 1, false, "x").WaitTimeout(5 * time.Second) // denied
	}
	if _, err := mqttLogin(t, port, "127.0.0.3", "field-unit", "alice", "right", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if _, err := mqttLogin(t, port, "127.0.0.2", "guess-"+strconv.Itoa(i), "alice", "nope", nil); err == nil {
			t.Fatal("wrong password accepted")
		}
	}

	base := "http://" + ah.h.Addrs().Admin + ah.cfg.Dashboard.Path
	var snap struct {
		Devices []struct {
			Name string `json:"name"`
			In   uint64 `json:"in"`
		} `json:"devices"`
		Alerts []struct {
			Rule string `json:"rule"`
		} `json:"alerts"`
	}
	waitUntil(t, "the dashboard's data", func() bool {
		if err := getJSON(base+"api/snapshot", &snap); err != nil {
			return false
		}
		rules := map[string]bool{}
		for _, a := range snap.Alerts {
			rules[a.Rule] = true
		}
		var sensor uint64
		for _, d := range snap.Devices {
			if d.Name == "warren-hub/sensor-1" {
				sensor = d.In
			}
		}
		return rules[string(audit.RuleBruteAddr)] && rules[string(audit.RulePlain)] && sensor >= 12
	})

	dom := dashtest.Run(t, bin, "--dump-dom", base)
	if b := dashtest.Body(dom); b["data-state"] != "ready" || b["data-renders"] == "" {
		t.Fatalf("page not rendered: body %v\n%s", b, dom)
	}
	if !strings.Contains(dom, "warren test hub") {
		t.Error("page title missing")
	}
	dashtest.CheckChart(t, "chart-logins", dashtest.Element(t, dom, "chart-logins"),
		[]string{"logins", "connections", "auth_failures", "alerts"}, []string{"logins", "connections", "auth_failures", "alerts"})
	dashtest.CheckChart(t, "chart-messages", dashtest.Element(t, dom, "chart-messages"),
		[]string{"events", "publishes", "deliveries"}, []string{"events", "publishes", "deliveries"})
	devices := dashtest.Element(t, dom, "chart-devices")
	dashtest.CheckChart(t, "chart-devices", devices, []string{"published", "delivered"}, []string{"published", "delivered"})
	labels := dashtest.List(t, devices["data-labels"])
	for _, want := range []string{"warren-hub/sensor-1", "warren-hub/display-1", "site-a/vm1", "site-a/jail-www"} {
		if !dashtest.Contains(labels, want) {
			t.Errorf("device bars %v lack %s", labels, want)
		}
	}
	topics := dashtest.Element(t, dom, "chart-topics")
	dashtest.CheckChart(t, "chart-topics", topics, []string{"stored", "delivered"}, []string{"stored", "delivered"})
	if tl := dashtest.List(t, topics["data-labels"]); !dashtest.Contains(tl, event.HareTopic) || !dashtest.Contains(tl, "sensors/#") {
		t.Errorf("topic bars %v lack logging/hare or sensors/#", tl)
	}
	// The fleet is the hub's edge list: site-a, with the heartbeat's version.
	if f := dashtest.Element(t, dom, "fleet"); f["data-rows"] != "1" {
		t.Errorf("fleet rows %q, want 1 (site-a; the hub itself is not an edge)", f["data-rows"])
	}
	if !strings.Contains(dom, `data-edge="site-a"`) || !strings.Contains(dom, "0.5.0") {
		t.Error("fleet lacks site-a with version 0.5.0")
	}
	for _, rule := range []audit.Rule{audit.RuleBruteAddr, audit.RulePlain} {
		if n := strings.Count(dom, `data-rule="`+string(rule)+`"`); n != 1 {
			t.Errorf("%d alert rows of %s, want 1", n, rule)
		}
	}

	shot := filepath.Join(dashtest.ArtifactDir(t), "dashboard-hub.png")
	dashtest.Run(t, bin, "--screenshot="+shot, base)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("dashboard screenshot: %s", shot)
}

func getJSON(url string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
