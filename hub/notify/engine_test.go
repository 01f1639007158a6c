package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/natsembed"
)

// testHub is an embedded nats-server with the hub's event stream.
type testHub struct {
	t   testing.TB
	dir string
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func startHub(t testing.TB, dir string) *testHub {
	t.Helper()
	opts := &server.Options{
		ServerName:      "hub-test",
		Host:            "127.0.0.1",
		Port:            -1,
		JetStream:       true,
		JetStreamDomain: event.HubDomain,
		StoreDir:        dir,
	}
	srv, err := natsembed.Start(opts, slog.New(slog.DiscardHandler), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
	if err != nil {
		natsembed.Stop(srv)
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       event.HubStream,
		Subjects:   []string{event.HubSubjectPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &testHub{t: t, dir: dir, srv: srv, nc: nc, js: js}
	t.Cleanup(h.stop)
	return h
}

func (h *testHub) stop() {
	if h.nc != nil {
		h.nc.Close()
	}
	natsembed.Stop(h.srv)
}

// publish stores an edge event the way the hub's ingest does.
func (h *testHub) publish(edge, topic, id string, payload []byte) {
	h.t.Helper()
	subj, err := event.TopicToSubject(topic)
	if err != nil {
		h.t.Fatal(err)
	}
	m := nats.NewMsg(event.HubSubject(edge, subj))
	m.Data = payload
	m.Header.Set(event.HdrMsgID, id)
	m.Header.Set(event.HdrEdge, edge)
	m.Header.Set(event.HdrSource, event.SourceUDP)
	m.Header.Set(event.HdrTopic, topic)
	m.Header.Set(event.HdrReceived, time.Now().UTC().Format(time.RFC3339Nano))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		h.t.Fatal(err)
	}
}

func (h *testHub) publishHare(n int, user func(i int) string) {
	h.t.Helper()
	for i := range n {
		payload := fmt.Sprintf(`{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":%d,"tty":"pts/3","user":"%s"}`, 1795384609+i, user(i))
		h.publish("site-1", "logging/hare", fmt.Sprintf("site-1:ep:%d", i), []byte(payload))
	}
}

// runningEngine runs an Engine until the test ends or stop is called.
type runningEngine struct {
	*Engine
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned
	reg    *prometheus.Registry
}

func (r *runningEngine) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("Run: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

func newEngine(t testing.TB, h *testHub, doc string, setup func(*Engine)) *runningEngine {
	t.Helper()
	cfg, err := parseYAMLConfig(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := New(cfg, Deps{JS: h.js, NC: h.nc, Registry: reg, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningEngine{Engine: e, cancel: cancel, done: make(chan struct{}), reg: reg}
	go func() {
		r.err = e.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	return r
}

// testLogger logs to the test at warn and above (WARREN_TEST_LOG=debug
// shows everything).
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WARREN_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.Counter != nil {
				total += m.Counter.GetValue()
			} else if m.Gauge != nil {
				total += m.Gauge.GetValue()
			}
		}
	}
	return total
}

// fastRetry is a retry budget for tests: quick backoff.
const fastRetry = `retry: {initial_backoff: 20ms, max_backoff: 100ms, max_attempts: 4}`

func TestEngineToFile(t *testing.T) {
	h := startHub(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "logins.log")
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  file: {type: file, config: {path: %q}}
routes:
  - match: {topic: logging/hare, fields: [{key: user, ne: backup}]}
    targets: [file]
    format: "{user}@{hostname} from {rhost} ({service}) tst={tst:d}"
`, out), nil)
	h.publishHare(20, func(i int) string {
		if i%5 == 4 {
			return "backup"
		}
		return fmt.Sprintf("u%02d", i)
	})
	// A malformed event (no topic anywhere) is counted and skipped.
	bad := nats.NewMsg(event.HubSubjectPrefix + "x")
	bad.Data = []byte("junk")
	if _, err := h.js.PublishMsg(t.Context(), bad); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "16 lines", 10*time.Second, func() bool { return len(readLines(t, out)) >= 16 })
	lines := readLines(t, out)
	if len(lines) != 16 {
		t.Fatalf("%d lines", len(lines))
	}
	if lines[0] != "u00@vm from 198.51.100.7 (sshd) tst=1795384609" || lines[15] != "u18@vm from 198.51.100.7 (sshd) tst=1795384627" {
		t.Errorf("lines: %q ... %q", lines[0], lines[15])
	}
	waitFor(t, "metrics", 5*time.Second, func() bool {
		return metricValue(t, e.reg, "warren_notify_sent_total", map[string]string{"target": "file"}) == 16 &&
			metricValue(t, e.reg, "warren_notify_events_total", map[string]string{"result": "invalid"}) == 1 &&
			metricValue(t, e.reg, "warren_notify_events_total", map[string]string{"result": "unrouted"}) == 4
	})
	// Every event is acked and the outbox is empty.
	waitFor(t, "acks", 10*time.Second, func() bool {
		ci, err := h.js.Consumer(t.Context(), event.HubStream, "notify")
		if err != nil {
			return false
		}
		info, err := ci.Info(t.Context())
		ob, err2 := h.js.Stream(t.Context(), "NOTIFY_OUTBOX")
		if err != nil || err2 != nil {
			return false
		}
		oi, err := ob.Info(t.Context())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && oi.State.Msgs == 0
	})
	e.stop(t)
}

// faultServer is an HTTP endpoint whose answers the test scripts.
type faultServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []faultRequest
	answer   func(n int, key string, r *http.Request, w http.ResponseWriter) // n counts from 1
}

type faultRequest struct {
	key  string
	at   time.Time
	body map[string]any
}

func newFaultServer(t testing.TB, answer func(n int, key string, r *http.Request, w http.ResponseWriter)) *faultServer {
	fs := &faultServer{answer: answer}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		key := r.Header.Get("Idempotency-Key")
		fs.mu.Lock()
		fs.requests = append(fs.requests, faultRequest{key: key, at: time.Now(), body: body})
		n := len(fs.requests)
		fs.mu.Unlock()
		fs.answer(n, key, r, w)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *faultServer) got() []faultRequest {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]faultRequest(nil), fs.requests...)
}

func TestEngineRetries500(t *testing.T) {
	h := startHub(t, t.TempDir())
	srv := newFaultServer(t, func(n int, _ string, _ *http.Request, w http.ResponseWriter) {
		if n <= 2 {
			http.Error(w, "boom", http.StatusInternalServerError)
		}
	})
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  hook: {type: webhook, config: {url: %q}, %s}
routes: [{targets: [hook], format: "{user}"}]
`, srv.URL, fastRetry), nil)
	h.publishHare(1, func(int) string { return "root" })
	waitFor(t, "3 requests", 10*time.Second, func() bool { return len(srv.got()) >= 3 })
	waitFor(t, "sent", 5*time.Second, func() bool {
		return metricValue(t, e.reg, "warren_notify_sent_total", nil) == 1
	})
	reqs := srv.got()
	if len(reqs) != 3 || reqs[0].key != reqs[2].key || reqs[2].body["message"] != "root" {
		t.Fatalf("requests: %+v", reqs)
	}
	if got := metricValue(t, e.reg, "warren_notify_retried_total", nil); got != 2 {
		t.Errorf("retried = %v", got)
	}
	if got := metricValue(t, e.reg, "warren_notify_failed_total", nil); got != 2 {
		t.Errorf("failed = %v", got)
	}
	e.stop(t)
}

func TestEngineRetryAfter(t *testing.T) {
	h := startHub(t, t.TempDir())
	srv := newFaultServer(t, func(n int, _ string, _ *http.Request, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}
	})
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  hook: {type: webhook, config: {url: %q}, %s}
routes: [{targets: [hook]}]
`, srv.URL, fastRetry), nil)
	h.publishHare(3, func(i int) string { return fmt.Sprint("u", i) })
	waitFor(t, "4 requests", 15*time.Second, func() bool { return len(srv.got()) >= 4 })
	waitFor(t, "3 sent", 5*time.Second, func() bool {
		return metricValue(t, e.reg, "warren_notify_sent_total", nil) == 3
	})
	reqs := srv.got()
	// The whole target waits out Retry-After (backoff alone is 20-100ms):
	// no request follows the 429 sooner than one second.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < time.Second {
		t.Errorf("second request %s after the 429", gap)
	}
	e.stop(t)
}

func TestEngineTimeoutRetried(t *testing.T) {
	h := startHub(t, t.TempDir())
	release := make(chan struct{})
	srv := newFaultServer(t, func(n int, _ string, r *http.Request, w http.ResponseWriter) {
		if n == 1 {
			select { // hang until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
		}
	})
	defer close(release)
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  hook: {type: webhook, config: {url: %q, timeout: 30s}, timeout: 200ms, %s}
routes: [{targets: [hook]}]
`, srv.URL, fastRetry), nil)
	h.publishHare(1, func(int) string { return "root" })
	waitFor(t, "sent after a timeout", 10*time.Second, func() bool {
		return metricValue(t, e.reg, "warren_notify_sent_total", nil) == 1
	})
	if reqs := srv.got(); len(reqs) != 2 || reqs[0].key != reqs[1].key {
		t.Errorf("requests: %+v", reqs)
	}
	e.stop(t)
}

