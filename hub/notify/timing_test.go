package notify

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoff(t *testing.T) {
	initial, maxB := time.Second, time.Minute
	for attempt := 1; attempt <= 12; attempt++ {
		base := initial << (attempt - 1)
		if base > maxB || base <= 0 {
			base = maxB
		}
		for range 200 {
			d := backoff(attempt, initial, maxB)
			if d < base/2 || d > base {
				t.Fatalf("attempt %d: %s not in [%s, %s]", attempt, d, base/2, base)
			}
		}
	}
	// Jitter spreads retries: 200 draws are not all equal.
	seen := map[time.Duration]bool{}
	for range 200 {
		seen[backoff(5, initial, maxB)] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays", len(seen))
	}
	if d := backoff(1000, initial, maxB); d > maxB {
		t.Errorf("overflow: %s", d)
	}
}

// TestRateLimiterClock drives the token bucket on a synctest clock.
func TestRateLimiterClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(2, time.Second) // 2 per second, bursts of 2
		start := time.Now()
		var at []time.Duration
		for range 6 {
			if d := l.reserve(time.Now()); d > 0 {
				if err := waitUntil(t.Context(), time.Now().Add(d), 0, nil); err != nil {
					t.Fatal(err)
				}
			}
			at = append(at, time.Since(start))
		}
		want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second, 1500 * time.Millisecond, 2 * time.Second}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("send times %v, want %v", at, want)
			}
		}
		// An idle bucket refills to its burst, not beyond.
		time.Sleep(time.Hour)
		for range 2 {
			if d := l.reserve(time.Now()); d != 0 {
				t.Fatalf("burst: wait %s", d)
			}
		}
		if d := l.reserve(time.Now()); d != 500*time.Millisecond {
			t.Fatalf("third after idle: wait %s", d)
		}
	})
	if newLimiter(0, time.Second) != nil || (*limiter)(nil).reserve(time.Now()) != 0 {
		t.Error("zero limit is not unlimited")
	}
}

// TestWaitUntilTicks: held messages are refreshed while a worker waits.
func TestWaitUntilTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ticks := 0
		start := time.Now()
		if err := waitUntil(t.Context(), start.Add(95*time.Second), 10*time.Second, func() { ticks++ }); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 95*time.Second || ticks != 9 {
			t.Errorf("waited %s with %d ticks", time.Since(start), ticks)
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(3 * time.Second)
			cancel()
		}()
		if err := waitUntil(ctx, time.Now().Add(time.Hour), time.Minute, nil); err == nil {
			t.Error("cancel not noticed")
		}
	})
}

