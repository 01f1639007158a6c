package edge

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/txtar"

	"github.com/warren-mesh/warren/internal/admin"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/wire"
)

type corpusCase struct {
	name    string
	hdr     map[string]string
	payload []byte
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	ar, err := txtar.ParseFile("testdata/corpus.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusCase
	for _, f := range ar.Files {
		head, body, _ := bytes.Cut(f.Data, []byte("\n\n"))
		c := corpusCase{name: f.Name, hdr: map[string]string{}}
		for _, line := range strings.Split(string(head), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("%s: bad header line %q", f.Name, line)
			}
			c.hdr[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
		c.payload = bytes.TrimSuffix(body, []byte("\n"))
		if c.hdr["want"] == "" {
			t.Fatalf("%s: no want", f.Name)
		}
		out = append(out, c)
	}
	return out
}

// datagram builds the bytes a case sends.
func (c corpusCase) datagram(t *testing.T) []byte {
	t.Helper()
	b := c.payload
	if c.hdr["hex"] == "true" {
		raw, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			t.Fatalf("%s: hex: %v", c.name, err)
		}
		b = raw
	}
	if p := c.hdr["pad"]; p != "" {
		n, _ := strconv.Atoi(p)
		b = append(bytes.Clone(b), bytes.Repeat([]byte(" "), n-len(b))...)
	}
	if kid := c.hdr["sign"]; kid != "" {
		key := testKey
		if c.hdr["key"] == "wrong" {
			key = bytes.Repeat([]byte{7}, wire.KeySize)
		}
		ts := time.Now()
		if off := c.hdr["ts"]; off != "" {
			d, err := time.ParseDuration(off)
			if err != nil {
				t.Fatal(err)
			}
			ts = ts.Add(d)
		}
		b = seal(t, kid, key, ts, randNonce(), b)
		if n, _ := strconv.Atoi(c.hdr["truncate"]); n > 0 {
			b = b[:len(b)-n]
		}
		if n, _ := strconv.Atoi(c.hdr["append"]); n > 0 {
			b = append(b, make([]byte, n)...)
		}
		if c.hdr["tamper"] == "true" {
			b[len(b)-1] ^= 1
		}
	}
	return b
}

type counts struct {
	accepted, fixed uint64
	rejected        map[string]uint64
}

func countsOf(e *Edge) counts {
	return counts{accepted: e.counters.accepted[event.SourceUDP].Load(), fixed: e.counters.tstFixed.Load(), rejected: snapshot(e.counters.rejected)}
}

func (c counts) sum() uint64 { return c.accepted + total(c.rejected) }

// TestCorpus sends every corpus datagram to a real edge and checks that each
// is accepted in hared's shape or counted under exactly its reason.
func TestCorpus(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.UDP.AllowUnsigned = []string{"127.0.0.1/32", "::1/128"}
	e, logs := startEdge(t, cfg)
	senders := map[string]*net.UDPConn{}
	cases := loadCorpus(t)
	if len(cases) < 30 {
		t.Fatalf("corpus has %d cases, want at least 30", len(cases))
	}
	wantReasons := map[string]uint64{}
	var wantAccepted uint64
	parent := t
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			from := c.hdr["from"]
			if from == "" {
				from = "127.0.0.1"
			}
			s := senders[from]
			if s == nil {
				s = sender(parent, from)
				senders[from] = s
			}
			d := c.datagram(t)
			before := countsOf(e)
			sends := uint64(1)
			if c.hdr["replay"] == "true" {
				send(t, s, e.UDPAddr(), d)
				waitFor(t, "first of the replayed pair", 5*time.Second, func() bool { return countsOf(e).accepted == before.accepted+1 })
				wantAccepted++
				sends = 2
			}
			send(t, s, e.UDPAddr(), d)
			waitFor(t, "the datagram to be counted", 5*time.Second, func() bool { return countsOf(e).sum() >= before.sum()+sends })
			after := countsOf(e)
			if after.sum() != before.sum()+sends {
				t.Fatalf("counted %d times, want %d", after.sum()-before.sum(), sends)
			}
			want := c.hdr["want"]
			if want == "accepted" {
				wantAccepted++
				if after.accepted != before.accepted+1 {
					t.Fatalf("not accepted; rejections now %v", diff(before.rejected, after.rejected))
				}
				wantFixed := uint64(0)
				if c.hdr["fixed"] == "true" {
					wantFixed = 1
				}
				if after.fixed-before.fixed != wantFixed {
					t.Errorf("tst_fixed counted %d, want %d", after.fixed-before.fixed, wantFixed)
				}
				checkLastEvent(t, e, c, from)
				return
			}
			wantReasons[want]++
			got := diff(before.rejected, after.rejected)
			if len(got) != 1 || got[want] != 1 {
				t.Fatalf("rejections %v, want exactly one %q", got, want)
			}
			if _, known := e.counters.rejected[want]; !known {
				t.Fatalf("reason %q is not a known reason", want)
			}
		})
	}
	if err := e.Health(); err != nil {
		t.Fatalf("edge unhealthy after the corpus: %v", err)
	}

	// Every count is visible in /status and /metrics.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st Status
	if err := admin.Get(ctx, e.AdminAddr(), "/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Accepted[event.SourceUDP] != wantAccepted {
		t.Errorf("status accepted udp = %d, want %d", st.Accepted[event.SourceUDP], wantAccepted)
	}
	var metrics []byte
	if err := admin.Get(ctx, e.AdminAddr(), "/metrics", &metrics); err != nil {
		t.Fatal(err)
	}
	for reason, n := range wantReasons {
		if st.Rejected[reason] != n {
			t.Errorf("status rejected[%s] = %d, want %d", reason, st.Rejected[reason], n)
		}
		line := fmt.Sprintf("warren_edge_events_rejected_total{reason=%q} %d\n", reason, n)
		if !bytes.Contains(metrics, []byte(line)) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("edge log:\n%s", logs)
	}
}