// TestEngineDeadLetterAndFailover: a 400 is not retried; a 500 is retried
// until the budget runs out. Both end in the dead-letter stream and go to
// the failover target.
func TestEngineDeadLetterAndFailover(t *testing.T) {
	h := startHub(t, t.TempDir())
	srv := newFaultServer(t, func(_ int, _ string, r *http.Request, w http.ResponseWriter) {
		b := r.Header.Get("Idempotency-Key")
		if strings.Contains(b, "site-1:ep:0/") {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		http.Error(w, "down", http.StatusBadGateway)
	})
	fallback := filepath.Join(t.TempDir(), "fallback.log")
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  hook: {type: webhook, config: {url: %q}, failover: spool, retry: {initial_backoff: 10ms, max_backoff: 20ms, max_attempts: 3}}
  spool: {type: file, config: {path: %q}}
routes: [{name: page, targets: [hook], format: "{user}"}]
`, srv.URL, fallback), nil)
	h.publishHare(2, func(i int) string { return fmt.Sprint("u", i) })
	waitFor(t, "2 failovers", 15*time.Second, func() bool { return len(readLines(t, fallback)) == 2 })
	reqs := srv.got()
	per := map[string]int{}
	for _, r := range reqs {
		per[r.key]++
	}
	if per["site-1:ep:0/page/hook"] != 1 || per["site-1:ep:1/page/hook"] != 3 {
		t.Errorf("attempts per notification: %v", per)
	}
	dlq, err := h.js.Stream(t.Context(), "NOTIFY_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64][2]string{1: {"not retryable", "1"}, 2: {"gave up after 3 attempts", "3"}} {
		m, err := dlq.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m.Header.Get(hdrNotifyReason), want[0]) || m.Header.Get(hdrNotifyAttempts) != want[1] || m.Subject != "notify.dlq.hook" {
			t.Errorf("dlq %d: %s %v", seq, m.Subject, m.Header)
		}
		rec, err := decodeRecord(m.Data)
		if err != nil || rec.Target != "hook" {
			t.Errorf("dlq record: %+v %v", rec, err)
		}
	}
	if got := metricValue(t, e.reg, "warren_notify_deadlettered_total", map[string]string{"target": "hook"}); got != 2 {
		t.Errorf("deadlettered = %v", got)
	}
	e.stop(t)
}

// TestEngineIsolation: a target that hangs does not hold up another.
func TestEngineIsolation(t *testing.T) {
	h := startHub(t, t.TempDir())
	release := make(chan struct{})
	srv := newFaultServer(t, func(_ int, _ string, r *http.Request, w http.ResponseWriter) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	out := filepath.Join(t.TempDir(), "fast.log")
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  slow: {type: webhook, config: {url: %q}, timeout: 1m}
  fast: {type: file, config: {path: %q}}
routes: [{targets: [slow, fast], format: "{user}"}]
`, srv.URL, out), nil)
	const n = 50
	h.publishHare(n, func(i int) string { return fmt.Sprint("u", i) })
	waitFor(t, "fast target done", 10*time.Second, func() bool { return len(readLines(t, out)) == n })
	// The slow worker's first request may still be on its way; once it
	// hangs there, no second one may follow.
	waitFor(t, "slow target's first request", 10*time.Second, func() bool { return len(srv.got()) >= 1 })
	if got := len(srv.got()); got != 1 {
		t.Errorf("slow target got %d requests while hung", got)
	}
	close(release)
	waitFor(t, "slow target done", 10*time.Second, func() bool {
		return metricValue(t, e.reg, "warren_notify_sent_total", map[string]string{"target": "slow"}) == n
	})
	e.stop(t)
}

