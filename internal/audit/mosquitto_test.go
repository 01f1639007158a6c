package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/internal/mosqlog"
	"github.com/warren-mesh/warren/internal/mosqtest"
)

// convertFile runs a captured mosquitto log through the converter.
func convertFile(t *testing.T, path string, o MosquittoOptions) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := newMosqConverter(o)
	var out []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if r, ok := mosqlog.Parse(sc.Text(), time.UTC); ok {
			out = append(out, c.convert(r, t0)...)
		}
	}
	return out
}

type mosqSummary struct {
	Kind     Kind
	Remote   string
	Port     int
	ClientID string
	User     string
	TLS      string
	Reason   string
	Version  string
}

func summarize(evs []Event) []mosqSummary {
	out := make([]mosqSummary, len(evs))
	for i, e := range evs {
		out[i] = mosqSummary{e.Kind, e.Remote, e.Port, e.ClientID, e.User, e.TLS, e.Reason, e.Version}
	}
	return out
}

func TestMosquittoFixture2(t *testing.T) {
	evs := convertFile(t, "testdata/mosquitto-2.0.11-connection-lines.log", MosquittoOptions{TLSPorts: []int{41805}})
	got := summarize(evs)
	want := []mosqSummary{
		{Kind: KindVersion, Reason: "broker starting", Version: "2.0.11"},
		{Kind: KindAuthFail, Remote: "127.0.0.1:33730", Port: 36519, TLS: "none", Reason: "not authorised"},
		{Kind: KindAuthFail, Remote: "127.0.0.1:33742", Port: 36519, TLS: "none", Reason: "not authorised"},
		{Kind: KindConnect, Remote: "127.0.0.1:33758", Port: 36519, ClientID: "hub-1", User: "hub", TLS: "none"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:33758", Port: 36519, ClientID: "hub-1", User: "hub", TLS: "none", Reason: "client disconnected"},
		{Kind: KindConnect, Remote: "127.0.0.1:56896", Port: 41805, ClientID: "edge1", User: "edge1", TLS: "tls"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:56896", Port: 41805, ClientID: "edge1", User: "edge1", TLS: "tls", Reason: "client disconnected"},
		{Kind: KindTLSFailure, Remote: "127.0.0.1", Port: 41805, Reason: "error:0A000102:SSL routines::unsupported protocol"},
		{Kind: KindTLSFailure, Remote: "127.0.0.1", Reason: "error:0A00010B:SSL routines::wrong version number"},
		{Kind: KindConnect, Remote: "127.0.0.1:46622", Port: 41805, ClientID: "edge1x", User: "edge1", TLS: "tls"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:46622", Port: 41805, ClientID: "edge1x", User: "edge1", TLS: "tls", Reason: "client disconnected"},
		{Kind: KindConnect, Remote: "127.0.0.1:46148", Port: 36519, ClientID: "v5hub", User: "hub", TLS: "none"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:46148", Port: 36519, ClientID: "v5hub", User: "hub", TLS: "none", Reason: "client disconnected"},
		{Kind: KindConnect, Remote: "127.0.0.1:46158", Port: 36519, ClientID: "v31hub", User: "hub", TLS: "none"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:46158", Port: 36519, ClientID: "v31hub", User: "hub", TLS: "none", Reason: "client disconnected"},
		{Kind: KindConnect, Remote: "127.0.0.1:52910", Port: 42421, ClientID: "auto-6EE4D9B5-54CF-2389-7F34-4411E077D31D", TLS: "none"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:52910", Port: 42421, ClientID: "auto-6EE4D9B5-54CF-2389-7F34-4411E077D31D", TLS: "none", Reason: "client disconnected"},
		{Kind: KindConnect, Remote: "127.0.0.1:47812", Port: 36939, ClientID: "sub-1", User: "alice", TLS: "none"},
		{Kind: KindConnect, Remote: "127.0.0.1:47816", Port: 36939, ClientID: "pub-1", User: "bob", TLS: "none"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:47816", Port: 36939, ClientID: "pub-1", User: "bob", TLS: "none", Reason: "client disconnected"},
		{Kind: KindDisconnect, Remote: "127.0.0.1:47812", Port: 36939, ClientID: "sub-1", User: "alice", TLS: "none", Reason: "client disconnected"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	for _, e := range evs {
		if e.Kind == KindConnect && e.MQTTLevel == 0 {
			t.Errorf("%s: no MQTT level", e.ClientID)
		}
	}
}

func TestMosquittoFixtureOld(t *testing.T) {
	evs := convertFile(t, "testdata/mosquitto-1.4-1.6.log", MosquittoOptions{})
	var kinds []Kind
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
		if e.Source != SourceMosquitto || e.Listener != "mosquitto" {
			t.Errorf("source/listener: %+v", e)
		}
	}
	if kinds[0] != KindVersion || evs[0].Version != "1.4.12" {
		t.Errorf("first event %+v, want the 1.4.12 version", evs[0])
	}
	c := evs[1]
	if c.Kind != KindConnect || c.Remote != "172.17.0.1" || c.Port != 1883 || c.ClientID != "mqtt-client-NWq09wrg" || c.TLS != "none" {
		t.Errorf("1.4 connect: %+v", c)
	}
	var takeover bool
	for _, e := range evs {
		if e.Kind == KindTakeover && e.ClientID == "sensor-4" {
			takeover = true
		}
	}
	if !takeover {
		t.Errorf("no takeover in %v", kinds)
	}
}

// TestMosquittoReal runs Debian's mosquitto writing its log while real
// paho clients connect (one from an untrusted address, one with a wrong
// password, repeatedly), and follows the log with the auditor.
func TestMosquittoReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real broker")
	}
	needLoopbackAlias(t, "127.0.0.2", "127.0.0.5")
	mq := mosqtest.New(t, "0.0.0.0", "alice", "right")
	port, logPath := mq.Port, mq.LogPath

	cfg := DefaultConfig()
	cfg.Trusted = []string{"127.0.0.1/32"}
	cfg.AddrBruteForce = BruteForce{Threshold: 5, Window: time.Minute, Block: time.Minute}
	cfg.MinVersions = []string{"mosquitto:99.0"}
	sink := &memSink{}
	aud, err := New(cfg, Options{Sink: sink, Observer: "site-a", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- aud.Run(ctx) }()
	followDone := make(chan error, 1)
	go func() {
		followDone <- aud.FollowMosquitto(ctx, MosquittoOptions{Path: logPath, FromStart: true, Poll: 20 * time.Millisecond, Location: time.Local})
	}()
	defer func() {
		cancel()
		if err := <-followDone; err != nil {
			t.Errorf("FollowMosquitto: %v", err)
		}
		<-runDone
		if t.Failed() {
			t.Logf("events:\n%s", sink.dump())
		}
	}()
	mq.Start(t)
	ver := sink.waitEvent(t, "broker version", func(e Event) bool { return e.Kind == KindVersion && e.Lang == "mosquitto" })
	if ver.Version == "" || ver.Observer != "site-a" {
		t.Errorf("version event: %+v", ver)
	}
	sink.waitEvent(t, "old mosquitto alert", func(e Event) bool { return e.Kind == KindAlert && e.Rule == RuleOldVersion })

	good, err := mqttConnect(t, port, mqttOpts{id: "good-1", user: "alice", pass: "right"})
	if err != nil {
		t.Fatal(err)
	}
	ev := sink.waitEvent(t, "connect", func(e Event) bool { return e.Kind == KindConnect && e.ClientID == "good-1" })
	if ev.User != "alice" || ev.Port != port || ev.TLS != "none" || !strings.HasPrefix(ev.Remote, "127.0.0.1:") || ev.MQTTLevel != 4 || ev.Source != SourceMosquitto {
		t.Errorf("connect: %+v", ev)
	}
	good.Disconnect(50)
	sink.waitEvent(t, "disconnect", func(e Event) bool { return e.Kind == KindDisconnect && e.ClientID == "good-1" })

	if _, err := mqttConnect(t, port, mqttOpts{src: "127.0.0.5", id: "far-1", user: "alice", pass: "right"}); err != nil {
		t.Fatal(err)
	}
	al := sink.waitEvent(t, "plain_remote alert", func(e Event) bool { return e.Kind == KindAlert && e.Rule == RulePlain })
	if al.Key != "127.0.0.5" || al.ClientID != "far-1" {
		t.Errorf("plain alert: %+v", al)
	}

	for i := 0; i < 8; i++ {
		if _, err := mqttConnect(t, port, mqttOpts{src: "127.0.0.2", id: fmt.Sprintf("bad-%d", i), user: "alice", pass: "wrong"}); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	af := sink.waitEvent(t, "auth failure", func(e Event) bool { return e.Kind == KindAuthFail })
	if !strings.HasPrefix(af.Remote, "127.0.0.2:") || af.Port != port {
		t.Errorf("auth failure: %+v", af)
	}
	sink.waitEvent(t, "brute force alert", func(e Event) bool { return e.Kind == KindAlert && e.Rule == RuleBruteAddr && e.Key == "127.0.0.2" })
	if !aud.Blocked("127.0.0.2") {
		t.Error("127.0.0.2 not blocked")
	}
	if n := sink.count(func(e Event) bool { return e.Kind == KindAuthFail }); n != 5 {
		t.Errorf("%d auth_failure events, want 5 (the rest suppressed by the block)", n)
	}
}
