package edge

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/warren-mesh/warren/internal/event"
)

func mqttClient(t *testing.T, addr, id, user, pass string) (mqtt.Client, error) {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false).SetConnectRetry(false)
	if user != "" {
		opts.SetUsername(user).SetPassword(pass)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func publish(t *testing.T, c mqtt.Client, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// waitStored waits until the stream holds an event with payload p.
func waitStored(t *testing.T, e *Edge, p string) {
	t.Helper()
	waitFor(t, "event "+p, 10*time.Second, func() bool {
		for _, m := range storedEvents(t, e.JetStream()) {
			if string(m.Data) == p {
				return true
			}
		}
		return false
	})
}

func TestMQTTIngest(t *testing.T) {
	e, _ := startEdge(t, testConfig(t, t.TempDir()))
	c, err := mqttClient(t, e.MQTTAddr(), "device-1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, "logging/door", 0, "qos0 payload")
	publish(t, c, "hare/raw", 1, `{"any":"bytes"}`)
	publish(t, c, "logging", 1, "parent level of logging/#")
	publish(t, c, "sensors/temp", 1, "not forwarded")
	publish(t, c, "ev/logging/hare", 1, "forged straight into the stream")
	publish(t, c, "logging/a.b", 1, "dot in topic")
	publish(t, c, "logging/marker", 1, "marker")
	waitStored(t, e, "marker")
	waitFor(t, "mqtt accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceMQTT] == 5 })

	got := map[string]string{}
	for _, m := range storedEvents(t, e.JetStream()) {
		got[string(m.Data)] = m.Subject
		h := m.Header
		if h.Get(event.HdrSource) != event.SourceMQTT || h.Get(event.HdrAuth) != "mqtt" || h.Get(event.HdrEdge) != "test-edge" ||
			h.Get(event.HdrEpoch) != e.Epoch() || h.Get(event.HdrReceived) == "" {
			t.Errorf("headers of %s: %v", m.Data, h)
		}
		if want := event.SubjectToTopic(strings.TrimPrefix(m.Subject, "ev.")); h.Get(event.HdrTopic) != want {
			t.Errorf("topic header %q, want %q", h.Get(event.HdrTopic), want)
		}
	}
	want := map[string]string{
		"qos0 payload":              "ev.logging.door",
		`{"any":"bytes"}`:           "ev.hare.raw",
		"parent level of logging/#": "ev.logging",
		"dot in topic":              "ev.logging.a//b",
		"marker":                    "ev.logging.marker",
	}
	for p, subj := range want {
		if got[p] != subj {
			t.Errorf("payload %q stored on %q, want %q", p, got[p], subj)
		}
	}
	if len(got) != len(want) {
		t.Errorf("stored %v, want exactly %v", got, want)
	}
	st := e.Status()
	if n := st.Accepted[event.SourceMQTT]; n != uint64(len(want)) {
		t.Errorf("accepted mqtt = %d, want %d", n, len(want))
	}
	for _, m := range storedEvents(t, e.JetStream()) {
		if m.Header.Get(event.HdrTopic) == "logging/a.b" {
			return
		}
	}
	t.Error("no event with topic header logging/a.b")
}

func TestMQTTUsers(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	pw := filepath.Join(t.TempDir(), "dev.pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.Users = []UserConfig{{Name: "dev", PasswordFile: pw}}
	e, logs := startEdge(t, cfg)
	if _, err := mqttClient(t, e.MQTTAddr(), "anon", "", ""); err == nil {
		t.Error("anonymous client connected although users are configured")
	}
	if _, err := mqttClient(t, e.MQTTAddr(), "wrong", "dev", "nope"); err == nil {
		t.Error("wrong password accepted")
	}
	c, err := mqttClient(t, e.MQTTAddr(), "right", "dev", "s3cret")
	if err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	publish(t, c, "logging/x", 1, "from dev")
	waitStored(t, e, "from dev")
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("password appears in the log")
	}
}

// TestMosquittoBridge runs Debian's mosquitto with a bridge into the edge's
// MQTT gateway and publishes through it. The bridge needs try_private false
// (nats-server refuses protocol level 0x84) and a remote_clientid without
// '.' (mosquitto's default "<host>.<connection>" is refused).
func TestMosquittoBridge(t *testing.T) {
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("mosquitto not installed at %s (apt-get install mosquitto): %v", bin, err)
	}
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skipf("mosquitto_pub not installed (apt-get install mosquitto-clients): %v", err)
	}
	e, _ := startEdge(t, testConfig(t, t.TempDir()))
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf(`user root
persistence false
log_dest stderr
log_type all
listener %d 127.0.0.1
allow_anonymous true

connection warren-edge
address %s
try_private false
remote_clientid mosquitto-bridge-test
cleansession true
bridge_protocol_version mqttv311
topic logging/# out 1
notifications false
start_type automatic
restart_timeout 1
`, port, e.MQTTAddr())
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	}()

	// Publish until the bridge is up and the first message lands (mosquitto
	// connects its bridge asynchronously), then one more with QoS 1.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("nothing arrived through the mosquitto bridge")
		}
		msg := fmt.Sprintf(`{"via":"mosquitto","n":%d}`, i)
		run := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-q", "1", "-t", "logging/hare", "-m", msg)
		if b, err := run.CombinedOutput(); err != nil {
			t.Logf("mosquitto_pub: %v: %s", err, b)
		}
		if found(t, e, "mosquitto") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	run := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-q", "1", "-t", "logging/bridge/final", "-m", "final")
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, b)
	}
	waitStored(t, e, "final")
	for _, m := range storedEvents(t, e.JetStream()) {
		if string(m.Data) == "final" {
			if m.Subject != "ev.logging.bridge.final" || m.Header.Get(event.HdrTopic) != "logging/bridge/final" || m.Header.Get(event.HdrSource) != event.SourceMQTT {
				t.Errorf("bridged event %s %v", m.Subject, m.Header)
			}
		}
	}
}

func found(t *testing.T, e *Edge, sub string) bool {
	for _, m := range storedEvents(t, e.JetStream()) {
		if strings.Contains(string(m.Data), sub) {
			return true
		}
	}
	return false
}