// countingWebhook starts a webhook receiver that counts the requests per
// Idempotency-Key (key -> *atomic.Int32) and returns it with a notifier
// config that sends every login there.
func countingWebhook(t *testing.T) (*sync.Map, string) {
	count := &sync.Map{}
	srv := newFaultServer(t, func(_ int, key string, _ *http.Request, _ http.ResponseWriter) {
		v, _ := count.LoadOrStore(key, new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
	})
	return count, fmt.Sprintf(`
delivery: {deliver_policy: all, batch: 16, ack_wait: 1s}
targets:
  hook: {type: webhook, config: {url: %q}, timeout: 300ms, %s}
routes: [{name: r, targets: [hook], format: "{user}"}]
`, srv.URL, fastRetry)
}

// TestEngineExactlyOnceAcrossCrash stops the engine abruptly (its
// connection closed between a delivery's record and its ack, the server
// shut down with notifications pending) and restarts it on the same store:
// every notification is delivered exactly once.
func TestEngineExactlyOnceAcrossCrash(t *testing.T) {
	dir := t.TempDir()
	h := startHub(t, dir)
	count, doc := countingWebhook(t)
	const n = 200
	h.publishHare(n, func(i int) string { return fmt.Sprint("u", i) })

	// The engine has its own connection, so closing it is a crash of the
	// notifier, not of the test's publisher.
	enc, err := nats.Connect(h.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	ejs, _ := jetstream.New(enc)
	cfg, err := parseYAMLConfig(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	e1, err := New(cfg, Deps{JS: ejs, NC: enc, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	crashed := make(chan struct{})
	var once sync.Once
	var acks atomic.Int32
	e1.hookBeforeAck = func(string) {
		if acks.Add(1) == 30 {
			once.Do(func() {
				enc.Close() // the ack of this delivery is never sent
				close(crashed)
			})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e1.Run(ctx) }()
	select {
	case <-crashed:
	case <-time.After(20 * time.Second):
		t.Fatal("no crash")
	}
	cancel()
	<-done
	delivered := 0
	count.Range(func(_, _ any) bool { delivered++; return true })
	if delivered < 30 || delivered >= n {
		t.Fatalf("before the restart %d of %d delivered; the test wants a crash in the middle", delivered, n)
	}
	h.stop()

	h2 := startHub(t, dir)
	e2 := newEngine(t, h2, doc, nil)
	waitFor(t, "all delivered", 30*time.Second, func() bool {
		k := 0
		count.Range(func(_, _ any) bool { k++; return true })
		return k == n
	})
	// Give a duplicate the chance to show up, then check.
	waitFor(t, "outbox drained", 10*time.Second, func() bool {
		ob, err := h2.js.Stream(t.Context(), "NOTIFY_OUTBOX")
		if err != nil {
			return false
		}
		info, err := ob.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	count.Range(func(k, v any) bool {
		if c := v.(*atomic.Int32).Load(); c != 1 {
			t.Errorf("%s delivered %d times", k, c)
		}
		return true
	})
	if got := metricValue(t, e2.reg, "warren_notify_skipped_total", nil); got < 1 {
		t.Errorf("skipped_total = %v: the crashed delivery was not caught by its record", got)
	}
	e2.stop(t)
}

// TestEngineExactlyOnceWhenDeliveryStateIsLost covers a server whose
// consumer state lags what it delivered, as after a SIGKILL: every event
// and record comes again on what looks like its first delivery. The
// delivery counts cannot be trusted for anything stored before the
// restart, so each notification is looked up and none is sent twice.
func TestEngineExactlyOnceWhenDeliveryStateIsLost(t *testing.T) {
	dir := t.TempDir()
	h := startHub(t, dir)
	count, doc := countingWebhook(t)
	const n = 50
	h.publishHare(n, func(i int) string { return fmt.Sprint("u", i) })
	delivered := func() int {
		k := 0
		count.Range(func(_, _ any) bool { k++; return true })
		return k
	}
	e1 := newEngine(t, h, doc, nil)
	waitFor(t, "all delivered", 30*time.Second, func() bool { return delivered() == n })
	waitFor(t, "outbox drained", 10*time.Second, func() bool {
		ob, err := h.js.Stream(t.Context(), "NOTIFY_OUTBOX")
		if err != nil {
			return false
		}
		info, err := ob.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	e1.stop(t)

	// Forget every delivery: the consumers start over and the restarted
	// server no longer remembers the outbox's message ids.
	for _, stream := range []string{event.HubStream, "NOTIFY_OUTBOX"} {
		s, err := h.js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		names := s.ConsumerNames(t.Context())
		for name := range names.Name() {
			if err := s.DeleteConsumer(t.Context(), name); err != nil {
				t.Fatal(err)
			}
		}
		if err := names.Err(); err != nil {
			t.Fatal(err)
		}
	}
	h.stop()
	h2 := startHub(t, dir)
	e2 := newEngine(t, h2, doc, nil)
	waitFor(t, "every notification skipped or sent again", 30*time.Second, func() bool {
		again := 0
		count.Range(func(_, v any) bool {
			again += int(v.(*atomic.Int32).Load()) - 1
			return true
		})
		return again+int(metricValue(t, e2.reg, "warren_notify_skipped_total", nil)) >= n
	})
	count.Range(func(k, v any) bool {
		if c := v.(*atomic.Int32).Load(); c != 1 {
			t.Errorf("%s delivered %d times", k, c)
		}
		return true
	})
	e2.stop(t)
}

func TestEngineDedupAndReload(t *testing.T) {
	h := startHub(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "out.log")
	other := filepath.Join(t.TempDir(), "other.log")
	doc := `
delivery: {deliver_policy: all}
targets:
  file: {type: file, config: {path: %q}}
routes:
  - name: page
    targets: [file]
    format: "%s {user}"
    dedup: {key: "{user}", window: 1h}
`
	e := newEngine(t, h, fmt.Sprintf(doc, out, "v1"), nil)
	h.publishHare(5, func(int) string { return "root" })
	waitFor(t, "1 line", 10*time.Second, func() bool { return len(readLines(t, out)) == 1 })
	waitFor(t, "suppressed", 5*time.Second, func() bool {
		return metricValue(t, e.reg, "warren_notify_suppressed_total", map[string]string{"stage": "dedup"}) == 4
	})

	// A bad config is refused and the old one keeps running.
	bad, err := parseYAMLConfig(t, fmt.Sprintf(doc, out, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	bad.Routes[0].Format = "{user"
	if err := e.Reload(bad); err == nil || !strings.Contains(err.Error(), "routes[0].format") {
		t.Fatalf("bad reload: %v", err)
	}
	// A good reload: new text, a new target; dedup state survives.
	// Parse validates that every route names a defined target, so the new
	// target is part of the document, not added afterwards.
	good, err := parseYAMLConfig(t, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  file: {type: file, config: {path: %q}}
  other: {type: file, config: {path: %q}}
routes:
  - name: page
    continue: true
    targets: [file]
    format: "v2 {user}"
    dedup: {key: "{user}", window: 1h}
  - name: other
    targets: [other]
    format: "other {user}"
`, out, other))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(good); err != nil {
		t.Fatal(err)
	}
	h.publish("site-1", "logging/hare", "x1", []byte(`{"user":"root"}`))
	h.publish("site-1", "logging/hare", "x2", []byte(`{"user":"jjolie"}`))
	waitFor(t, "new target", 10*time.Second, func() bool { return len(readLines(t, other)) == 2 })
	waitFor(t, "2 lines", 10*time.Second, func() bool { return len(readLines(t, out)) == 2 })
	lines := readLines(t, out)
	if lines[0] != "v1 root" || lines[1] != "v2 jjolie" {
		t.Errorf("lines = %q (root must stay suppressed after the reload)", lines)
	}
	if got := metricValue(t, e.reg, "warren_notify_reloads_total", map[string]string{"result": "error"}); got != 1 {
		t.Errorf("reload errors = %v", got)
	}
	e.stop(t)
}

func TestEngineSilenceAndOffline(t *testing.T) {
	h := startHub(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "alerts.log")
	e := newEngine(t, h, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  file: {type: file, config: {path: %q}}
silence:
  - {name: beat, topic: heartbeat, after: 2s, targets: [file]}
offline: {after: 1s, targets: [file], format: "OFFLINE {edge}", recovered_format: "ONLINE {edge} after {duration}"}
`, out), nil)
	e.EdgeLinkChanged("site-9", false, time.Now().Add(-time.Minute))
	waitFor(t, "offline and silence", 15*time.Second, func() bool { return len(readLines(t, out)) == 2 })
	h.publish("site-1", "heartbeat", "hb1", []byte("x"))
	e.EdgeLinkChanged("site-9", true, time.Now())
	waitFor(t, "recoveries", 10*time.Second, func() bool { return len(readLines(t, out)) == 4 })
	lines := strings.Join(readLines(t, out), "\n")
	for _, want := range []string{"OFFLINE site-9", "no event on heartbeat from all edges for 2s", "events on heartbeat from all edges are back after", "ONLINE site-9 after 1m"} {
		if !strings.Contains(lines, want) {
			t.Errorf("missing %q in:\n%s", want, lines)
		}
	}
	e.stop(t)
}

func TestEngineDryRunAndTest(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.log")
	cfg, err := parseYAMLConfig(t, fmt.Sprintf(`
targets:
  file: {type: file, config: {path: %q}}
routes:
  - {name: a, match: {topic: logging/hare}, targets: [file], title: "login {user}", format: "{user} from {rhost}", dedup: {key: "{user}", window: 1h}}
`, out))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, Deps{}) // no NATS: dry runs only
	if err != nil {
		t.Fatal(err)
	}
	rep := e.DryRun("logging/hare", []byte(`{"user":"root"}`), "site-1", "udp")
	if len(rep.Deliveries) != 1 || rep.Deliveries[0].Message != "root from {rhost}" && rep.Deliveries[0].Message != `{"user":"root"}` {
		t.Fatalf("report: %s", rep)
	}
	if len(rep.Deliveries[0].Warnings) != 1 || !strings.Contains(rep.Deliveries[0].Warnings[0], "rhost") {
		t.Errorf("warnings: %v", rep.Deliveries[0].Warnings)
	}
	// Dry runs do not touch dedup state: the same event is not suppressed.
	rep = e.Test(t.Context(), "logging/hare", []byte(`{"user":"root","rhost":"h"}`), "site-1", "udp", true)
	if d := rep.Deliveries[0]; d.Dropped || !d.Sent || d.Error != "" {
		t.Fatalf("test send: %+v", d)
	}
	if lines := readLines(t, out); len(lines) != 1 || lines[0] != "root from h" {
		t.Errorf("file: %q", lines)
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"sent":true`) {
		t.Errorf("json: %s %v", b, err)
	}
	rep = e.DryRun("other", nil, "", "")
	if rep.Dropped == "" || len(rep.Deliveries) != 0 {
		t.Errorf("unrouted: %+v", rep)
	}
	if err := e.Run(t.Context()); err == nil {
		t.Error("Run without NATS succeeded")
	}
}
