package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/warren-mesh/warren/internal/event"
)

// Benchmarks through real processes (`make bench` runs them with
// -benchtime 1x). Each reports its figures with b.ReportMetric; ns/op is
// the wall time of a whole iteration and means little.

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// idleRSS waits for a daemon to settle (a measurement interval, not a
// synchronisation) and reads its resident set size.
func idleRSS(b *testing.B, d *daemon) (int64, bool) {
	b.Helper()
	time.Sleep(2 * time.Second)
	rss, err := rssBytes(d.PID())
	if err != nil {
		b.Logf("no RSS figure: %v", err)
		return 0, false
	}
	return rss, true
}

// BenchmarkEdgeStartup measures the edge's start-up time (exec until
// /healthz answers, with a fresh store and again with the store it made),
// and its idle RSS 2 s after start. The edge runs with its UDP, MQTT and
// admin listeners and no hub link.
func BenchmarkEdgeStartup(b *testing.B) {
	var fresh, again time.Duration
	var rss int64
	for i := 0; i < b.N; i++ {
		root := testDir(b)
		e := newEdge(b, root, edgeOptions{id: "bench-start", mqtt: true})
		fresh += e.StartReady()
		if r, ok := idleRSS(b, e.daemon); ok {
			rss = max(rss, r)
		}
		e.Stop()
		again += e.StartReady()
		e.Stop()
	}
	b.ReportMetric(ms(fresh)/float64(b.N), "startup-ms")
	b.ReportMetric(ms(again)/float64(b.N), "restart-ms")
	if rss > 0 {
		b.ReportMetric(mib(rss), "idle-RSS-MiB")
	}
}

// BenchmarkHubStartup measures the hub's start-up time (exec until
// /healthz answers; PKI made beforehand, fresh store) and its idle RSS 2 s
// after start, with its NATS (mTLS), MQTT and admin listeners and no edge.
func BenchmarkHubStartup(b *testing.B) {
	var fresh, again time.Duration
	var rss int64
	for i := 0; i < b.N; i++ {
		root := testDir(b)
		h := newHub(b, root, hubOptions{mqtt: true}, "bench")
		fresh += h.StartReady()
		if r, ok := idleRSS(b, h.daemon); ok {
			rss = max(rss, r)
		}
		h.Stop()
		again += h.StartReady()
		h.Stop()
	}
	b.ReportMetric(ms(fresh)/float64(b.N), "startup-ms")
	b.ReportMetric(ms(again)/float64(b.N), "restart-ms")
	if rss > 0 {
		b.ReportMetric(mib(rss), "idle-RSS-MiB")
	}
}

// arrival is a login seen on the hub's MQTT republish.
type arrival struct {
	user string
	at   time.Time
}

// subscribeHub subscribes to topic on the hub's loopback MQTT listener and
// delivers the user of every hare event that arrives.
func subscribeHub(tb testing.TB, addr, topic string) <-chan arrival {
	tb.Helper()
	ch := make(chan arrival, 4096)
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(fmt.Sprintf("warren-it-%d", os.Getpid())).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		tb.Fatalf("mqtt connect to the hub at %s: %v", addr, tok.Error())
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) {
		now := time.Now()
		var p harePayload
		if json.Unmarshal(m.Payload(), &p) == nil {
			select {
			case ch <- arrival{p.User, now}:
			default:
			}
		}
	})
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		tb.Fatalf("mqtt subscribe %s: %v", topic, tok.Error())
	}
	return ch
}

// awaitArrival waits (bounded) for user's event on ch, skipping others.
func awaitArrival(tb testing.TB, ch <-chan arrival, user string) time.Time {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case a := <-ch:
			if a.user == user {
				return a.at
			}
		case <-timeout:
			tb.Fatalf("event %s did not reach the hub's MQTT republish within 30 s", user)
		}
	}
}

