package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/edge"
	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/audit/audittest"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/mosqtest"
	"github.com/warren-mesh/warren/internal/promtest"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// auditEdge is an edge started the way `edge run` starts it (New, Start,
// every service's Prepare and Run), without a hub.
type auditEdge struct {
	e   *edge.Edge
	reg *prometheus.Registry
}

func startAuditEdge(t *testing.T, mod func(*edge.Config)) *auditEdge {
	t.Helper()
	dir := t.TempDir()
	cfg := edge.DefaultConfig()
	cfg.ID = "site-t"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.UDP.Listen = "127.0.0.1:0"
	cfg.UDP.RequireSigned = true
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("host1 "+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.UDP.KeysFile = keys
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = ""
	pw := filepath.Join(dir, "alice.pw")
	if err := os.WriteFile(pw, []byte("right\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.Users = []edge.UserConfig{{Name: "alice", PasswordFile: pw}}
	cfg.Audit.PollInterval = 100 * time.Millisecond
	cfg.Audit.TrafficInterval = 0
	cfg.Audit.Trusted = []string{"127.0.0.1/32"}
	cfg.Audit.AddrBruteForce = audit.BruteForce{Threshold: 5, Window: time.Minute, Block: 10 * time.Minute}
	if mod != nil {
		mod(&cfg)
	}
	logs := &syncBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	e, err := edge.New(cfg, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := &edgeEnv{Cfg: cfg, Edge: e, Logger: logger, Reg: reg}
	for _, s := range edgeServices {
		if s.Name != "audit" {
			continue // discovery and the rest are not under test here
		}
		if err := s.Prepare(env); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range edgeServices {
		if s.Name != "audit" || s.Run == nil {
			continue
		}
		wg.Go(func() {
			if err := s.Run(ctx, env); err != nil {
				t.Errorf("%s: %v", s.Name, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		e.Close()
		if t.Failed() && os.Getenv("WARREN_TEST_LOG") != "" {
			t.Logf("edge log:\n%s", logs.String())
		}
	})
	ae := &auditEdge{e: e, reg: reg}
	// Attach happens in the service goroutine: wait for its tap.
	waitUntil(t, "the audit to attach", func() bool {
		return strings.Contains(connNames(e), "warren-edge-audit-tap")
	})
	return ae
}

func connNames(e *edge.Edge) string {
	cz, err := e.Server().Connz(nil)
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range cz.Conns {
		if c.NumSubs > 0 {
			b.WriteString(c.Name + "\n")
		}
	}
	return b.String()
}

// events reads the audit events stored in the EDGE stream, checking the
// stored subject and headers the bridge forwards.
func (ae *auditEdge) wait(t *testing.T, what string, f func(audit.Event) bool) audit.Event {
	t.Helper()
	return audittest.Wait(t, what, func() []audit.Event { return ae.events(t) }, f)
}

func (ae *auditEdge) count(t *testing.T, f func(audit.Event) bool) int {
	return audittest.Count(ae.events(t), f)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	audittest.WaitUntil(t, what, cond)
}

func (ae *auditEdge) events(t *testing.T) []audit.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ae.e.JetStream().Stream(ctx, event.EdgeStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Event
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || !strings.HasPrefix(m.Subject, "ev.warren.audit.") {
			continue
		}
		ev, err := audit.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := event.EdgeSubject(ev.StoreTopic()); m.Subject != want || m.Header.Get(event.HdrSource) != event.SourceAudit ||
			m.Header.Get(event.HdrEdge) != "site-t" || m.Header.Get(event.HdrTopic) != ev.StoreTopic() {
			t.Errorf("audit event stored as %s with headers %v", m.Subject, m.Header)
		}
		out = append(out, ev)
	}
	return out
}

func mqttLogin(t *testing.T, addr, src, id, user, pass string) (mqtt.Client, error) {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	if src != "" {
		o.SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second})
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

// TestEdgeAuditReal: on an edge run as `edge run` runs it, an unsigned
// hare datagram where signed ones are required, a wrong MQTT password, a
// denied publish and a brute force each end up as audit events in the
// EDGE stream (topic warren/audit/<kind>, forwarded by the bridge like
// any event), and the block refuses the right password from the blocked
// address while others log in.
func TestEdgeAuditReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an edge")
	}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if !audittest.CanBind(ip) {
			t.Skipf("cannot bind %s here", ip)
		}
	}
	ae := startAuditEdge(t, nil)
	mqttAddr := ae.e.MQTTAddr()

	t.Run("unsigned datagram", func(t *testing.T) {
		c, err := net.Dial("udp", ae.e.UDPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := 0; i < 3; i++ {
			if _, err := c.Write([]byte(`{"tst":1795384588,"hostname":"vm","user":"jo","service":"sshd","rhost":"198.51.100.7","tty":"ssh"}`)); err != nil {
				t.Fatal(err)
			}
		}
		al := ae.wait(t, "unsigned_datagram alert", func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RuleUnsigned })
		if al.Key != "127.0.0.1" || al.Observer != "site-t" {
			t.Errorf("alert: %+v", al)
		}
		waitUntil(t, "all three counted", func() bool {
			return gaugeOf(t, ae.reg, "warren_audit_events_total", map[string]string{"kind": string(audit.KindUnsigned)}) == 3
		})
		if n := ae.count(t, func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RuleUnsigned }); n != 1 {
			t.Errorf("%d unsigned alerts, want 1 per address and cooldown", n)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		if _, err := mqttLogin(t, mqttAddr, "", "intruder", "alice", "wrong"); err == nil {
			t.Fatal("wrong password accepted")
		}
		ev := ae.wait(t, "auth failure", func(e audit.Event) bool { return e.Kind == audit.KindAuthFail && e.ClientID == "intruder" })
		if ev.User != "alice" || ev.Protocol != "mqtt" || !strings.HasPrefix(ev.Remote, "127.0.0.1:") {
			t.Errorf("auth failure: %+v", ev)
		}
	})

	t.Run("denied publish", func(t *testing.T) {
		c, err := mqttLogin(t, mqttAddr, "", "dev-1", "alice", "right")
		if err != nil {
			t.Fatal(err)
		}
		// The edge's own stream subjects (ev.>) are closed to clients.
		if tok := c.Publish("ev/forged", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		ev := ae.wait(t, "permission violation", func(e audit.Event) bool { return e.Kind == audit.KindPermission })
		if ev.ClientID != "dev-1" || ev.Topic != "ev/forged" || ev.User != "alice" {
			t.Errorf("permission violation: %+v", ev)
		}
		ae.wait(t, "connect", func(e audit.Event) bool {
			return e.Kind == audit.KindConnect && e.ClientID == "dev-1" && e.TLS == "none" && e.Listener == "mqtt"
		})
	})

	t.Run("brute force", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			if _, err := mqttLogin(t, mqttAddr, "127.0.0.2", "guess-"+strconv.Itoa(i), "alice", "guess"); err == nil {
				t.Fatal("wrong password accepted")
			}
		}
		ae.wait(t, "brute force alert", func(e audit.Event) bool {
			return e.Kind == audit.KindAlert && e.Rule == audit.RuleBruteAddr && e.Key == "127.0.0.2"
		})
		if _, err := mqttLogin(t, mqttAddr, "127.0.0.2", "lucky", "alice", "right"); err == nil {
			t.Fatal("the right password from the blocked address was accepted")
		}
		if _, err := mqttLogin(t, mqttAddr, "127.0.0.3", "legit", "alice", "right"); err != nil {
			t.Fatalf("login from 127.0.0.3 refused: %v", err)
		}
		waitUntil(t, "all attempts audited", func() bool {
			return gaugeOf(t, ae.reg, "warren_audit_auth_failures_total", nil) == 1+50+1
		})
		if n := ae.count(t, func(e audit.Event) bool { return e.Kind == audit.KindAlert && e.Rule == audit.RuleBruteAddr }); n != 1 {
			t.Errorf("%d brute-force alerts, want 1", n)
		}
	})
}

// TestEdgeFollowsMosquitto: with audit.mosquitto.log_file the edge audits
// a real mosquitto broker beside it: its connections and refused logins
// become audit events in the EDGE stream.
func TestEdgeFollowsMosquitto(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an edge and mosquitto")
	}
	mq := mosqtest.New(t, "127.0.0.1", "bob", "secret")
	port, logPath := mq.Port, mq.LogPath
	ae := startAuditEdge(t, func(c *edge.Config) {
		c.Audit.Mosquitto.LogFile = logPath
		c.Audit.Mosquitto.FromStart = true
	})
	mq.Start(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c, err := mqttLogin(t, addr, "", "mosq-dev", "bob", "secret")
	if err != nil {
		t.Fatal(err)
	}
	ev := ae.wait(t, "mosquitto connect", func(e audit.Event) bool { return e.Kind == audit.KindConnect && e.ClientID == "mosq-dev" })
	if ev.Listener != "mosquitto" || ev.User != "bob" || ev.Port != port || ev.Source != audit.SourceMosquitto || ev.Observer != "site-t" {
		t.Errorf("connect: %+v", ev)
	}
	c.Disconnect(50)
	ae.wait(t, "mosquitto disconnect", func(e audit.Event) bool { return e.Kind == audit.KindDisconnect && e.ClientID == "mosq-dev" })
	if _, err := mqttLogin(t, addr, "", "mosq-bad", "bob", "wrong"); err == nil {
		t.Fatal("wrong password accepted by mosquitto")
	}
	ae.wait(t, "mosquitto auth failure", func(e audit.Event) bool {
		return e.Kind == audit.KindAuthFail && e.Listener == "mosquitto" && strings.HasPrefix(e.Remote, "127.0.0.1:")
	})
}

func gaugeOf(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return promtest.Sum(t, reg, name, want)
}

// TestEdgeAuditReachesHub: an edge's audit alert travels the way every
// event does — EDGE stream, bridge, the hub's ingest — and is stored in
// the hub's HUB stream under the edge's id, topic warren/audit/alert/<rule>.
func TestEdgeAuditReachesHub(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and an edge")
	}
	hcfg := hub.DefaultConfig()
	hcfg.DataDir = t.TempDir()
	hcfg.NATS.Listen = "127.0.0.1:0"
	hcfg.MQTT.Listen, hcfg.MQTT.TLSListen, hcfg.Admin.Listen = "", "", ""
	hcfg.Audit.Enabled = false // the hub's own audit is not under test
	layout, err := pki.DevPKI(hcfg.PKIPath(), "site-t")
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hcfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(context.Background())
	hdone := make(chan error, 1)
	go func() { hdone <- h.Run(hctx) }()
	t.Cleanup(func() { hcancel(); <-hdone })
	select {
	case <-h.Ready():
	case err := <-hdone:
		t.Fatalf("hub: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("hub not ready")
	}

	ae := startAuditEdge(t, func(c *edge.Config) {
		c.Hub.URL = "tls://" + h.Addrs().NATS
		c.Hub.CAFile, c.Hub.CertFile, c.Hub.KeyFile = layout.CACert, layout.EdgeCert("site-t"), layout.EdgeKey("site-t")
	})
	b, err := bridge.New(ae.e.Config().Hub, ae.e, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	t.Cleanup(func() { bcancel(); <-bdone })

	c, err := net.Dial("udp", ae.e.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(`{"tst":1795384588,"hostname":"vm","user":"jo","service":"sshd","rhost":"198.51.100.7","tty":"ssh"}`)); err != nil {
		t.Fatal(err)
	}
	subj := event.HubSubjectPrefix + "site-t.warren.audit.alert.unsigned_datagram"
	waitUntil(t, "the edge's alert in the hub stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := h.JetStream().Stream(ctx, event.HubStream)
		if err != nil {
			return false
		}
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			return false
		}
		ev, err := audit.Decode(m.Data)
		if err != nil {
			t.Fatalf("stored alert: %v", err)
		}
		if ev.Rule != audit.RuleUnsigned || ev.Observer != "site-t" || m.Header.Get(event.HdrSource) != event.SourceAudit ||
			m.Header.Get(event.HdrTopic) != "warren/audit/alert/unsigned_datagram" || m.Header.Get(event.HdrMsgID) == "" {
			t.Fatalf("stored alert %+v with headers %v", ev, m.Header)
		}
		return true
	})
}
