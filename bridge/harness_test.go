package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/natsembed"
)

// Test harness: an edge server with the EDGE stream made exactly per the
// contract, a hub server with mutual TLS and per-edge permissions, and a
// small stand-in for the hub's ingest service.

const testTopic = "logging/hare"

// syncBuf collects log output; it is printed when a test fails.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger returns a logger whose output is shown only if tb fails.
func testLogger(tb testing.TB) *slog.Logger {
	buf := &syncBuf{}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// waitFor polls cond every few milliseconds until it holds or the deadline
// passes; then it fails the test with what().
func waitFor(tb testing.TB, timeout time.Duration, what func() string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; ; d = min(2*d, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s: %s", timeout, what())
		}
		time.Sleep(d)
	}
}

func randomEpoch(tb testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// testEdge is an edge server with the EDGE stream; it is a Source.
type testEdge struct {
	srv   *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	id    string
	epoch string

	mu       sync.Mutex
	payloads map[uint64]string // what was stored at each sequence
	count    int               // events published so far
}

func (e *testEdge) JetStream() jetstream.JetStream { return e.js }
func (e *testEdge) EdgeID() string                 { return e.id }
func (e *testEdge) Epoch() string                  { return e.epoch }

func startEdge(tb testing.TB, id, dir string) *testEdge {
	tb.Helper()
	opts := &server.Options{
		ServerName:      "edge-" + id,
		DontListen:      true,
		JetStream:       true,
		JetStreamDomain: event.EdgeDomain,
		StoreDir:        dir,
	}
	s, err := natsembed.Start(opts, quietLogger(), 10*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		natsembed.Stop(s)
		tb.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       event.EdgeStream,
		Subjects:   []string{event.EdgeSubjectPrefix + ">"},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		tb.Fatal(err)
	}
	e := &testEdge{srv: s, nc: nc, js: js, id: id, epoch: randomEpoch(tb), payloads: map[uint64]string{}}
	tb.Cleanup(e.stop)
	return e
}

func (e *testEdge) stop() {
	if e.nc != nil {
		e.nc.Close()
	}
	natsembed.Stop(e.srv)
}

// publish stores n events in the EDGE stream (as the edge's ingest does:
// synchronously durable, provenance headers) and returns when all are
// acknowledged.
func (e *testEdge) publish(tb testing.TB, n int) {
	tb.Helper()
	subj, err := event.EdgeSubject(testTopic)
	if err != nil {
		tb.Fatal(err)
	}
	type pending struct {
		fut  jetstream.PubAckFuture
		data string
	}
	const chunk = 2000
	e.mu.Lock()
	base := e.count
	e.count += n
	e.mu.Unlock()
	for off := base; off < base+n; off += chunk {
		var futs []pending
		for i := off; i < min(off+chunk, base+n); i++ {
			data := fmt.Sprintf(`{"edge":%q,"n":%d,"pad":"%032d"}`, e.id, i, i)
			m := &nats.Msg{Subject: subj, Data: []byte(data), Header: nats.Header{}}
			m.Header.Set(event.HdrEdge, e.id)
			m.Header.Set(event.HdrSource, event.SourceUDP)
			m.Header.Set(event.HdrTopic, testTopic)
			m.Header.Set(event.HdrReceived, time.Now().UTC().Format(time.RFC3339Nano))
			// JetStream control headers meant for the edge stream only:
			// forwarded, they would make the hub's stream refuse the event
			// or take it for another.
			m.Header.Set(event.HdrMsgID, "hare:k1:"+e.epoch+strconv.Itoa(i))
			m.Header.Set("Nats-Expected-Stream", event.EdgeStream)
			f, err := e.js.PublishMsgAsync(m)
			if err != nil {
				tb.Fatal(err)
			}
			futs = append(futs, pending{f, data})
		}
		for _, p := range futs {
			select {
			case ack := <-p.fut.Ok():
				if ack.Duplicate {
					tb.Fatalf("edge publish: duplicate")
				}
				e.mu.Lock()
				e.payloads[ack.Sequence] = p.data
				e.mu.Unlock()
			case err := <-p.fut.Err():
				tb.Fatalf("edge publish: %v", err)
			case <-time.After(10 * time.Second):
				tb.Fatal("edge publish: no PubAck")
			}
		}
	}
}

// stored is the number of events in the EDGE stream (not yet confirmed).
func (e *testEdge) stored(tb testing.TB) (msgs, bytes uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, event.EdgeStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs, info.State.Bytes
}

// consumerState describes the bridge's edge consumer, for failure messages.
func (e *testEdge) consumerState() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, event.EdgeStream, Durable)
	if err != nil {
		return err.Error()
	}
	i := c.CachedInfo()
	return fmt.Sprintf("delivered %d (stream %d), ack floor %d, pending %d, ack pending %d, redelivered %d, waiting %d",
		i.Delivered.Consumer, i.Delivered.Stream, i.AckFloor.Stream, i.NumPending, i.NumAckPending, i.NumRedelivered, i.NumWaiting)
}

