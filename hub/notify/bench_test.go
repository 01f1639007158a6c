package notify

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
)

// BenchmarkNotifierThroughput: hare logins already stored in the hub
// stream (a backlog of b.N events), one route to a file target; the figure
// is notifications written per second from the engine's start until the
// last one is recorded as sent (stream → route → render → outbox → file
// → idempotency record → acks).
func BenchmarkNotifierThroughput(b *testing.B) {
	h := startHub(b, b.TempDir())
	out := filepath.Join(b.TempDir(), "out.log")
	cfg, err := parseYAMLConfig(b, fmt.Sprintf(`
delivery: {deliver_policy: all}
targets:
  file: {type: file, config: {path: %q}}
routes:
  - {name: logins, match: {topic: [logging/hare]}, targets: [file], format: "login {user} on {hostname} from {rhost}"}
`, out))
	if err != nil {
		b.Fatal(err)
	}
	n := b.N * 20000 // a fixed workload per iteration: `make bench` runs one
	for i := range n {
		m := nats.NewMsg(event.HubSubject("site-1", "logging.hare"))
		m.Data = fmt.Appendf(nil, `{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":%d,"tty":"pts/3","user":"u%d"}`, 1795384609+i, i)
		m.Header.Set(event.HdrMsgID, fmt.Sprintf("site-1:bench:%d", i))
		m.Header.Set(event.HdrEdge, "site-1")
		if _, err := h.js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatal("publishing the backlog timed out")
	}
	reg := prometheus.NewRegistry()
	e, err := New(cfg, Deps{JS: h.js, NC: h.nc, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- e.Run(ctx) }()
	for metricValue(b, reg, "warren_notify_sent_total", nil) < float64(n) {
		select {
		case err := <-done:
			b.Fatalf("Run: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Errorf("Run: %v", err)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "notifications/s")
	b.ReportMetric(0, "ns/op")
}
