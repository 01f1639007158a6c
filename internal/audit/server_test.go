package audit

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestAuditEventsReal causes each audit event for real against an
// embedded nats-server with its MQTT gateway: logins, a wrong password, a
// denied publish, a client-id takeover, a disconnect, a plain connection
// from an untrusted address and an old client version.
func TestAuditEventsReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	needLoopbackAlias(t, "127.0.0.2")
	ts := startAudited(t, func(c *Config) {
		// Only 127.0.0.1 is trusted, so 127.0.0.2 stands for a remote
		// address without leaving the loopback interface.
		c.Trusted = []string{"127.0.0.1/32"}
		c.MinVersions = []string{"go:99.0.0"}
	})
	port := ts.mqttPort
	sink := ts.sink

	t.Run("connect", func(t *testing.T) {
		c, err := mqttConnect(t, port, mqttOpts{id: "dev1", user: "alice", pass: "right"})
		if err != nil {
			t.Fatal(err)
		}
		ev := sink.waitEvent(t, "connect of dev1", func(e Event) bool { return e.Kind == KindConnect && e.ClientID == "dev1" })
		if ev.User != "alice" || ev.Protocol != "mqtt" || ev.Listener != "mqtt" || ev.Port != port || ev.TLS != "none" ||
			!strings.HasPrefix(ev.Remote, "127.0.0.1:") || ev.Account != "APP" || ev.Observer != "test-edge" || ev.CID == 0 {
			t.Errorf("connect event: %+v", ev)
		}
		if tok := c.Publish("sensors/t1", 1, false, "21.5"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		c.Disconnect(100)
		ev = sink.waitEvent(t, "disconnect of dev1", func(e Event) bool { return e.Kind == KindDisconnect && e.ClientID == "dev1" })
		if ev.Reason != "Client Closed" || ev.User != "alice" {
			t.Errorf("disconnect event: %+v", ev)
		}
		if _, ok := sink.find(func(e Event) bool { return e.Kind == KindAlert }); ok {
			t.Errorf("a loopback login raised an alert:\n%s", sink.dump())
		}
	})

	t.Run("bad password", func(t *testing.T) {
		_, err := mqttConnect(t, port, mqttOpts{id: "intruder", user: "alice", pass: "wrong"})
		if err == nil {
			t.Fatal("wrong password accepted")
		}
		ev := sink.waitEvent(t, "auth failure", func(e Event) bool { return e.Kind == KindAuthFail && e.ClientID == "intruder" })
		if ev.User != "alice" || ev.Protocol != "mqtt" || !strings.HasPrefix(ev.Remote, "127.0.0.1:") || ev.Remote == "127.0.0.1:0" ||
			ev.Reason != "Authentication Failure" || ev.Port != port {
			t.Errorf("auth failure event: %+v", ev)
		}
		if _, ok := sink.find(func(e Event) bool { return e.Kind == KindDisconnect && e.ClientID == "intruder" }); ok {
			t.Error("refused login also reported as a disconnect")
		}
	})

	t.Run("denied publish", func(t *testing.T) {
		c, err := mqttConnect(t, port, mqttOpts{id: "sensor9", user: "limited", pass: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		// MQTT 3.1.1 has no way to say no: the QoS 1 publish is acknowledged.
		if tok := c.Publish("secret/plans", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		ev := sink.waitEvent(t, "permission violation", func(e Event) bool { return e.Kind == KindPermission })
		if ev.ClientID != "sensor9" || ev.User != "limited" || ev.Subject != "secret.plans" || ev.Topic != "secret/plans" ||
			ev.Reason != "publish" || ev.Protocol != "mqtt" || ev.Port != port {
			t.Errorf("permission event: %+v", ev)
		}
	})

	t.Run("takeover", func(t *testing.T) {
		var lost atomic.Bool
		if _, err := mqttConnect(t, port, mqttOpts{id: "twin", user: "alice", pass: "right", onLost: func() { lost.Store(true) }}); err != nil {
			t.Fatal(err)
		}
		sink.waitEvent(t, "first twin", func(e Event) bool { return e.Kind == KindConnect && e.ClientID == "twin" })
		if _, err := mqttConnect(t, port, mqttOpts{id: "twin", user: "alice", pass: "right"}); err != nil {
			t.Fatal(err)
		}
		ev := sink.waitEvent(t, "takeover", func(e Event) bool { return e.Kind == KindTakeover && e.ClientID == "twin" })
		if !strings.HasPrefix(ev.Reason, "replaced 127.0.0.1:") || ev.User != "alice" {
			t.Errorf("takeover event: %+v", ev)
		}
		sink.waitEvent(t, "old twin's disconnect", func(e Event) bool {
			return e.Kind == KindDisconnect && e.ClientID == "twin" && e.Reason == "Duplicate Client ID"
		})
		waitFor(t, "old twin to notice", lost.Load)
	})

	t.Run("plain from untrusted address", func(t *testing.T) {
		if _, err := mqttConnect(t, port, mqttOpts{src: "127.0.0.2", id: "faraway", user: "alice", pass: "right"}); err != nil {
			t.Fatal(err)
		}
		ev := sink.waitEvent(t, "plain_remote alert", func(e Event) bool { return e.Kind == KindAlert && e.Rule == RulePlain })
		if ev.Key != "127.0.0.2" || ev.ClientID != "faraway" || ev.TLS != "none" || ev.Severity != SeverityWarning ||
			ev.StoreTopic() != "warren/audit/alert/plain_remote" {
			t.Errorf("alert: %+v", ev)
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindAlert && e.Rule == RulePlain }); n != 1 {
			t.Errorf("%d plain alerts, want 1:\n%s", n, sink.dump())
		}
	})

	t.Run("old nats client", func(t *testing.T) {
		nc, err := nats.Connect(ts.s.ClientURL(), nats.UserInfo("alice", "right"), nats.Name("reporter"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ev := sink.waitEvent(t, "old_version alert", func(e Event) bool { return e.Kind == KindAlert && e.Rule == RuleOldVersion })
		if ev.Lang != "go" || ev.Version != nats.Version || ev.ClientID != "reporter" {
			t.Errorf("alert: %+v", ev)
		}
		c := sink.waitEvent(t, "nats connect", func(e Event) bool { return e.Kind == KindConnect && e.ClientID == "reporter" })
		if c.Protocol != "nats" || c.Lang != "go" || c.Version != nats.Version || c.TLS != "none" {
			t.Errorf("nats connect: %+v", c)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		reg := ts.reg
		if v := metricValue(t, reg, "warren_audit_connections_total", map[string]string{"listener": "mqtt", "tls": "none"}); v < 4 {
			t.Errorf("mqtt connections_total = %v, want at least 4", v)
		}
		if v := metricValue(t, reg, "warren_audit_auth_failures_total", map[string]string{"listener": "mqtt"}); v != 1 {
			t.Errorf("auth_failures_total = %v, want 1", v)
		}
		if v := metricValue(t, reg, "warren_audit_alerts_total", map[string]string{"rule": string(RulePlain)}); v != 1 {
			t.Errorf("alerts_total{plain_remote} = %v, want 1", v)
		}
		// dev1 published one message before leaving: counted per client
		// (from its final counters) and per topic (by the tap).
		waitFor(t, "per-client count", func() bool {
			return metricValue(t, reg, "warren_audit_client_messages_total", map[string]string{"client": "dev1", "direction": DirPublish}) == 1
		})
		waitFor(t, "per-topic count", func() bool {
			return metricValue(t, reg, "warren_audit_topic_messages_total", map[string]string{"topic": "sensors/t1", "direction": DirPublish}) == 1
		})
		if v := metricValue(t, reg, "warren_audit_topic_messages_total", map[string]string{"topic": "secret/plans"}); v != 0 {
			t.Errorf("a denied publish was counted on its topic: %v", v)
		}
		open := map[string]string{"listener": "mqtt", "tls": "none"}
		// Every earlier subtest closed its MQTT clients in its cleanup,
		// but the server and the auditor may still be handling those
		// closes: wait until both agree none is left before taking the
		// baseline, or a late disconnect moves the gauge under us.
		waitFor(t, "earlier MQTT clients gone", func() bool {
			return ts.openConns("mqtt") == 0 && metricValue(t, reg, "warren_audit_connections", open) == 0
		})
		before := metricValue(t, reg, "warren_audit_connections", open)
		c, err := mqttConnect(t, port, mqttOpts{id: "gauge", user: "alice", pass: "right"})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "open connections gauge up", func() bool { return metricValue(t, reg, "warren_audit_connections", open) == before+1 })
		c.Disconnect(50)
		waitFor(t, "open connections gauge down", func() bool { return metricValue(t, reg, "warren_audit_connections", open) == before })
	})

	t.Run("deliveries and traffic", func(t *testing.T) {
		sub, err := mqttConnect(t, port, mqttOpts{id: "display", user: "alice", pass: "right"})
		if err != nil {
			t.Fatal(err)
		}
		var got atomic.Int32
		if tok := sub.Subscribe("sensors/#", 0, func(_ mqttClient, _ mqttMessage) { got.Add(1) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		pub, err := mqttConnect(t, port, mqttOpts{id: "thermo", user: "alice", pass: "right"})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			pub.Publish("sensors/t2", 0, false, "x").WaitTimeout(5 * time.Second)
		}
		waitFor(t, "deliveries", func() bool { return got.Load() == 5 })
		reg := ts.reg
		waitFor(t, "delivery counts", func() bool {
			return metricValue(t, reg, "warren_audit_client_messages_total", map[string]string{"client": "display", "direction": DirDeliver}) == 5 &&
				metricValue(t, reg, "warren_audit_topic_messages_total", map[string]string{"topic": "sensors/#", "direction": DirDeliver}) == 5 &&
				metricValue(t, reg, "warren_audit_client_messages_total", map[string]string{"client": "thermo", "direction": DirPublish}) == 5
		})
		tr := sink.waitEvent(t, "traffic event with thermo", func(e Event) bool {
			if e.Kind != KindTraffic {
				return false
			}
			for _, c := range e.Clients {
				if c.Name == "thermo" && c.In > 0 {
					return true
				}
			}
			return false
		})
		if tr.StoreTopic() != "warren/audit/traffic" {
			t.Errorf("traffic topic %q", tr.StoreTopic())
		}
	})
}

// TestBruteForceReal: 1,000 failed logins from one address block it and
// raise one alert; legitimate clients from other addresses are unaffected,
// a correct login from the blocked address is closed.
func TestBruteForceReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and 1,000 logins")
	}
	needLoopbackAlias(t, "127.0.0.2", "127.0.0.3")
	ts := startAudited(t, func(c *Config) {
		c.AddrBruteForce = BruteForce{Threshold: 10, Window: time.Minute, Block: 10 * time.Minute}
	})
	port := ts.mqttPort
	const attempts = 1000
	var wg sync.WaitGroup
	var accepted atomic.Int32
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := mqttNewClient(port, mqttOpts{src: "127.0.0.2", id: "guess" + strconv.Itoa(i), user: "alice", pass: "guess" + strconv.Itoa(i)})
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
	waitFor(t, "all failures processed", func() bool {
		return metricValue(t, ts.reg, "warren_audit_auth_failures_total", nil) == attempts
	})
	if !ts.aud.Blocked("127.0.0.2") {
		t.Fatal("127.0.0.2 not blocked")
	}
	if ts.aud.Blocked("127.0.0.3") || ts.aud.Blocked("127.0.0.1") {
		t.Fatal("other addresses blocked")
	}

	// A legitimate client from another address logs in and stays.
	var goodLost atomic.Bool
	good, err := mqttConnect(t, port, mqttOpts{src: "127.0.0.3", id: "legit", user: "alice", pass: "right", onLost: func() { goodLost.Store(true) }})
	if err != nil {
		t.Fatalf("legitimate client from 127.0.0.3 refused: %v", err)
	}
	// The right password from the blocked address is closed by the auditor.
	var badLost atomic.Bool
	if _, err := mqttConnect(t, port, mqttOpts{src: "127.0.0.2", id: "lucky", user: "alice", pass: "right", onLost: func() { badLost.Store(true) }}); err == nil {
		waitFor(t, "blocked login closed", badLost.Load)
	}
	ts.sink.waitEvent(t, "disconnect of the blocked login", func(e Event) bool {
		return e.Kind == KindDisconnect && e.ClientID == "lucky" && strings.Contains(e.Reason, "blocked")
	})
	// The legitimate client still works after the blocked one was handled.
	if tok := good.Publish("sensors/ok", 1, false, "1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("legitimate client cannot publish: %v", tok.Error())
	}
	if goodLost.Load() || !good.IsConnectionOpen() {
		t.Fatal("legitimate client lost its connection")
	}

	sink := ts.sink
	if n := sink.count(func(e Event) bool { return e.Kind == KindAlert }); n != 1 {
		t.Errorf("%d alerts, want exactly 1:\n%s", n, sink.dump())
	}
	al, _ := sink.find(func(e Event) bool { return e.Kind == KindAlert })
	if al.Rule != RuleBruteAddr || al.Key != "127.0.0.2" || al.Until == nil || al.Severity != SeverityCritical {
		t.Errorf("alert: %+v", al)
	}
	if n := sink.count(func(e Event) bool { return e.Kind == KindAuthFail }); n != 10 {
		t.Errorf("%d auth_failure events emitted, want 10 (the rest are counted in the block)", n)
	}
	if v := metricValue(t, ts.reg, "warren_audit_blocked", map[string]string{"scope": ScopeAddr}); v != 1 {
		t.Errorf("warren_audit_blocked{addr} = %v", v)
	}
	bl := ts.aud.Blocks()
	if len(bl) != 1 || bl[0].Key != "127.0.0.2" || bl[0].Suppressed < attempts-10 {
		t.Errorf("blocks: %+v", bl)
	}
}

// TestBlockLiftsReal: a short block lifts itself and the address can log
// in again.
func TestBlockLiftsReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	needLoopbackAlias(t, "127.0.0.4")
	ts := startAudited(t, func(c *Config) {
		c.AddrBruteForce = BruteForce{Threshold: 3, Window: time.Minute, Block: 1500 * time.Millisecond}
	})
	for i := 0; i < 3; i++ {
		if _, err := mqttConnect(t, ts.mqttPort, mqttOpts{src: "127.0.0.4", id: "g" + strconv.Itoa(i), user: "alice", pass: "no"}); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	waitFor(t, "block", func() bool { return ts.aud.Blocked("127.0.0.4") })
	ts.sink.waitEvent(t, "unblock event", func(e Event) bool { return e.Kind == KindUnblock && e.Key == "127.0.0.4" })
	if ts.aud.Blocked("127.0.0.4") {
		t.Fatal("still blocked after the unblock event")
	}
	var lost atomic.Bool
	c, err := mqttConnect(t, ts.mqttPort, mqttOpts{src: "127.0.0.4", id: "back", user: "alice", pass: "right", onLost: func() { lost.Store(true) }})
	if err != nil {
		t.Fatal(err)
	}
	ts.sink.waitEvent(t, "connect after unblock", func(e Event) bool { return e.Kind == KindConnect && e.ClientID == "back" })
	if tok := c.Publish("x/y", 1, false, "1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || lost.Load() {
		t.Fatalf("client after unblock: %v lost=%v", tok.Error(), lost.Load())
	}
}

// TestStaleConnectionList: nats-server sends a connection's disconnect
// event before it drops the connection from its list, so a poll can read
// a list that still has a connection the auditor already saw leave. The
// poll must neither bring it back (the open-connections gauge would stay
// up until two more polls) nor count its messages a second time.
func TestStaleConnectionList(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	// No periodic polls: the test polls by hand.
	ts := startAudited(t, func(c *Config) { c.PollInterval = time.Hour; c.TrafficInterval = 0 })
	reg := ts.reg
	c, err := mqttConnect(t, ts.mqttPort, mqttOpts{id: "stale", user: "alice", pass: "right"})
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish("sensors/s", 1, false, "1"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	ev := ts.sink.waitEvent(t, "connect of stale", func(e Event) bool { return e.Kind == KindConnect && e.ClientID == "stale" })
	open := map[string]string{"listener": "mqtt", "tls": "none"}
	waitFor(t, "gauge up", func() bool { return metricValue(t, reg, "warren_audit_connections", open) == 1 })

	// The disconnect event as nats-server sends it, while the server
	// still lists the connection (here: because it is still open).
	var m server.DisconnectEventMsg
	m.Time = time.Now().UTC()
	m.Client = server.ClientInfo{ID: ev.CID, Host: "127.0.0.1", Account: "APP", User: "alice", MQTTClient: "stale", ClientType: "mqtt"}
	m.Sent.Msgs = 1
	m.Reason = "Client Closed"
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ts.aud.enqueue(input{kind: inDisconnect, data: data})
	ts.sink.waitEvent(t, "disconnect of stale", func(e Event) bool { return e.Kind == KindDisconnect && e.ClientID == "stale" })
	waitFor(t, "gauge down", func() bool { return metricValue(t, reg, "warren_audit_connections", open) == 0 })
	if n := ts.openConns("mqtt"); n != 1 {
		t.Fatalf("server lists %d MQTT connections, want the stale one", n)
	}
	clientMsgs := map[string]string{"client": "stale", "direction": DirPublish}
	if v := metricValue(t, reg, "warren_audit_client_messages_total", clientMsgs); v != 1 {
		t.Fatalf("client messages after disconnect = %v, want 1", v)
	}

	ts.aud.poll()
	if v := metricValue(t, reg, "warren_audit_connections", open); v != 0 {
		t.Errorf("a poll of a stale list brought the closed connection back: gauge %v", v)
	}
	if v := metricValue(t, reg, "warren_audit_client_messages_total", clientMsgs); v != 1 {
		t.Errorf("a poll of a stale list counted the closed connection's messages again: %v", v)
	}
}