// testPKI is a development PKI with certificates for the given edges and
// for the ingest stand-in.
func testPKI(tb testing.TB, edges ...string) pki.Layout {
	tb.Helper()
	l, err := pki.DevPKI(tb.TempDir(), append(edges, "ingest")...)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// bridgeConfig is a configuration for edge id against the hub at url, with
// timers short enough for tests.
func bridgeConfig(l pki.Layout, id, url string) Config {
	c := DefaultConfig()
	c.URL = url
	c.CAFile = l.CACert
	c.CertFile = l.EdgeCert(id)
	c.KeyFile = l.EdgeKey(id)
	c.BackoffMin = 20 * time.Millisecond
	c.BackoffMax = 200 * time.Millisecond
	c.PublishTimeout = time.Second
	c.AckWait = 10 * time.Second
	c.Heartbeat = 500 * time.Millisecond
	c.DialTimeout = 2 * time.Second
	return c
}

// testHub is a hub server with mutual TLS and the HUB stream, plus the
// ingest stand-in.
type testHub struct {
	l     pki.Layout
	dir   string
	edges []string
	srv   *server.Server
	nc    *nats.Conn // the ingest stand-in's connection
	js    jetstream.JetStream

	mu        sync.Mutex
	refuse    map[uint64]int    // sequence -> refusals left
	dropReply map[uint64]int    // sequence -> answers to drop
	blocked   map[string]uint64 // edge -> sequence it must resend first
	refused   int               // publishes answered with an error
	beats     []Heartbeat
}

// startHub starts a hub on port (0: any) with its store in dir.
func startHub(tb testing.TB, l pki.Layout, dir string, port int, edges ...string) *testHub {
	tb.Helper()
	h := &testHub{l: l, dir: dir, edges: edges, refuse: map[uint64]int{}, dropReply: map[uint64]int{}, blocked: map[string]uint64{}}
	h.start(tb, port)
	tb.Cleanup(h.stop)
	return h
}

func (h *testHub) start(tb testing.TB, port int) {
	tb.Helper()
	tlsCfg, err := pki.ServerTLSConfig(h.l.CACert, h.l.HubCert, h.l.HubKey, tls.VersionTLS13)
	if err != nil {
		tb.Fatal(err)
	}
	users := []*server.User{{Username: pki.EdgeUserName("ingest")}}
	for _, id := range h.edges {
		users = append(users, &server.User{
			Username: pki.EdgeUserName(id),
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{event.IngestPrefix + id + ".>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_" + id + ".>"}},
			},
		})
	}
	if port == 0 {
		port = -1
	}
	opts := &server.Options{
		ServerName:      "hub",
		Host:            "127.0.0.1",
		Port:            port,
		JetStream:       true,
		JetStreamDomain: event.HubDomain,
		StoreDir:        h.dir,
		TLS:             true,
		TLSVerify:       true,
		TLSMap:          true,
		TLSConfig:       tlsCfg,
		TLSTimeout:      5,
		// Only the ingest user until the ingest subscribes (as the real
		// hub refuses edges until then): an edge publishing into no
		// responders could otherwise get a later event stored first.
		Users: users[:1],
	}
	s, err := natsembed.Start(opts, quietLogger(), 10*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	h.srv = s
	ctls, err := pki.ClientTLSConfig(h.l.CACert, h.l.EdgeCert("ingest"), h.l.EdgeKey("ingest"))
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect("tls://"+h.addr(), nats.Secure(ctls), nats.NoReconnect())
	if err != nil {
		tb.Fatal(err)
	}
	h.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	h.js = js
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       event.HubStream,
		Subjects:   []string{event.HubSubjectPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Duplicates: 24 * time.Hour,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := nc.Subscribe(event.IngestPrefix+"*.>", h.ingest); err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	open := opts.Clone()
	open.Users = users
	if err := s.ReloadOptions(open); err != nil {
		tb.Fatalf("open the test hub to edges: %v", err)
	}
}

func (h *testHub) stop() {
	if h.nc != nil {
		h.nc.Close()
	}
	natsembed.Stop(h.srv)
}

// addr is the hub's client address host:port.
func (h *testHub) addr() string { return h.srv.Addr().(*net.TCPAddr).String() }

func (h *testHub) port() int { return h.srv.Addr().(*net.TCPAddr).Port }

func (h *testHub) url() string { return "tls://" + h.addr() }

func respondErr(m *nats.Msg, code int, desc string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "description": desc}})
	_ = m.Respond(b)
}

