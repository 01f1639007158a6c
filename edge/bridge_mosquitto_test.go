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

	"github.com/warren-mesh/warren/internal/event"
)

// mosquittoOrSkip returns Debian's mosquitto binary, or skips (fails under
// WARREN_REQUIRE_ALL=1, as .ci/run sets it).
func mosquittoOrSkip(t *testing.T) string {
	t.Helper()
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("mosquitto not installed at %s (apt-get install mosquitto): %v", bin, err)
		if os.Getenv("WARREN_REQUIRE_ALL") == "1" {
			t.Fatalf("%s (WARREN_REQUIRE_ALL=1)", msg)
		}
		t.Skip(msg)
	}
	return bin
}

// TestMosquittoBridgeWithCredentialsAcrossEdgeRestart is the mosquitto
// migration path of issue 3 beyond TestMosquittoBridge: Debian's mosquitto
// bridges into an edge whose MQTT gateway requires a login (as it must on a
// non-loopback address), with try_private false, QoS 1 and a persistent
// bridge session. Every message published to mosquitto reaches the edge
// stream in publish order with the MQTT provenance headers, including the
// ones published while the edge was stopped (mosquitto queues them for the
// bridge and sends them when the edge is back).
func TestMosquittoBridgeWithCredentialsAcrossEdgeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs mosquitto and restarts an edge")
	}
	bin := mosquittoOrSkip(t)

	dir := t.TempDir()
	pw := filepath.Join(dir, "bridge.pw")
	if err := os.WriteFile(pw, []byte("br1dge-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, t.TempDir())
	cfg.MQTT.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg.MQTT.Users = []UserConfig{{Name: "site-bridge", PasswordFile: pw}}
	e, logs := startEdge(t, cfg)

	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf(`user root
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
listener %d 127.0.0.1
allow_anonymous true

connection warren-edge
address %s
try_private false
remote_clientid mosquitto-bridge-creds
remote_username site-bridge
remote_password br1dge-secret
cleansession false
bridge_protocol_version mqttv311
topic logging/# out 1
notifications false
start_type automatic
restart_timeout 1
`, port, cfg.MQTT.Listen)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", conf)
	var out logBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
			t.Logf("edge log:\n%s", logs.String())
		}
	}()

	local := fmt.Sprintf("127.0.0.1:%d", port)
	var pub func(topic, payload string)
	waitFor(t, "mosquitto to listen", 10*time.Second, func() bool {
		cl, err := mqttClient(t, local, "publisher", "", "")
		if err != nil {
			return false
		}
		pub = func(topic, payload string) { publish(t, cl, topic, 1, payload) }
		return true
	})

	// The bridge connects asynchronously: probe until one message lands.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; !found(t, e, "probe"); i++ {
		if time.Now().After(deadline) {
			t.Fatal("nothing arrived through the mosquitto bridge (with credentials)")
		}
		pub("logging/probe", fmt.Sprintf("probe-%d", i))
		time.Sleep(200 * time.Millisecond)
	}

	const n = 100
	for i := range n {
		pub("logging/burst", fmt.Sprintf("m-%03d", i))
	}
	waitFor(t, "the first burst through the bridge", 20*time.Second, func() bool { return countPrefix(t, e, "m-") >= n })

	// Stop the edge; mosquitto keeps accepting and queues for the bridge.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	for i := n; i < 2*n; i++ {
		pub("logging/burst", fmt.Sprintf("m-%03d", i))
	}
	e2, logs2 := startEdge(t, cfg)
	logs = logs2
	waitFor(t, "the queued burst after the edge restart", 30*time.Second, func() bool { return countPrefix(t, e2, "m-") >= 2*n })

	// Every message, first copies in publish order, with MQTT provenance.
	seen := map[string]int{}
	var order []string
	for _, m := range storedEvents(t, e2.JetStream()) {
		p := string(m.Data)
		if !strings.HasPrefix(p, "m-") {
			continue
		}
		if seen[p]++; seen[p] == 1 {
			order = append(order, p)
		}
		h := m.Header
		if m.Subject != "ev.logging.burst" || h.Get(event.HdrTopic) != "logging/burst" || h.Get(event.HdrSource) != event.SourceMQTT ||
			h.Get(event.HdrAuth) != "mqtt" || h.Get(event.HdrEdge) != "test-edge" {
			t.Errorf("%s: subject %s headers %v", p, m.Subject, h)
		}
	}
	for i := range 2 * n {
		want := fmt.Sprintf("m-%03d", i)
		if i >= len(order) || order[i] != want {
			t.Fatalf("message %d: stored order %v, want m-000..m-%03d", i, order, 2*n-1)
		}
	}
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	if dups > 0 {
		t.Logf("%d QoS 1 redeliveries stored twice (allowed by MQTT QoS 1)", dups)
	}
	if st := e2.Status(); st.Accepted[event.SourceMQTT] == 0 || st.Epoch != e.Epoch() {
		t.Errorf("after restart: accepted %v, epoch %q (was %q)", st.Accepted, st.Epoch, e.Epoch())
	}
}

func countPrefix(t *testing.T, e *Edge, prefix string) int {
	n := 0
	for _, m := range storedEvents(t, e.JetStream()) {
		if bytes.HasPrefix(m.Data, []byte(prefix)) {
			n++
		}
	}
	return n
}
