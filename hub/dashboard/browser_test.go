package dashboard

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub/dashboard/dashtest"
	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

func mqttClientOpts(port int, src, id, user, pass string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID(id).SetUsername(user).SetPassword(pass).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if src != "" {
		o.SetDialer(&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second})
	}
	return o
}

func canBind(ip string) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// TestDashboardInBrowser fills the dashboard the way the hub does — a real
// auditor on a real nats-server with MQTT, real paho clients (logins, a
// brute force from one address, a plain connection from an untrusted one,
// a denied publish), hare login events in the HUB stream, Follow feeding
// the aggregator — then loads the page in headless Chromium and checks
// that every chart was drawn with that data, and saves a screenshot.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and a browser")
	}
	bin := dashtest.Chromium(t)
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if !canBind(ip) {
			t.Skipf("cannot bind %s here", ip)
		}
	}

	// The audit pipeline of a hub: events stored in HUB under edge "site-a".
	const edge = "site-a"
	var aud *audit.Auditor
	hs := startHubServer(t, true, func(l slog.Level, msg string) {
		if aud != nil {
			aud.NATSLogHook(l, msg)
		}
	})
	cfg := audit.DefaultConfig()
	cfg.Trusted = []string{"127.0.0.1/32"}
	cfg.PollInterval = 100 * time.Millisecond
	cfg.TrafficInterval = 200 * time.Millisecond
	cfg.AddrBruteForce = audit.BruteForce{Threshold: 10, Window: time.Minute, Block: 10 * time.Minute}
	sink := audit.JetStreamSink{JS: hs.js, Edge: edge, Subject: func(s string) string { return event.HubSubject(edge, s) }}
	a, err := audit.New(cfg, audit.Options{Sink: sink, Observer: edge, Registry: prometheus.NewRegistry(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	aud = a
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- aud.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })
	if err := aud.Attach(hs.s, hs.sys, audit.AttachOptions{Tap: hs.nc}); err != nil {
		t.Fatal(err)
	}

	agg, err := NewAggregator(DefaultAggregatorConfig())
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-3 * time.Minute)
	agg.SetFleet(func() []Edge {
		return []Edge{
			{ID: edge, Connected: true, Address: "192.0.2.10:40122", Version: "0.5.0", TLSVersion: "1.3", LastSeen: &since, BacklogMsgs: 0},
			{ID: "site-b", Connected: false, Version: "0.4.2", LastSeen: &since, BacklogMsgs: 42},
		}
	})
	runFollow(t, hs.js, agg, FollowOptions{})

	// hare logins, as the hub's ingest stores them.
	hosts := map[string]int{"vm1": 6, "vm2": 3, "jail-www": 2}
	for h, n := range hosts {
		for i := 0; i < n; i++ {
			hs.store(t, edge, event.HareTopic, event.SourceUDP, time.Now(),
				[]byte(`{"hostname":"`+h+`","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384609,"tty":"ssh","user":"jo"}`))
		}
	}
	// MQTT clients: sensors publishing, a display subscribed.
	port := hs.mqttPort
	connect := func(src, id, user, pass string) (mqtt.Client, error) {
		c := mqtt.NewClient(mqttClientOpts(port, src, id, user, pass))
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		if tok.Error() != nil {
			return nil, tok.Error()
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c, nil
	}
	display, err := connect("", "display-1", "alice", "right")
	if err != nil {
		t.Fatal(err)
	}
	if tok := display.Subscribe("sensors/#", 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	for i, n := range []int{12, 5} {
		id := "sensor-" + strconv.Itoa(i+1)
		c, err := connect("", id, "sensor", "pw")
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < n; j++ {
			c.Publish("sensors/"+id+"/temp", 0, false, "21.5").WaitTimeout(5 * time.Second)
		}
		c.Publish("secret/plans", 1, false, "x").WaitTimeout(5 * time.Second) // denied
	}
	// A plain connection from an address outside the trusted set.
	if _, err := connect("127.0.0.3", "field-unit", "alice", "right"); err != nil {
		t.Fatal(err)
	}
	// A brute force from 127.0.0.2.
	for i := 0; i < 25; i++ {
		if _, err := connect("127.0.0.2", "guess-"+strconv.Itoa(i), "alice", "nope"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}

	ctx := context.Background()
	waitFor(t, "aggregated data", func() bool {
		alerts, _ := agg.Alerts(ctx, 10)
		devs, _ := agg.TopDevices(ctx, 20)
		rules := map[string]bool{}
		for _, a := range alerts {
			rules[a.Rule] = true
		}
		var sensorIn uint64
		for _, d := range devs {
			if d.Name == edge+"/sensor-1" {
				sensorIn = d.In
			}
		}
		return rules[string(audit.RuleBruteAddr)] && rules[string(audit.RulePlain)] && sensorIn >= 12
	})

	srv := mount(New(agg, Options{Title: "warren test mesh", Refresh: time.Minute}))
	defer srv.Close()
	url := srv.URL + "/dashboard/"

	dom := dashtest.Run(t, bin, "--dump-dom", url)
	if os.Getenv("WARREN_TEST_LOG") != "" {
		t.Logf("DOM:\n%s", dom)
	}
	bodyTag := regexp.MustCompile(`<body[^>]*>`).FindString(dom)
	if b := dashtest.Attrs(bodyTag); b["data-state"] != "ready" || b["data-renders"] == "" {
		st := dashtest.Element(t, dom, "status")
		t.Fatalf("page not rendered: body %v; status element %v\n%s", b, st, dom)
	}

	// Time lines: every series with data was drawn in its own color.
	logins := dashtest.Element(t, dom, "chart-logins")
	dashtest.CheckChart(t, "chart-logins", logins, []string{"logins", "connections", "auth_failures", "alerts"},
		[]string{"logins", "connections", "auth_failures", "alerts"})
	// 11 logins, 4 connections, 10 refused logins (the other 15 fell
	// into the block and are counted there, not emitted), 2 alerts.
	if total, _ := strconv.Atoi(logins["data-total"]); total != 11+4+10+2 {
		t.Errorf("chart-logins total %d, want 27", total)
	}
	messages := dashtest.Element(t, dom, "chart-messages")
	dashtest.CheckChart(t, "chart-messages", messages, []string{"events", "publishes", "deliveries"}, []string{"events", "publishes", "deliveries"})

	// Bars: the devices and topics of the data.
	devices := dashtest.Element(t, dom, "chart-devices")
	dashtest.CheckChart(t, "chart-devices", devices, []string{"published", "delivered"}, []string{"published", "delivered"})
	labels := dashtest.List(t, devices["data-labels"])
	for _, want := range []string{edge + "/sensor-1", edge + "/sensor-2", edge + "/display-1", edge + "/vm1", edge + "/jail-www"} {
		if !dashtest.Contains(labels, want) {
			t.Errorf("device bars %v lack %s", labels, want)
		}
	}
	if labels[0] != edge+"/sensor-1" && labels[0] != edge+"/display-1" {
		t.Errorf("busiest device %q, want sensor-1 or display-1 (17 deliveries)", labels[0])
	}
	topics := dashtest.Element(t, dom, "chart-topics")
	dashtest.CheckChart(t, "chart-topics", topics, []string{"stored", "delivered"}, []string{"stored", "delivered"})
	tl := dashtest.List(t, topics["data-labels"])
	for _, want := range []string{event.HareTopic, "sensors/#"} {
		if !dashtest.Contains(tl, want) {
			t.Errorf("topic bars %v lack %s", tl, want)
		}
	}

	// Fleet and alerts tables.
	if f := dashtest.Element(t, dom, "fleet"); f["data-rows"] != "2" {
		t.Errorf("fleet rows %q, want 2", f["data-rows"])
	}
	for _, id := range []string{edge, "site-b"} {
		if !strings.Contains(dom, `data-edge="`+id+`"`) {
			t.Errorf("fleet has no row for %s", id)
		}
	}
	if n, _ := strconv.Atoi(dashtest.Element(t, dom, "alerts")["data-rows"]); n < 2 {
		t.Errorf("alert rows %d, want at least 2", n)
	}
	for _, rule := range []audit.Rule{audit.RuleBruteAddr, audit.RulePlain} {
		if !strings.Contains(dom, `data-rule="`+string(rule)+`"`) {
			t.Errorf("alerts table has no %s row", rule)
		}
	}
	if strings.Count(dom, `data-rule="`+string(audit.RuleBruteAddr)+`"`) != 1 {
		t.Errorf("25 failed logins gave more than one brute-force alert row")
	}

	// Screenshot for people.
	shot := filepath.Join(dashtest.ArtifactDir(t), "dashboard.png")
	dashtest.Run(t, bin, "--screenshot="+shot, url)
	fi, err := os.Stat(shot)
	if err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (%v bytes)", shot, err, fi)
	}
	t.Logf("dashboard screenshot: %s", shot)
}