// ingest does what the hub's ingest service does: check the Msg-Id against
// the subject's edge id, keep per-edge order (after refusing seq k it
// refuses that edge's later events until k comes again), and store the
// event on hub.ev.<id>.<rest>; JetStream answers the edge directly with the
// PubAck. Test knobs refuse an event once or drop the answer once.
func (h *testHub) ingest(m *nats.Msg) {
	id, rest, err := event.SplitIngest(m.Subject)
	if err != nil {
		respondErr(m, 400, err.Error())
		return
	}
	if rest == StatusSubject {
		var hb Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err == nil {
			h.mu.Lock()
			h.beats = append(h.beats, hb)
			h.mu.Unlock()
		}
		_ = m.Respond([]byte("ok"))
		return
	}
	eid, _, seq, err := event.ParseMsgID(m.Header.Get(event.HdrMsgID))
	if err != nil || eid != id {
		respondErr(m, 400, "msg id does not match the edge")
		return
	}
	h.mu.Lock()
	if want, ok := h.blocked[id]; ok && want != seq {
		h.refused++
		h.mu.Unlock()
		respondErr(m, 503, fmt.Sprintf("waiting for seq %d of edge %s", want, id))
		return
	}
	delete(h.blocked, id)
	if h.refuse[seq] > 0 {
		h.refuse[seq]--
		h.blocked[id] = seq
		h.refused++
		h.mu.Unlock()
		respondErr(m, 503, "injected refusal")
		return
	}
	reply := m.Reply
	if h.dropReply[seq] > 0 {
		h.dropReply[seq]--
		reply = ""
	}
	h.mu.Unlock()
	out := &nats.Msg{Subject: event.HubSubject(id, rest), Reply: reply, Header: m.Header, Data: m.Data}
	_ = h.nc.PublishMsg(out)
}

func (h *testHub) heartbeats() []Heartbeat {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Heartbeat(nil), h.beats...)
}

// stored is the number of events in the HUB stream.
func (h *testHub) stored(tb testing.TB) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.js.Stream(ctx, event.HubStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}

