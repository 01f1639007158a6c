package bridge

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
)

// Benchmarks: real edge and hub servers on loopback with mutual TLS 1.3,
// file stores, the ingest stand-in. Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./bridge/
//
// (Drain100k does 100k events per iteration; the others scale with b.N.)

type benchRig struct {
	edge *testEdge
	hub  *testHub
	b    *Bridge
}

func newBenchRig(b *testing.B, cfg func(*Config)) *benchRig {
	b.Helper()
	l := testPKI(b, "site-1")
	hub := startHub(b, l, b.TempDir(), 0, "site-1")
	edge := startEdge(b, "site-1", b.TempDir())
	c := bridgeConfig(l, "site-1", hub.url())
	c.BackoffMin, c.BackoffMax = DefaultConfig().BackoffMin, DefaultConfig().BackoffMax
	c.PublishTimeout, c.AckWait = DefaultConfig().PublishTimeout, DefaultConfig().AckWait
	if cfg != nil {
		cfg(&c)
	}
	br, err := New(c, edge, quietLogger(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return &benchRig{edge: edge, hub: hub, b: br}
}

// hubArrivals returns a channel that receives the time each event is
// stored in the HUB stream (read with an ordered consumer, so an event is
// seen only once stored).
func (r *benchRig) hubArrivals(b *testing.B, ctx context.Context) <-chan time.Time {
	b.Helper()
	cons, err := r.hub.js.OrderedConsumer(ctx, event.HubStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		b.Fatal(err)
	}
	out := make(chan time.Time, 1<<16)
	go func() {
		defer it.Stop()
		for {
			if _, err := it.Next(jetstream.NextContext(ctx)); err != nil {
				return
			}
			out <- time.Now()
		}
	}()
	return out
}

// BenchmarkEdgeToHubLatency: one event at a time is stored in the EDGE
// stream (synchronous publish, as the edge's ingest does) and timed until it
// is stored in the HUB stream.
func BenchmarkEdgeToHubLatency(b *testing.B) {
	r := newBenchRig(b, nil)
	runBridge(b, r.b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	arrivals := r.hubArrivals(b, ctx)
	r.edge.publish(b, 50) // warm up the link
	for range 50 {
		<-arrivals
	}
	subj, _ := event.EdgeSubject(testTopic)
	// 1000 samples per iteration, so one iteration (`make bench`) gives a
	// real p99.
	const samples = 1000
	lat := make([]time.Duration, 0, b.N*samples)
	b.ResetTimer()
	for i := 0; i < b.N*samples; i++ {
		t0 := time.Now()
		if _, err := r.edge.js.Publish(ctx, subj, []byte(`{"tst":1795384588,"hostname":"vm","user":"jjolie"}`)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-arrivals:
		case <-time.After(10 * time.Second):
			b.Fatal("event did not arrive")
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99_ms")
}

// BenchmarkForwardThroughput: max(b.N, 50k) events wait at the edge; the
// bridge starts and msgs/s is measured from the first to the last event
// stored at the hub (connecting is left out; BenchmarkDrain100k has it).
func BenchmarkForwardThroughput(b *testing.B) {
	r := newBenchRig(b, nil)
	n := max(b.N, 50000)
	r.edge.publish(b, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	arrivals := r.hubArrivals(b, ctx)
	b.ResetTimer()
	runBridge(b, r.b)
	var first time.Time
	for i := 0; i < n; i++ {
		select {
		case t := <-arrivals:
			if i == 0 {
				first = t
			}
		case <-time.After(30 * time.Second):
			b.Fatalf("only %d of %d arrived", i, n)
		}
	}
	d := time.Since(first)
	b.StopTimer()
	b.ReportMetric(float64(n-1)/d.Seconds(), "msgs/s")
}

// BenchmarkDrain100k: the hub is down while the edge accepts 100k events;
// reported is the time from the hub being ready again until all 100k are
// stored at the hub (drain_s), and the part of it before the bridge's
// first publish was confirmed (reconnect_s, set by the reconnect backoff).
func BenchmarkDrain100k(b *testing.B) {
	const n = 100000
	var total, reconnect time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newBenchRig(b, nil)
		stop := runBridge(b, r.b)
		port := r.hub.port()
		r.edge.publish(b, 10)
		waitDrained(b, r.edge, r.hub, 10, 10*time.Second)
		r.hub.stop()
		waitFor(b, 10*time.Second, func() string { return "link still up" }, func() bool {
			return r.b.Status().State == StateDisconnected
		})
		r.edge.publish(b, n)
		// Let the backoff grow as after a real outage.
		time.Sleep(3 * r.b.cfg.BackoffMax)
		before := r.b.forwarded.Load()
		b.StartTimer()
		t0 := time.Now()
		r.hub.start(b, port)
		ctx, cancel := context.WithCancel(context.Background())
		arrivals := r.hubArrivals(b, ctx)
		first := time.Duration(0)
		for j := 0; j < n; j++ {
			select {
			case <-arrivals:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d of %d arrived", j, n)
			}
			if j == 0 {
				first = time.Since(t0)
			}
		}
		total += time.Since(t0)
		reconnect += first
		b.StopTimer()
		cancel()
		// The hub stores an event before the bridge reads its PubAck.
		waitFor(b, 10*time.Second, func() string { return "forwarded count short" }, func() bool {
			return r.b.forwarded.Load()-before >= n
		})
		stop()
		r.hub.stop()
		r.edge.stop()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "drain_s")
	b.ReportMetric(reconnect.Seconds()/float64(b.N), "reconnect_s")
}
