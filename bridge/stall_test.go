package bridge

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
)

// watchConsumer makes a pull consumer on the edge stream of e, as the
// bridge's, under another name.
func watchConsumer(t *testing.T, e *testEdge) jetstream.Consumer {
	t.Helper()
	c, err := e.js.CreateOrUpdateConsumer(t.Context(), event.EdgeStream, jetstream.ConsumerConfig{
		Durable:       "stall-test",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		FilterSubject: event.EdgeSubjectPrefix + ">",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runWatch runs a stall watch that checks every 20 ms for at most the
// given time and reports why it declared a stall ("" if it did not).
func runWatch(t *testing.T, c jetstream.Consumer, w *stallWatch, within time.Duration) string {
	t.Helper()
	const every = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	stopped := false
	w.run(ctx, c, every, func() { stopped = true })
	why := w.stalled.Load()
	if (why != nil) != stopped {
		t.Fatalf("stalled %v but stop called %v", why != nil, stopped)
	}
	if why == nil {
		return ""
	}
	return *why
}

// fetchAll pulls n events from c without acking them.
func fetchAll(t *testing.T, c jetstream.Consumer, n int) {
	t.Helper()
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for range batch.Messages() {
		got++
	}
	if got != n {
		t.Fatalf("fetched %d of %d", got, n)
	}
}

func TestStallWatch(t *testing.T) {
	t.Run("undelivered events", func(t *testing.T) {
		e := startEdge(t, "site-1", t.TempDir())
		c := watchConsumer(t, e)
		e.publish(t, 3)
		var w stallWatch
		w.waiting.Store(true)
		if why := runWatch(t, c, &w, 10*time.Second); !strings.Contains(why, "3 undelivered") {
			t.Errorf("stall reason %q, want 3 undelivered", why)
		}
	})
	t.Run("deliveries taken by another pull", func(t *testing.T) {
		e := startEdge(t, "site-1", t.TempDir())
		c := watchConsumer(t, e)
		e.publish(t, 3)
		fetchAll(t, c, 3) // never acked
		var w stallWatch
		w.waiting.Store(true)
		if why := runWatch(t, c, &w, 10*time.Second); !strings.Contains(why, "3 delivered elsewhere") {
			t.Errorf("stall reason %q, want 3 delivered elsewhere", why)
		}
	})
	t.Run("the bridge holds the unacked events", func(t *testing.T) {
		e := startEdge(t, "site-1", t.TempDir())
		c := watchConsumer(t, e)
		e.publish(t, 2)
		fetchAll(t, c, 2)
		var w stallWatch
		w.waiting.Store(true)
		w.held.Store(2) // awaiting the hub's PubAcks
		if why := runWatch(t, c, &w, 800*time.Millisecond); why != "" {
			t.Errorf("stall declared while the bridge holds the events: %s", why)
		}
	})
	t.Run("nothing to deliver", func(t *testing.T) {
		e := startEdge(t, "site-1", t.TempDir())
		c := watchConsumer(t, e)
		var w stallWatch
		w.waiting.Store(true)
		if why := runWatch(t, c, &w, 800*time.Millisecond); why != "" {
			t.Errorf("stall declared with nothing stored: %s", why)
		}
	})
	t.Run("busy publishing", func(t *testing.T) {
		e := startEdge(t, "site-1", t.TempDir())
		c := watchConsumer(t, e)
		e.publish(t, 3)
		var w stallWatch // not waiting in Next: blocked on a full window
		if why := runWatch(t, c, &w, 800*time.Millisecond); why != "" {
			t.Errorf("stall declared while not pulling: %s", why)
		}
	})
}

// TestForwardRecoversFromStalledConsumer pauses the edge consumer under a
// running bridge: the bridge reports the stall, keeps rewinding, and
// forwards everything once the consumer delivers again.
func TestForwardRecoversFromStalledConsumer(t *testing.T) {
	l := testPKI(t, "site-1")
	hub := startHub(t, l, t.TempDir(), 0, "site-1")
	edge := startEdge(t, "site-1", t.TempDir())
	reg := prometheus.NewRegistry()
	b := newBridge(t, bridgeConfig(l, "site-1", hub.url()), edge, reg)
	b.stallCheck = 50 * time.Millisecond
	runBridge(t, b)
	edge.publish(t, 10)
	waitDrained(t, edge, hub, 10, 20*time.Second)

	if _, err := edge.js.PauseConsumer(t.Context(), event.EdgeStream, Durable, time.Now().Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	edge.publish(t, 10)
	waitFor(t, 10*time.Second, func() string { return b.Status().LastError }, func() bool {
		return strings.Contains(b.Status().LastError, "stopped delivering")
	})
	waitDrained(t, edge, hub, 20, 20*time.Second)
	hub.check(t, edge)
	if got := metric(t, reg, "warren_bridge_failures_total", "kind", failEdge); got < 1 {
		t.Errorf("failures_total{kind=edge} = %v after a stall", got)
	}
}