// TestSilenceAndOffline runs the engine's tick loop on a synctest clock
// with the alert sink replaced by a recorder.
func TestSilenceAndOffline(t *testing.T) {
	cfg, err := parseYAMLConfig(t, `
targets: {j: {type: log}}
silence:
  - {name: hare, topic: logging/hare, after: 30m, targets: [j]}
  - {name: per-edge, topic: "status/#", edges: [site-a, site-b], after: 1h, targets: [j]}
offline: {after: 5m, targets: [j], edges: ["site-*"]}
`)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		e, err := New(cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []alert
		e.emit = func(_ context.Context, as []alert) {
			mu.Lock()
			got = append(got, as...)
			mu.Unlock()
		}
		take := func() []alert {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			out := got
			got = nil
			return out
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go e.tickLoop(ctx)
		observe := func(topic, edge string) []alert {
			return e.watch.observe(e.cur.Load().c, NewEvent("x", topic, edge, "udp", nil, time.Now()), time.Now())
		}

		time.Sleep(29 * time.Minute)
		observe("logging/hare", "site-a")
		observe("status/up", "site-a")
		if a := take(); len(a) != 0 {
			t.Fatalf("early alerts: %+v", a)
		}
		time.Sleep(31 * time.Minute) // 60m: hare silent 31m, site-b silent 60m
		a := take()
		if len(a) != 2 || a[0].rule != "hare" || a[0].kind != alertSilence || a[1].rule != "per-edge" || a[1].edge != "site-b" {
			t.Fatalf("alerts at 60m: %+v", a)
		}
		if a[0].duration < 30*time.Minute || a[0].duration > 31*time.Minute {
			t.Errorf("silence duration %s", a[0].duration)
		}
		time.Sleep(time.Hour)
		if a := take(); len(a) != 1 || a[0].edge != "site-a" {
			t.Fatalf("site-a silence: %+v", a) // fires once, and only site-a is new
		}
		rec := observe("logging/hare", "site-z")
		if len(rec) != 1 || rec[0].kind != alertRecovered || rec[0].rule != "hare" {
			t.Fatalf("recovery: %+v", rec)
		}

		// Site offline: a short outage says nothing; a long one fires once,
		// and the return fires "online".
		e.EdgeLinkChanged("site-a", false, time.Now())
		time.Sleep(2 * time.Minute)
		e.EdgeLinkChanged("site-a", true, time.Now())
		time.Sleep(10 * time.Minute)
		if a := take(); len(a) != 0 {
			t.Fatalf("short outage alerted: %+v", a)
		}
		down := time.Now()
		e.EdgeLinkChanged("site-a", false, down)
		e.EdgeLinkChanged("home", false, down) // not in offline.edges
		time.Sleep(4 * time.Minute)
		e.EdgeLinkChanged("site-a", false, time.Now()) // repeated "down" keeps the first time
		time.Sleep(2 * time.Minute)
		a = take()
		if len(a) != 1 || a[0].kind != alertOffline || a[0].edge != "site-a" || !a[0].since.Equal(down) {
			t.Fatalf("offline: %+v", a)
		}
		time.Sleep(10 * time.Minute)
		e.EdgeLinkChanged("site-a", true, time.Now())
		a = take()
		if len(a) != 1 || a[0].kind != alertOnline || a[0].duration != 16*time.Minute {
			t.Fatalf("online: %+v", a)
		}
		// Rendering of the synthetic notifications.
		c := e.cur.Load().c
		p := c.planAlert(a[0], planOpts{now: time.Now()})
		if len(p) != 1 || p[0].msg.Title != "site online: site-a" || p[0].msg.Body != "edge site-a is back after 16m offline" {
			t.Fatalf("online message: %+v", p[0].msg)
		}
		p = c.planAlert(alert{kind: alertSilence, rule: "hare", edge: allEdges, topic: "logging/hare", duration: 31 * time.Minute, at: time.Now()}, planOpts{now: time.Now()})
		if len(p) != 1 || p[0].msg.Body != "no event on logging/hare from all edges for 31m" || p[0].msg.Title != "silence: hare" {
			t.Fatalf("silence message: %+v", p[0].msg)
		}
		cancel()
	})
}

// TestWatchStateSurvivesSync: a reload keeps the clocks of kept watches.
func TestWatchStateSurvivesSync(t *testing.T) {
	c1 := compileYAML(t, "targets: {j: {type: log}}\nsilence: [{name: a, after: 1m, targets: [j]}, {name: b, after: 1m, targets: [j]}]\n")
	c2 := compileYAML(t, "targets: {j: {type: log}}\nsilence: [{name: a, after: 2m, targets: [j]}, {name: c, after: 1m, targets: [j]}]\n")
	w := newWatcher()
	t0 := nowForTest
	w.sync(c1, t0)
	w.sync(c2, t0.Add(90*time.Second))
	a := w.tick(c2, t0.Add(2*time.Minute))
	if len(a) != 1 || a[0].rule != "a" {
		t.Fatalf("tick: %+v", a)
	}
	if _, ok := w.watches[watchKey{"b", allEdges}]; ok {
		t.Error("removed watch kept")
	}
}
