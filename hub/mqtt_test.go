package hub

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/warren-mesh/warren/internal/event"
)

const harePayload = `{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384609,"tty":"pts/3","user":"jjolie"}`

// mqttUser adds an MQTT user with a password file to cfg.
func mqttUser(t testing.TB, cfg *Config, name, password string, publish, subscribe []string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name+".pw")
	if err := os.WriteFile(f, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.Users = append(cfg.MQTT.Users, MQTTUser{Name: name, PasswordFile: f, Publish: publish, Subscribe: subscribe})
}

func (th *testHub) caPool(t testing.TB) *x509.CertPool {
	pem, err := os.ReadFile(pkiLayout(th).CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// paho connects a paho client; tlsAddr true uses the TLS listener.
func (th *testHub) paho(t testing.TB, id string, useTLS bool, user, pass string) (mqtt.Client, error) {
	t.Helper()
	o := mqtt.NewClientOptions().SetClientID(id).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).SetConnectRetry(false)
	if useTLS {
		o.AddBroker("tls://" + th.Addrs().MQTTTLS)
		o.SetTLSConfig(&tls.Config{RootCAs: th.caPool(t), ServerName: "hub.warren"})
	} else {
		o.AddBroker("tcp://" + th.Addrs().MQTT)
	}
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timeout")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func subscribe(t testing.TB, c mqtt.Client, topic string, qos byte) chan mqtt.Message {
	t.Helper()
	ch := make(chan mqtt.Message, 100)
	tok := c.Subscribe(topic, qos, func(_ mqtt.Client, m mqtt.Message) { ch <- m })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", topic, tok.Error())
	}
	if r := tok.(*mqtt.SubscribeToken).Result()[topic]; r == 0x80 {
		t.Fatalf("subscribe %s refused", topic)
	}
	return ch
}

func receive(t testing.TB, ch chan mqtt.Message) mqtt.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no MQTT message")
		return nil
	}
}

func (th *testHub) sendHare(t testing.TB, id string, seq uint64) {
	t.Helper()
	nc := th.connectEdge(t, id)
	ans, err := send(t, nc, id, "logging.hare", event.MsgID(id, "ep", seq), []byte(harePayload), map[string][]string{event.HdrTopic: {event.HareTopic}})
	if err != nil || ans.Error != nil || ans.Duplicate {
		t.Fatalf("send: %+v %v", ans, err)
	}
	nc.Close()
}

func TestRepublishToPaho(t *testing.T) {
	cfg := testConfig(t)
	mqttUser(t, &cfg, "reader", "s3cret", nil, []string{"logging/#"})
	th := startHub(t, cfg, "site-a")
	local, err := th.paho(t, "local-sub", false, "", "")
	if err != nil {
		t.Fatal(err)
	}
	remote, err := th.paho(t, "remote-sub", true, "reader", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	chLocal := subscribe(t, local, event.HareTopic, 0)
	chRemote := subscribe(t, remote, event.HareTopic, 1)
	th.sendHare(t, "site-a", 1)
	for name, ch := range map[string]chan mqtt.Message{"local": chLocal, "tls": chRemote} {
		m := receive(t, ch)
		if m.Topic() != event.HareTopic || string(m.Payload()) != harePayload {
			t.Errorf("%s: got %s %q", name, m.Topic(), m.Payload())
		}
	}
	// a duplicate is not republished: the next message is the next event
	nc := th.connectEdge(t, "site-a")
	if ans, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "ep", 1), []byte(harePayload), nil); err != nil || !ans.Duplicate {
		t.Fatalf("resend: %+v %v", ans, err)
	}
	if ans, err := send(t, nc, "site-a", "logging.hare", event.MsgID("site-a", "ep", 2), []byte("second"), nil); err != nil || ans.Error != nil {
		t.Fatalf("send: %+v %v", ans, err)
	}
	if m := receive(t, chLocal); string(m.Payload()) != "second" {
		t.Errorf("after a duplicate got %q, want the next event", m.Payload())
	}
	st := th.Status()
	if st.Republished != 2 {
		t.Errorf("republished %d, want 2", st.Republished)
	}
	var tlsClient *MQTTClient
	for i, c := range st.MQTT.Clients {
		if c.ClientID == "remote-sub" {
			tlsClient = &st.MQTT.Clients[i]
		}
	}
	if tlsClient == nil || tlsClient.Via != "mqtt-tls" || tlsClient.User != "reader" || tlsClient.TLSVersion != "TLS 1.3" || tlsClient.LocalPort == 0 {
		t.Errorf("mqtt clients %+v", st.MQTT.Clients)
	}
	if len(st.MQTT.Clients) != 2 {
		t.Errorf("mqtt clients %+v", st.MQTT.Clients)
	}
}

