package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/notify"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
)

// notifyLogBuf is a log sink the test reads while the hub writes.
type notifyLogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *notifyLogBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *notifyLogBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitNotify(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func notifyFileLines(path string) []string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// notifyHub runs a real hub (loopback, random ports, dev PKI) configured
// from file with the notify service attached as `hub run` attaches it.
type notifyHub struct {
	h    *hub.Hub
	logs *notifyLogBuf
}

func startNotifyHub(t *testing.T, file string) *notifyHub {
	t.Helper()
	root := newRoot(io.Discard, io.Discard)
	if err := root.PersistentFlags().Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	g := &globals{flags: root.PersistentFlags()}
	cfg, _, err := g.load()
	if err != nil {
		t.Fatal(err)
	}
	logs := &notifyLogBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	h, err := hub.New(cfg, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	env := &hubEnv{Hub: h, Cfg: cfg, File: file, Logger: logger, Reg: reg,
		Load: func() (hub.Config, error) { c, _, err := g.load(); return c, err }}
	if err := attachNotify(env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("hub run: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("hub not ready\n%s", logs)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hub run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("hub did not stop")
		}
		if t.Failed() {
			t.Logf("hub log:\n%s", logs)
		}
	})
	nh := &notifyHub{h: h, logs: logs}
	// The notifier's consumer exists once it has started.
	waitNotify(t, "notify consumer", func() bool {
		_, err := h.JetStream().Consumer(t.Context(), event.HubStream, "notify")
		return err == nil
	})
	return nh
}

// login stores a hared-shaped login of user from edge site1 in the HUB
// stream, as the ingest does.
func (nh *notifyHub) login(t *testing.T, n int, user string) {
	t.Helper()
	payload := fmt.Sprintf(`{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384609,"tty":"ssh","user":%q}`, user)
	m := nats.NewMsg(event.HubSubjectPrefix + "site1.logging.hare")
	m.Data = []byte(payload)
	m.Header.Set("Nats-Msg-Id", fmt.Sprintf("site1:test:%d", n))
	m.Header.Set("Warren-Edge", "site1")
	m.Header.Set("Warren-Source", "udp")
	if _, err := nh.h.JetStream().PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

func (nh *notifyHub) waitLog(t *testing.T, what string, count int) {
	t.Helper()
	waitNotify(t, fmt.Sprintf("%d× %q in the hub log", count, what), func() bool {
		return strings.Count(nh.logs.String(), what) >= count
	})
}

const notifyHubYAML = `server_name: t-notify
data_dir: %[1]s/data
nats: {listen: "127.0.0.1:0"}
mqtt: {listen: "127.0.0.1:0", tls_listen: ""}
admin: {listen: "unix:%[1]s/admin.sock"}
stream: {duplicate_window: %[3]s}
notify:
  targets:
    logins: {type: file, config: {path: %[1]s/logins.log}}
  routes:
    - name: logins
      match: {topic: [logging/hare]}
      targets: [logins]
      format: %[2]q
  offline: {after: 1s, targets: [logins], format: "OFFLINE {edge}"}
`

func writeHubYAML(t *testing.T, dir, format, window string) string {
	t.Helper()
	file := filepath.Join(dir, "hub.yaml")
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, notifyHubYAML, dir, format, window), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil { // as editors and Ansible save
		t.Fatal(err)
	}
	return file
}

// TestNotifyInHub: a login stored in the hub's stream becomes a line of
// the file target, rendered mqttwarn-style.
func TestNotifyInHub(t *testing.T) {
	dir := t.TempDir()
	file := writeHubYAML(t, dir, "login {user} on {hostname} from {rhost}", "1h")
	nh := startNotifyHub(t, file)
	nh.login(t, 1, "jjolie")
	out := filepath.Join(dir, "logins.log")
	waitNotify(t, "the notification", func() bool { return len(notifyFileLines(out)) == 1 })
	if got := notifyFileLines(out); got[0] != "login jjolie on vm from 198.51.100.7" {
		t.Errorf("file target: %q", got)
	}
	if !strings.Contains(nh.logs.String(), `msg="notifier configured" targets=1 routes=1 from="notify section"`) {
		t.Errorf("no start-up line in the log")
	}

	// `hub notify status` reads the running notifier's queues.
	var st notify.Status
	waitNotify(t, "notify status: nothing waiting", func() bool {
		var out, errb strings.Builder
		if code := run([]string{"notify", "status", "--json", "--config", file}, &out, &errb); code != 0 {
			t.Fatalf("hub notify status --json: exit %d: %s", code, errb.String())
		}
		if err := json.Unmarshal([]byte(out.String()), &st); err != nil {
			t.Fatalf("notify status JSON: %v\n%s", err, out.String())
		}
		return st.EventsPending == 0 && st.EventsInFlight == 0 && len(st.Targets) == 1 && st.Targets[0].Queued == 0 && st.Targets[0].InFlight == 0
	})
	if tg := st.Targets[0]; tg.Name != "logins" || tg.Type != "file" || tg.DeadLetters != 0 || st.Consumer != "notify" || st.Error != "" {
		t.Errorf("notify status: %+v", st)
	}
	var text, errb strings.Builder
	if code := run([]string{"notify", "status", "--config", file}, &text, &errb); code != 0 || !regexp.MustCompile(`(?m)^  logins\s+file\s+0\s+0\s+0\s+0\s+-$`).MatchString(text.String()) {
		t.Errorf("hub notify status: exit %d\n%s%s", code, text.String(), errb.String())
	}

	// The hub's edge link events reach the notifier: a real edge connects
	// over mutual TLS and leaves; "site offline" follows.
	l := pki.LayoutOf(filepath.Join(dir, "data", "pki"))
	if _, err := pki.DevPKI(l.Dir, "site1"); err != nil {
		t.Fatal(err)
	}
	tc, err := pki.ClientTLSConfig(l.CACert, l.EdgeCert("site1"), l.EdgeKey("site1"))
	if err != nil {
		t.Fatal(err)
	}
	ec, err := nats.Connect("tls://"+nh.h.Addrs().NATS, nats.Secure(tc), nats.CustomInboxPrefix("_INBOX_site1"), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	waitNotify(t, "edge up", func() bool {
		for _, e := range nh.h.Edges() {
			if e.ID == "site1" && e.Connected {
				return true
			}
		}
		return false
	})
	ec.Close()
	waitNotify(t, "the offline alert", func() bool { return len(notifyFileLines(out)) == 2 })
	if got := notifyFileLines(out); got[1] != "OFFLINE site1" {
		t.Errorf("file target: %q", got)
	}
}

// TestNotifyReload: a bad file keeps the running routes, a good one
// replaces them without a restart; SIGHUP reloads too; changes outside
// notify are reported as needing a restart.
func TestNotifyReload(t *testing.T) {
	dir := t.TempDir()
	file := writeHubYAML(t, dir, "v1 {user}", "1h")
	nh := startNotifyHub(t, file)
	nh.waitLog(t, "watching the config file", 1)
	out := filepath.Join(dir, "logins.log")
	nh.login(t, 1, "a")
	waitNotify(t, "first line", func() bool { return len(notifyFileLines(out)) == 1 })

	// A broken format: refused, the old route keeps working.
	writeHubYAML(t, dir, "v2 {user", "1h")
	nh.waitLog(t, "config reload failed; keeping the running configuration", 1)
	if !strings.Contains(nh.logs.String(), "notify.routes[0].format") {
		t.Errorf("the reload error does not name the key")
	}
	nh.login(t, 2, "b")
	waitNotify(t, "second line", func() bool { return len(notifyFileLines(out)) == 2 })

	// A good one, with a change outside notify too.
	writeHubYAML(t, dir, "v3 {user}", "2h")
	nh.waitLog(t, "notify configuration reloaded", 1)
	nh.waitLog(t, "those changes apply after a restart", 1)
	if !strings.Contains(nh.logs.String(), "keys=stream") {
		t.Errorf("the restart warning does not name stream")
	}
	nh.login(t, 3, "c")
	waitNotify(t, "third line", func() bool { return len(notifyFileLines(out)) == 3 })
	if got := notifyFileLines(out); got[0] != "v1 a" || got[1] != "v1 b" || got[2] != "v3 c" {
		t.Errorf("file target: %q", got)
	}

	// SIGHUP re-reads the file; nothing changed.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	nh.waitLog(t, "trigger=SIGHUP", 1)
	if strings.Count(nh.logs.String(), "notify configuration reloaded") != 1 {
		t.Errorf("an unchanged notify section was reloaded")
	}
	if strings.Count(nh.logs.String(), "those changes apply after a restart") != 1 {
		t.Errorf("an unchanged file was reported as changed outside notify")
	}
}

// TestNotifyMQTTThroughHub: an mqtt target without a url publishes through
// the hub's own MQTT listener, where a plain MQTT client (what mqttwarn and
// mosquitto_sub users run) receives it.
func TestNotifyMQTTThroughHub(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	doc := fmt.Sprintf(`server_name: t-notify-mqtt
data_dir: %[1]s/data
nats: {listen: "127.0.0.1:0"}
mqtt: {listen: "127.0.0.1:0", tls_listen: ""}
admin: {listen: "unix:%[1]s/admin.sock"}
notify:
  targets:
    phone: {type: mqtt, config: {topic: "warren/notify/{{.Edge}}", client_id: warren-notify-test}}
  routes:
    - {name: logins, match: {topic: [logging/hare]}, targets: [phone], format: "login {user}"}
`, dir)
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	nh := startNotifyHub(t, file)
	_, port, err := net.SplitHostPort(nh.h.Addrs().MQTT)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	sub, err := mqttLogin(t, p, "", "phone-sub", "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	if tok := sub.Subscribe("warren/notify/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		got <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	nh.login(t, 1, "jjolie")
	select {
	case m := <-got:
		if m != "warren/notify/site1 login jjolie" {
			t.Errorf("got %q, want the rendered notification on warren/notify/site1", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no notification on the hub's MQTT listener\n%s", nh.logs)
	}

	// Without an MQTT listener there is nothing to publish through: the
	// section is refused at start with the key named.
	noMQTT := strings.Replace(doc, `mqtt: {listen: "127.0.0.1:0", tls_listen: ""}`, `mqtt: {listen: "", tls_listen: ""}`, 1)
	if err := os.WriteFile(file, []byte(noMQTT), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	if code := run([]string{"check-config", "--config", file}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "notify.targets.phone") || !strings.Contains(errb.String(), "no MQTT listener") {
		t.Errorf("check-config without an MQTT listener: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
