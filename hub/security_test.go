package hub

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
)

// asyncErrs collects a connection's asynchronous errors (permission
// violations arrive there).
type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrs) handler() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		a.mu.Lock()
		a.errs = append(a.errs, err)
		a.mu.Unlock()
	})
}

func (a *asyncErrs) has(substr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.errs {
		if strings.Contains(e.Error(), substr) {
			return true
		}
	}
	return false
}

func TestEdgeCannotWriteIntoAnotherEdge(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a", "site-b")
	var errsA asyncErrs
	a := th.connectEdge(t, "site-a", errsA.handler())
	b := th.connectEdge(t, "site-b")

	// A publishes on B's subject with B's Msg-Id: a permission violation,
	// never delivered to the ingest.
	m := nats.NewMsg(event.IngestSubject("site-b", "ev.logging.hare"))
	m.Header.Set(event.HdrMsgID, event.MsgID("site-b", "ep", 1))
	m.Data = []byte(`{"forged":true}`)
	if _, err := a.RequestMsg(m, 300*time.Millisecond); err == nil {
		t.Fatal("edge A got an answer for a publish into edge B's subjects")
	}
	waitFor(t, "permission violation at edge A", 5*time.Second, func() bool {
		return errsA.has(`Permissions Violation for Publish to "edge.site-b.logging.hare"`)
	})
	// A cannot read B's answers nor B's events either.
	for _, subj := range []string{"_INBOX_site-b.>", "edge.site-b.>", "edge.>"} {
		if _, err := a.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		a.Flush()
		waitFor(t, "subscribe violation "+subj, 5*time.Second, func() bool {
			return errsA.has(`Permissions Violation for Subscription to "` + subj + `"`)
		})
	}
	if n := len(th.stored(t)); n != 0 {
		t.Fatalf("stream holds %d events after A's forgery, want 0", n)
	}
	// B's real event with that id is stored, not answered as a duplicate.
	ans, err := send(t, b, "site-b", "logging.hare", event.MsgID("site-b", "ep", 1), []byte(`{"real":true}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Error != nil || ans.Duplicate || ans.Seq != 1 {
		t.Fatalf("B's event: answer %+v", ans)
	}
	msgs := th.stored(t)
	if len(msgs) != 1 || string(msgs[0].Data) != `{"real":true}` || msgs[0].Subject != "hub.ev.site-b.logging.hare" {
		t.Fatalf("stream: %d events, first %+v", len(msgs), msgs)
	}
}

func TestEdgeCannotSuppressAnotherEdge(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a", "site-b")
	a := th.connectEdge(t, "site-a")
	b := th.connectEdge(t, "site-b")

	// A sends, on its own subject, an event carrying B's next Msg-Id:
	// stored, it would make B's real event a "duplicate" and suppress it.
	ans, err := send(t, a, "site-a", "logging.hare", event.MsgID("site-b", "ep", 1), []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Error == nil || ans.Error.Code != 400 || !strings.Contains(ans.Error.Description, `names edge "site-b"`) {
		t.Fatalf("forged msg id: answer %+v, want a 400 error", ans)
	}
	// Same with a forged Warren-Edge header.
	ans, err = send(t, a, "site-a", "logging.hare", event.MsgID("site-a", "ep", 1), []byte("x"), nats.Header{event.HdrEdge: {"site-b"}})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Error == nil || ans.Error.Code != 400 {
		t.Fatalf("forged edge header: answer %+v, want a 400 error", ans)
	}
	if len(th.logs.lines("forged msg id refused", "edge=site-a", "msg_id=site-b:ep:1")) != 1 {
		t.Errorf("no log line for the forged msg id:\n%s", th.logs.String())
	}
	st := th.Status()
	if st.Ingest[resForgedMsgID] != 1 || st.Ingest[resForgedEdgeHeader] != 1 {
		t.Errorf("counters %v", st.Ingest)
	}
	ans, err = send(t, b, "site-b", "logging.hare", event.MsgID("site-b", "ep", 1), []byte("real"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Error != nil || ans.Duplicate {
		t.Fatalf("B's real event: answer %+v, want stored", ans)
	}
	msgs := th.stored(t)
	if len(msgs) != 1 || string(msgs[0].Data) != "real" || msgs[0].Header.Get(event.HdrEdge) != "site-b" {
		t.Fatalf("stream: %+v", msgs)
	}
}

func TestEdgeCannotSteerJetStream(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a")
	a := th.connectEdge(t, "site-a")
	// Nats-* headers other than the Msg-Id are dropped: an edge cannot ask
	// for a rollup, an expected stream or a TTL.
	hdr := nats.Header{
		"Nats-Rollup":               {"all"},
		"Nats-Expected-Stream":      {"OTHER"},
		"Nats-Expected-Last-Msg-Id": {"nope"},
		"Nats-TTL":                  {"1s"},
		"nats-msg-id":               {"site-b:ep:9"},
		event.HdrTopic:              {"logging/hare"},
	}
	ans, err := send(t, a, "site-a", "logging.hare", event.MsgID("site-a", "ep", 1), []byte("x"), hdr)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Error != nil || ans.Seq != 1 {
		t.Fatalf("answer %+v", ans)
	}
	m := th.stored(t)[0]
	for _, k := range []string{"Nats-Rollup", "Nats-Expected-Stream", "Nats-Expected-Last-Msg-Id", "Nats-TTL", "nats-msg-id"} {
		if _, ok := m.Header[k]; ok {
			t.Errorf("stored header %s survived", k)
		}
	}
	if m.Header.Get(event.HdrMsgID) != "site-a:ep:1" || m.Header.Get(event.HdrTopic) != "logging/hare" {
		t.Errorf("headers %v", m.Header)
	}
	// An event whose topic maps to the JetStream API is stored under the
	// edge's prefix and not republished there.
	ans, err = send(t, a, "site-a", "$JS.API.STREAM.DELETE."+event.HubStream, event.MsgID("site-a", "ep", 2), nil, nil)
	if err != nil || ans.Error != nil {
		t.Fatalf("answer %+v %v", ans, err)
	}
	if n := len(th.stored(t)); n != 2 {
		t.Fatalf("stream holds %d events, want 2 (still there)", n)
	}
}

func refusedLines(th *testHub, listener, reason string) []string {
	return th.logs.lines("level=WARN", `msg="refused connection"`, "listener="+listener, "reason="+reason)
}

// refusedLine runs dial, which must fail, and waits for the hub's new
// "refused connection" line for listener and reason.
func refusedLine(t *testing.T, th *testHub, listener, reason string, dial func() error) string {
	t.Helper()
	before := len(refusedLines(th, listener, reason))
	if err := dial(); err == nil {
		t.Fatalf("connection accepted, want refused (%s)", reason)
	}
	var line string
	waitFor(t, "refused connection line "+listener+"/"+reason, 5*time.Second, func() bool {
		ls := refusedLines(th, listener, reason)
		if len(ls) > before {
			line = ls[before]
			return true
		}
		return false
	})
	return line
}

func TestRefusedConnectionsAreLogged(t *testing.T) {
	th := startHub(t, testConfig(t), "site-a")
	good := th.edgeTLS(t, "site-a")

	other := t.TempDir()
	if _, err := pki.DevPKI(other, "site-a"); err != nil {
		t.Fatal(err)
	}
	ol := pki.LayoutOf(other)
	otherCert, err := pki.LoadKeyPair(ol.EdgeCert("site-a"), ol.EdgeKey("site-a"))
	if err != nil {
		t.Fatal(err)
	}
	hubPair, err := pki.LoadKeyPair(pkiLayout(th).HubCert, pkiLayout(th).HubKey)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		reason string
		dial   func(addr string) error
	}{
		{"certificate from another CA", "untrusted-certificate", func(addr string) error {
			tc := good.Clone()
			tc.Certificates = []tls.Certificate{otherCert}
			return natsDial(addr, tc)
		}},
		{"no certificate", "no-client-certificate", func(addr string) error {
			tc := good.Clone()
			tc.Certificates = nil
			return natsDial(addr, tc)
		}},
		{"server certificate as client certificate", "bad-certificate", func(addr string) error {
			tc := good.Clone()
			tc.Certificates = []tls.Certificate{hubPair}
			return natsDial(addr, tc)
		}},
		{"TLS 1.1", "tls-version", func(addr string) error {
			tc := good.Clone()
			tc.MinVersion, tc.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
			return natsDial(addr, tc)
		}},
		{"TLS 1.2 below the 1.3 default", "tls-version", func(addr string) error {
			tc := good.Clone()
			tc.MaxVersion = tls.VersionTLS12
			return natsDial(addr, tc)
		}},
		{"plaintext", "plaintext", func(addr string) error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			c.Read(buf) // INFO
			c.Write([]byte("CONNECT {\"verbose\":false}\r\nPUB edge.site-a.x 1\r\nx\r\nPING\r\n"))
			for {
				n, err := c.Read(buf)
				if err != nil {
					return errors.New("closed")
				}
				if strings.Contains(string(buf[:n]), "PONG") {
					return nil
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			line := refusedLine(t, th, "nats", c.reason, func() error { return c.dial(th.Addrs().NATS) })
			if !strings.Contains(line, "remote=127.0.0.1:") {
				t.Errorf("line has no remote address: %s", line)
			}
		})
	}
	if n := len(th.stored(t)); n != 0 {
		t.Fatalf("stream holds %d events", n)
	}
	st := th.Status()
	for _, c := range cases {
		if st.Refused["nats/"+c.reason] == 0 {
			t.Errorf("refused counter nats/%s is 0: %v", c.reason, st.Refused)
		}
	}
}

func natsDial(addr string, tc *tls.Config) error {
	nc, err := nats.Connect("tls://"+addr, nats.Secure(tc), nats.NoReconnect(), nats.Timeout(3*time.Second))
	if err != nil {
		return err
	}
	// TLS 1.3 client certificates are checked after the client's side of
	// the handshake is done: the refusal shows at the first round trip.
	defer nc.Close()
	return nc.Flush()
}

func TestUnlistedAndSupersededCertificates(t *testing.T) {
	cfg := testConfig(t)
	th := startHub(t, cfg, "site-a", "site-b")
	l := pkiLayout(th)

	// site-b's files are removed from the PKI dir: refused.
	tcB := th.edgeTLS(t, "site-b")
	if err := os.Remove(l.EdgeCert("site-b")); err != nil {
		t.Fatal(err)
	}
	line := refusedLine(t, th, "nats", "unlisted-edge", func() error { return natsDial(th.Addrs().NATS, tcB) })
	if !strings.Contains(line, "edge=site-b") || !strings.Contains(line, "fingerprint=") {
		t.Errorf("line: %s", line)
	}

	// site-a re-issued: the old certificate is refused, the new one works.
	tcOld := th.edgeTLS(t, "site-a")
	if _, err := pki.Issue(th.dir, "site-a", pki.IssueOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	refusedLine(t, th, "nats", "superseded-certificate", func() error { return natsDial(th.Addrs().NATS, tcOld) })
	if err := natsDial(th.Addrs().NATS, th.edgeTLS(t, "site-a")); err != nil {
		t.Fatalf("re-issued certificate: %v", err)
	}
}

func TestAllowUnlistedEdges(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.AllowUnlistedEdges = true
	th := startHub(t, cfg, "site-c")
	tc := th.edgeTLS(t, "site-c")
	if err := os.Remove(pkiLayout(th).EdgeCert("site-c")); err != nil {
		t.Fatal(err)
	}
	nc := th.connectTLS(t, "site-c", tc)
	if ans, err := send(t, nc, "site-c", "logging.hare", "site-c:e:1", []byte("x"), nil); err != nil || ans.Error != nil {
		t.Fatalf("answer %+v %v", ans, err)
	}
	if len(th.logs.lines("unlisted edge accepted", "edge=site-c")) != 1 {
		t.Errorf("no flag line:\n%s", th.logs.String())
	}
	waitFor(t, "edge in status", 5*time.Second, func() bool {
		es := th.Edges()
		return len(es) == 1 && es[0].Connected
	})
	if es := th.Edges(); es[0].Listed {
		t.Errorf("edge listed: %+v", es[0])
	}
}

func TestTLS12WhenConfigured(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.TLSMinVersion = "1.2"
	th := startHub(t, cfg, "site-a")
	tc := th.edgeTLS(t, "site-a")
	tc.MaxVersion = tls.VersionTLS12
	nc := th.connectTLS(t, "site-a", tc)
	if ans, err := send(t, nc, "site-a", "logging.hare", "site-a:e:1", []byte("x"), nil); err != nil || ans.Error != nil {
		t.Fatalf("answer %+v %v", ans, err)
	}
	waitFor(t, "edge tls version", 5*time.Second, func() bool {
		es := th.Edges()
		return len(es) == 1 && es[0].TLSVersion == "TLS 1.2"
	})
	// TLS 1.1 stays refused whatever the configuration.
	tc11 := th.edgeTLS(t, "site-a")
	tc11.MinVersion, tc11.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	refusedLine(t, th, "nats", "tls-version", func() error { return natsDial(th.Addrs().NATS, tc11) })
}