func TestRepublishTopicPrefix(t *testing.T) {
	cfg := testConfig(t)
	cfg.Republish.TopicPrefix = "warren/"
	th := startHub(t, cfg, "site-a")
	c, err := th.paho(t, "sub", false, "", "")
	if err != nil {
		t.Fatal(err)
	}
	ch := subscribe(t, c, "warren/logging/hare", 1)
	th.sendHare(t, "site-a", 1)
	if m := receive(t, ch); string(m.Payload()) != harePayload {
		t.Errorf("payload %q", m.Payload())
	}
}

func TestRepublishSubject(t *testing.T) {
	cases := []struct {
		prefix, rest, want string
		ok                 bool
	}{
		{"", "logging.hare", "logging.hare", true},
		{"warren/", "logging.hare", "warren.logging.hare", true},
		{"", "$JS.API.STREAM.DELETE.HUB", "", false},
		{"", "_INBOX.x", "", false},
		{"", "hub.ev.other.x", "", false},
		{"", "hub.temperature", "hub.temperature", true},
		{"", "edge.site-b.x", "", false},
		{"", "hub", "hub", true},
		{"", "hub.ev", "", false},
	}
	for _, c := range cases {
		got, ok := republishSubject(c.prefix, c.rest)
		if got != c.want || ok != c.ok {
			t.Errorf("republishSubject(%q, %q) = %q %v, want %q %v", c.prefix, c.rest, got, ok, c.want, c.ok)
		}
	}
}

// waitMQTTSubscribed waits until the MQTT client id has a subscription.
func (th *testHub) waitMQTTSubscribed(t testing.TB, id string) {
	t.Helper()
	waitFor(t, "mqtt subscription of "+id, 10*time.Second, func() bool {
		cz, err := th.Server().Connz(&server.ConnzOptions{MQTTClient: id, Subscriptions: true, Account: AccountHub})
		return err == nil && len(cz.Conns) == 1 && cz.Conns[0].NumSubs > 0
	})
}

func TestRepublishMosquittoSub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		t.Skip("mosquitto_sub not installed (Debian package mosquitto-clients)")
	}
	cfg := testConfig(t)
	mqttUser(t, &cfg, "mqttwarn", "pw-123", nil, nil)
	th := startHub(t, cfg, "site-a")
	_, tlsPort, _ := net.SplitHostPort(th.Addrs().MQTTTLS)
	_, plainPort, _ := net.SplitHostPort(th.Addrs().MQTT)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	run := func(id string, args ...string) (*exec.Cmd, *bytes.Buffer) {
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, append([]string{"-V", "mqttv311", "-i", id, "-t", event.HareTopic, "-C", "1", "-W", "15"}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s stderr: %s", id, errb.String())
			}
		})
		return cmd, &out
	}
	plain, plainOut := run("msub-plain", "-h", "127.0.0.1", "-p", plainPort)
	secure, secureOut := run("msub-tls", "-h", "127.0.0.1", "-p", tlsPort, "--cafile", pkiLayout(th).CACert, "-u", "mqttwarn", "-P", "pw-123", "-q", "1")
	th.waitMQTTSubscribed(t, "msub-plain")
	th.waitMQTTSubscribed(t, "msub-tls")
	th.sendHare(t, "site-a", 1)
	for name, c := range map[string]struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}{"plain": {plain, plainOut}, "tls": {secure, secureOut}} {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("mosquitto_sub %s: %v", name, err)
		}
		if got := strings.TrimSpace(c.out.String()); got != harePayload {
			t.Errorf("mosquitto_sub %s printed %q, want %q", name, got, harePayload)
		}
	}
}