// check reads the whole HUB stream and proves that the events of every
// given edge store arrived exactly once and in order: per (edge, epoch) the
// sequences are strictly increasing (order, no duplicate), every stored
// sequence is there (no loss), the Msg-Id, provenance headers, subject and
// payload are right, and the edge's JetStream control headers were not
// forwarded.
func (h *testHub) check(tb testing.TB, edges ...*testEdge) {
	tb.Helper()
	want := map[string]map[uint64]string{} // edge:epoch -> seq -> payload
	total := 0
	for _, e := range edges {
		e.mu.Lock()
		m := map[uint64]string{}
		for k, v := range e.payloads {
			m[k] = v
		}
		e.mu.Unlock()
		key := e.id + ":" + e.epoch
		if want[key] != nil {
			tb.Fatalf("edge %s listed twice", key)
		}
		want[key] = m
		total += len(m)
	}
	n := h.stored(tb)
	if n != uint64(total) {
		tb.Fatalf("hub stream holds %d events, want %d", n, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := h.js.OrderedConsumer(ctx, event.HubStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		tb.Fatal(err)
	}
	defer it.Stop()
	last := map[string]uint64{}
	for i := uint64(0); i < n; i++ {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			tb.Fatalf("reading hub stream at %d: %v", i, err)
		}
		hd := m.Headers()
		id, epoch, seq, err := event.ParseMsgID(hd.Get(event.HdrMsgID))
		if err != nil {
			tb.Fatalf("hub event %d: %v", i, err)
		}
		key := id + ":" + epoch
		exp, ok := want[key]
		if !ok {
			tb.Fatalf("hub event %d from unknown store %s", i, key)
		}
		if seq <= last[key] {
			tb.Fatalf("hub event %d: %s seq %d after seq %d (order or duplicate)", i, key, seq, last[key])
		}
		last[key] = seq
		payload, ok := exp[seq]
		if !ok {
			tb.Fatalf("hub event %d: %s seq %d was never stored at the edge", i, key, seq)
		}
		if string(m.Data()) != payload {
			tb.Fatalf("hub event %s seq %d: payload %q, want %q", key, seq, m.Data(), payload)
		}
		delete(exp, seq)
		if got, want := m.Subject(), event.HubSubject(id, "logging.hare"); got != want {
			tb.Fatalf("hub event %s seq %d: subject %q, want %q", key, seq, got, want)
		}
		if hd.Get(event.HdrEdge) != id || hd.Get(event.HdrEpoch) != epoch || hd.Get(event.HdrSeq) != strconv.FormatUint(seq, 10) {
			tb.Fatalf("hub event %s seq %d: provenance headers %v", key, seq, hd)
		}
		if hd.Get(event.HdrSource) != event.SourceUDP || hd.Get(event.HdrTopic) != testTopic {
			tb.Fatalf("hub event %s seq %d: edge headers lost: %v", key, seq, hd)
		}
		for k := range hd {
			if strings.HasPrefix(strings.ToLower(k), "nats-") && k != event.HdrMsgID {
				tb.Fatalf("hub event %s seq %d: edge control header %s forwarded", key, seq, k)
			}
		}
	}
	for key, rest := range want {
		if len(rest) != 0 {
			tb.Fatalf("%s: %d events never reached the hub", key, len(rest))
		}
	}
}

// runBridge starts b.Run and stops it at cleanup (or when the returned
// stop is called).
func runBridge(tb testing.TB, b *Bridge) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				tb.Errorf("Run did not return after cancel")
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// waitDrained waits until the edge stream is empty and the hub holds want
// events.
func waitDrained(tb testing.TB, e *testEdge, h *testHub, want uint64, timeout time.Duration) {
	tb.Helper()
	waitFor(tb, timeout, func() string {
		m, _ := e.stored(tb)
		return fmt.Sprintf("edge holds %d, hub holds %d of %d; edge consumer: %s", m, h.stored(tb), want, e.consumerState())
	}, func() bool {
		m, _ := e.stored(tb)
		return m == 0 && h.stored(tb) == want
	})
}

// faultProxy is a TCP proxy between the bridge and the hub that can stop
// carrying bytes without closing anything (a blackholed network path).
// Thaw resets every connection that existed while frozen: after such an
// outage both ends have given up on them, and their held bytes are dropped.
type faultProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	thawed chan struct{} // closed when the proxy thaws
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(tb testing.TB, target string) *faultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, thawed: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.thawed)
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

func (p *faultProxy) url() string { return "tls://" + p.ln.Addr().String() }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst, holding each chunk while the proxy is frozen.
func (p *faultProxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		thawed := p.thawed
		p.mu.Unlock()
		<-thawed
		if !p.alive(src) {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *faultProxy) alive(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[c]
}

func (p *faultProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen = true
		p.thawed = make(chan struct{})
	}
}

func (p *faultProxy) thaw() {
	p.mu.Lock()
	if !p.frozen {
		p.mu.Unlock()
		return
	}
	p.frozen = false
	old := p.conns
	p.conns = map[net.Conn]bool{}
	close(p.thawed)
	p.mu.Unlock()
	for c := range old {
		c.Close()
	}
}

func (p *faultProxy) close() {
	p.ln.Close()
	p.thaw()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