func diff(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// checkLastEvent asserts the newest stored event is the case's datagram in
// hared's shape: every key of the sent JSON (except remote) with its value,
// remote = sender IP, integer tst, provenance headers.
func checkLastEvent(t *testing.T, e *Edge, c corpusCase, from string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.JetStream().Stream(ctx, event.EdgeStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "ev.logging.hare")
	if err != nil {
		t.Fatal(err)
	}
	got := checkHaredShape(t, m.Data, from)
	var sent map[string]any
	dec := json.NewDecoder(bytes.NewReader(c.payload))
	dec.UseNumber()
	if err := dec.Decode(&sent); err != nil {
		t.Fatalf("corpus payload: %v", err)
	}
	for k, v := range sent {
		if k == "remote" || k == "tst" {
			continue
		}
		gv, ok := got[k]
		if !ok {
			t.Errorf("key %q dropped: %s", k, m.Data)
			continue
		}
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(gv)
		if !bytes.Equal(a, b) {
			t.Errorf("key %q: sent %s, stored %s", k, a, b)
		}
	}
	wantAuth := "unsigned"
	if kid := c.hdr["sign"]; kid != "" {
		wantAuth = "signed:" + kid
	}
	h := m.Header
	for k, want := range map[string]string{
		event.HdrEdge: "test-edge", event.HdrSource: event.SourceUDP, event.HdrAuth: wantAuth,
		event.HdrTopic: event.HareTopic, event.HdrEpoch: e.Epoch(),
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if host, _, err := net.SplitHostPort(h.Get(event.HdrRemote)); err != nil || host != from {
		t.Errorf("header %s = %q, want %s:port", event.HdrRemote, h.Get(event.HdrRemote), from)
	}
	if _, err := time.Parse(time.RFC3339Nano, h.Get(event.HdrReceived)); err != nil {
		t.Errorf("header %s: %v", event.HdrReceived, err)
	}
}