func TestMQTTTLSRefusals(t *testing.T) {
	cfg := testConfig(t)
	mqttUser(t, &cfg, "alice", "right", nil, nil)
	th := startHub(t, cfg)

	line := refusedLine(t, th, "mqtt-tls", "no-username", func() error {
		_, err := th.paho(t, "anon", true, "", "")
		return err
	})
	if !strings.Contains(line, "remote=127.0.0.1:") {
		t.Errorf("line: %s", line)
	}
	line = refusedLine(t, th, "mqtt-tls", "bad-login", func() error {
		_, err := th.paho(t, "wrongpw", true, "alice", "b4dpass")
		return err
	})
	if !strings.Contains(line, "user=alice") || strings.Contains(line, "b4dpass") {
		t.Errorf("line: %s", line)
	}
	refusedLine(t, th, "mqtt-tls", "bad-login", func() error {
		_, err := th.paho(t, "nobody", true, "mallory", "x")
		return err
	})
	refusedLine(t, th, "mqtt-tls", "plaintext", func() error {
		o := mqtt.NewClientOptions().AddBroker("tcp://" + th.Addrs().MQTTTLS).SetClientID("plain").SetConnectTimeout(3 * time.Second).SetAutoReconnect(false)
		tok := mqtt.NewClient(o).Connect()
		tok.WaitTimeout(5 * time.Second)
		return tok.Error()
	})
	refusedLine(t, th, "mqtt-tls", "tls-version", func() error {
		c, err := tls.Dial("tcp", th.Addrs().MQTTTLS, &tls.Config{RootCAs: th.caPool(t), ServerName: "hub.warren", MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11})
		if err == nil {
			c.Close()
		}
		return err
	})
	if _, err := th.paho(t, "good", true, "alice", "right"); err != nil {
		t.Fatalf("good login: %v", err)
	}
	st := th.Status()
	for _, k := range []string{"mqtt-tls/no-username", "mqtt-tls/bad-login", "mqtt-tls/plaintext", "mqtt-tls/tls-version"} {
		if st.Refused[k] == 0 {
			t.Errorf("counter %s is 0: %v", k, st.Refused)
		}
	}
}

func TestMQTTLocalRules(t *testing.T) {
	cfg := testConfig(t)
	mqttUser(t, &cfg, "ro", "pw", nil, []string{"logging/#"})
	mqttUser(t, &cfg, "rw", "pw", []string{"tools/#"}, nil)
	cfg.MQTT.AllowAnonymousLocal = true
	th := startHub(t, cfg, "site-a")

	anon, err := th.paho(t, "anon", false, "", "")
	if err != nil {
		t.Fatal(err)
	}
	// Anonymous local clients cannot write into the hub stream nor call
	// the JetStream API.
	for _, topic := range []string{"hub/ev/site-a/logging/hare", "$JS/API/STREAM/DELETE/" + event.HubStream} {
		before := len(th.logs.lines("Publish Violation"))
		anon.Publish(topic, 1, false, "x").WaitTimeout(5 * time.Second)
		waitFor(t, "publish violation for "+topic, 5*time.Second, func() bool {
			return len(th.logs.lines("Publish Violation")) > before
		})
	}
	if n := len(th.stored(t)); n != 0 {
		t.Fatalf("stream holds %d events", n)
	}
	// A read-only user cannot publish; a user with publish rights can, in
	// its topics only.
	ro, err := th.paho(t, "ro-client", true, "ro", "pw")
	if err != nil {
		t.Fatal(err)
	}
	before := len(th.logs.lines("Publish Violation", "ro-client"))
	ro.Publish("logging/hare", 1, false, "forged login").WaitTimeout(5 * time.Second)
	waitFor(t, "read-only publish refused", 5*time.Second, func() bool {
		return len(th.logs.lines("Publish Violation", "ro-client")) > before
	})
	// its subscriptions are limited to logging/#
	tok := ro.Subscribe("other/#", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if r := tok.(*mqtt.SubscribeToken).Result()["other/#"]; r != 0x80 {
		t.Errorf("subscribe other/# by ro: result %#x, want 0x80", r)
	}
	ch := subscribe(t, anon, "tools/x", 1)
	rw, err := th.paho(t, "rw-client", false, "rw", "pw")
	if err != nil {
		t.Fatal(err)
	}
	rw.Publish("tools/x", 1, false, "hello").WaitTimeout(5 * time.Second)
	if m := receive(t, ch); string(m.Payload()) != "hello" {
		t.Errorf("got %q", m.Payload())
	}
	// a wrong password on the local listener is refused too
	refusedLine(t, th, "mqtt", "bad-login", func() error {
		_, err := th.paho(t, "rw-bad", false, "rw", "nope")
		return err
	})
}

func TestMQTTAnonymousLocalOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.AllowAnonymousLocal = false
	cfg.MQTT.TLSListen = ""
	th := startHub(t, cfg)
	refusedLine(t, th, "mqtt", "no-username", func() error {
		_, err := th.paho(t, "anon", false, "", "")
		return err
	})
	if th.Addrs().MQTTTLS != "" {
		t.Errorf("tls listener on: %+v", th.Addrs())
	}
}