// percentile returns the p-th percentile (0..100) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// BenchmarkHareToHubLatency measures, one event at a time through real
// processes, the time from sending a login until the hub republishes it to
// an MQTT subscriber (the path an existing mqttwarn sees): udp = a v0
// datagram written by the test (edge ingest + store, bridge, hub store,
// republish); hare = the same started by exec'ing the hare binary, as PAM
// would. hare-run is hare's own wall time.
func BenchmarkHareToHubLatency(b *testing.B) {
	hare := binary(b, "hare")
	root := testDir(b)
	hub := newHub(b, root, hubOptions{mqtt: true}, "bench")
	e := newEdge(b, root, edgeOptions{id: "bench", hub: hub})
	hub.StartReady()
	e.StartReady()
	e.waitConnected(b, time.Minute)
	arrivals := subscribeHub(b, hub.mqttAddr, event.HareTopic)
	conn := dialUDP(b, e.udpAddr)
	_, port := splitPort(b, e.udpAddr)

	for i := range 50 { // warm-up
		id := fmt.Sprintf("warm-%d", i)
		if _, err := conn.Write(login(id)); err != nil {
			b.Fatal(err)
		}
		awaitArrival(b, arrivals, id)
	}
	const udpSamples, hareSamples = 500, 100
	var udpLat, hareLat, hareRun []time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range udpSamples {
			id := fmt.Sprintf("udp-%d-%d", n, i)
			d := login(id)
			t0 := time.Now()
			if _, err := conn.Write(d); err != nil {
				b.Fatal(err)
			}
			udpLat = append(udpLat, awaitArrival(b, arrivals, id).Sub(t0))
		}
		for i := range hareSamples {
			id := fmt.Sprintf("hare-%d-%d", n, i)
			t0 := time.Now()
			runHare(b, hare, map[string]string{"PAM_TYPE": "open_session", "PAM_USER": id, "PAM_SERVICE": "sshd", "PAM_RHOST": "198.51.100.7", "PAM_TTY": "pts/0"},
				"-port", port, "-key", "none", "127.0.0.1")
			hareRun = append(hareRun, time.Since(t0))
			hareLat = append(hareLat, awaitArrival(b, arrivals, id).Sub(t0))
		}
	}
	b.StopTimer()
	for _, s := range [][]time.Duration{udpLat, hareLat, hareRun} {
		slices.Sort(s)
	}
	b.ReportMetric(ms(percentile(udpLat, 50)), "udp-hub-p50-ms")
	b.ReportMetric(ms(percentile(udpLat, 99)), "udp-hub-p99-ms")
	b.ReportMetric(ms(percentile(hareLat, 50)), "hare-hub-p50-ms")
	b.ReportMetric(ms(percentile(hareLat, 99)), "hare-hub-p99-ms")
	b.ReportMetric(ms(percentile(hareRun, 50)), "hare-run-p50-ms")
}

// BenchmarkBacklogDrain100k accepts 100k events at an edge while the hub
// is down, starts the hub and measures how long the edge takes to have
// every one confirmed: from the hub answering /healthz, and from the
// moment the edge reports its link up (the rest is the bridge's reconnect
// backoff). It then checks the hub stream (exactly once, in order).
//
// Three hubs: the defaults (each of the 100k logins also becomes a
// notification, competing for the same two cores); notifications off; and
// bare (no notifier, dashboard or audit: the forwarding path alone).
func BenchmarkBacklogDrain100k(b *testing.B) {
	b.Run("notifier-default", func(b *testing.B) { backlogDrain(b, "") })
	b.Run("notifier-off", func(b *testing.B) { backlogDrain(b, "notify: {routes: []}\n") })
	b.Run("bare", func(b *testing.B) {
		backlogDrain(b, "notify: {routes: []}\ndashboard: {enabled: false}\naudit: {enabled: false}\n")
	})
}

func backlogDrain(b *testing.B, hubExtra string) {
	const backlog = 100000
	var fromReady, fromLink time.Duration
	var backlogRSS int64
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		root := testDir(b)
		hub := newHub(b, root, hubOptions{extra: hubExtra}, "drain")
		e := newEdge(b, root, edgeOptions{id: "drain", hub: hub})
		e.StartReady()
		accepted := ledger{}
		accepted.accept(b, e, fmt.Sprintf("drain%d", n), backlog)
		if rss, err := rssBytes(e.PID()); err == nil && rss > backlogRSS {
			backlogRSS = rss
		}
		b.StartTimer()

		hub.StartReady()
		ready := time.Now()
		var linked, done time.Time
		for deadline := ready.Add(5 * time.Minute); done.IsZero(); {
			st := e.status(b)
			now := time.Now()
			if linked.IsZero() && st.Hub.State == "connected" {
				linked = now
			}
			if st.Stream.Messages == 0 && st.Stream.Error == "" {
				done = now
				if linked.IsZero() {
					linked = now
				}
				break
			}
			if now.After(deadline) {
				b.Fatalf("backlog not drained 5 min after the hub started: %d left", st.Stream.Messages)
			}
			time.Sleep(20 * time.Millisecond)
		}
		b.StopTimer()
		fromReady += done.Sub(ready)
		fromLink += done.Sub(linked)
		hub.Stop()
		checkExactlyOnce(b, readHubStore(b, hub.dataDir), accepted)
		e.Stop()
	}
	b.ReportMetric(fromReady.Seconds()/float64(b.N), "drain-from-hub-ready-s")
	b.ReportMetric(fromLink.Seconds()/float64(b.N), "drain-from-link-up-s")
	b.ReportMetric(float64(backlog)*float64(b.N)/fromLink.Seconds(), "forwarded-events/s")
	if backlogRSS > 0 {
		b.ReportMetric(mib(backlogRSS), "edge-rss-100k-backlog-MiB")
	}
}
