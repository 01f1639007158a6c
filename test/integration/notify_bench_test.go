package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// waitSize polls path until it has at least size bytes and returns when
// that was seen. Polling every 100 µs keeps
// the measurement error well under the figures measured.
func waitSize(tb testing.TB, path string, size int64, timeout time.Duration) time.Time {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= size {
			return time.Now()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not reach %d bytes within %s", path, size, timeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkHareToNotificationFile measures, one login at a time through
// real processes, the time from a login datagram leaving the sender until
// its notification is in the hub's file target: edge ingest and store,
// bridge, hub ingest and store, notifier consumer, outbox, file write. udp
// = a v0 datagram written by the test; hare = the hare binary exec'd as PAM
// would (its own start-up included).
func BenchmarkHareToNotificationFile(b *testing.B) {
	hare := binary(b, "hare")
	root := testDir(b)
	out := filepath.Join(root, "notifications", "logins.log")
	hub := newHub(b, root, hubOptions{extra: notifyFileConfig(out)}, "bench")
	e := newEdge(b, root, edgeOptions{id: "bench", hub: hub})
	hub.StartReady()
	e.StartReady()
	e.waitConnected(b, time.Minute)
	conn := dialUDP(b, e.udpAddr)
	_, port := splitPort(b, e.udpAddr)

	// Every line is "login <user> on <host> from 198.51.100.7\n" with
	// fixed-width users, so the file's size tells how many arrived. The
	// test's datagrams name testHost; hare names this machine.
	lineLen := func(host string) int64 {
		return int64(len(fmt.Sprintf("login %s on %s from 198.51.100.7\n", "u-000000-0000", host)))
	}
	host, _ := os.Hostname()
	udpLine, hareLine := lineLen(testHost), lineLen(host)
	var size int64
	send := func(user string) time.Duration {
		t0 := time.Now()
		if _, err := conn.Write(login(user)); err != nil {
			b.Fatal(err)
		}
		size += udpLine
		return waitSize(b, out, size, 30*time.Second).Sub(t0)
	}
	for i := range 50 { // warm-up
		send(fmt.Sprintf("w-%06d-%04d", 0, i))
	}
	const udpSamples, hareSamples = 400, 100
	var udpLat, hareLat []time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := range udpSamples {
			udpLat = append(udpLat, send(fmt.Sprintf("u-%06d-%04d", n, i)))
		}
		for i := range hareSamples {
			user := fmt.Sprintf("h-%06d-%04d", n, i)
			t0 := time.Now()
			runHare(b, hare, map[string]string{"PAM_TYPE": "open_session", "PAM_USER": user, "PAM_SERVICE": "sshd", "PAM_RHOST": "198.51.100.7", "PAM_TTY": "pts/0"},
				"-port", port, "-key", "none", "127.0.0.1")
			size += hareLine
			hareLat = append(hareLat, waitSize(b, out, size, 30*time.Second).Sub(t0))
		}
	}
	b.StopTimer()
	slices.Sort(udpLat)
	slices.Sort(hareLat)
	b.ReportMetric(ms(percentile(udpLat, 50)), "udp-file-p50-ms")
	b.ReportMetric(ms(percentile(udpLat, 99)), "udp-file-p99-ms")
	b.ReportMetric(ms(percentile(hareLat, 50)), "hare-file-p50-ms")
	b.ReportMetric(ms(percentile(hareLat, 99)), "hare-file-p99-ms")
}

// BenchmarkNotifierThroughput stores a backlog of logins in the hub with
// no notifier route consuming them, then restarts the hub with a file
// target whose fresh consumer starts at the beginning of the stream, and
// measures notifications written per second from the hub being ready
// until the last line is in the file.
func BenchmarkNotifierThroughput(b *testing.B) {
	const backlog = 20000
	var total time.Duration
	for n := 0; n < b.N; n++ {
		r := notifierBacklog(b, fmt.Sprintf("t%d", n), backlog, 0)
		total += r.took
	}
	b.ReportMetric(float64(backlog)*float64(b.N)/total.Seconds(), "notifications/s")
}

// BenchmarkNotifierBacklog100k is the same with 100k logins waiting, and
// reports the hub's memory: its RSS holding the 100k stored events with
// nothing to notify (2 s and 32 s after they arrived), and its peak RSS
// (sampled every 20 ms) while the notifier works through them.
func BenchmarkNotifierBacklog100k(b *testing.B) {
	const backlog = 100000
	var total time.Duration
	var idle, peak, settled int64
	for n := 0; n < b.N; n++ {
		r := notifierBacklog(b, fmt.Sprintf("m%d", n), backlog, 30*time.Second)
		total += r.took
		idle, peak, settled = max(idle, r.idleRSS), max(peak, r.peakRSS), max(settled, r.settledRSS)
	}
	b.ReportMetric(float64(backlog)*float64(b.N)/total.Seconds(), "notifications/s")
	b.ReportMetric(mib(idle), "hub-rss-stored-MiB")
	b.ReportMetric(mib(settled), "hub-rss-stored-30s-later-MiB")
	b.ReportMetric(mib(peak), "hub-rss-peak-MiB")
}

type backlogRun struct {
	took             time.Duration // hub ready until the last notification
	idleRSS, peakRSS int64         // hub RSS 2 s after the backlog was stored; peak while notifying
	settledRSS       int64         // hub RSS after settle more seconds (0: not measured)
}

// notifierBacklog stores backlog logins at the hub through a real edge,
// then restarts the hub with a file route and times the notifier through
// them. The benchmark timer runs only for the second part.
func notifierBacklog(b *testing.B, tag string, backlog int, settle time.Duration) backlogRun {
	b.Helper()
	b.StopTimer()
	var r backlogRun
	root := testDir(b)
	out := filepath.Join(root, "notifications", "logins.log")
	// First run: no route for logging/hare, the events are only stored.
	hub := newHub(b, root, hubOptions{extra: "notify:\n  targets:\n    devnull: {type: log}\n  routes:\n    - {match: {topic: [nothing/here]}, targets: [devnull]}\n"}, "thru")
	e := newEdge(b, root, edgeOptions{id: "thru", hub: hub})
	hub.StartReady()
	e.StartReady()
	e.waitConnected(b, time.Minute)
	accepted := ledger{}
	accepted.accept(b, e, tag, backlog)
	e.waitDrained(b, 5*time.Minute)
	e.Stop()
	if rss, ok := idleRSS(b, hub.daemon); ok {
		r.idleRSS = rss
	}
	if settle > 0 {
		time.Sleep(settle) // a measurement interval: caches expire, the heap is scavenged
		if rss, err := rssBytes(hub.PID()); err == nil {
			r.settledRSS = rss
		}
	}
	hub.Stop()

	cfg := filepath.Join(root, "hub", "hub.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	notify := fmt.Sprintf(`notify:
  delivery: {consumer: bench, deliver_policy: all}
  targets:
    logins:
      type: file
      config: {path: %s}
  routes:
    - match: {topic: [logging/hare]}
      targets: [logins]
      format: "{user}"
`, quote(out))
	i := strings.Index(string(raw), "notify:\n")
	if i < 0 {
		b.Fatal("no notify section in the hub config")
	}
	writeFile(b, cfg, string(raw[:i])+notify, 0o600)
	b.StartTimer()
	hub.StartReady()
	t0 := time.Now()
	deadline := t0.Add(5 * time.Minute)
	for n := 0; ; n++ {
		if n%2 == 0 { // every 20 ms
			if rss, err := rssBytes(hub.PID()); err == nil {
				r.peakRSS = max(r.peakRSS, rss)
			}
		}
		if lines(b, out) >= backlog {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d notifications after 5 min", lines(b, out), backlog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.took = time.Since(t0)
	b.StopTimer()
	hub.Stop()
	return r
}

// lines counts the lines of path (0 if it does not exist yet) without
// holding them all.
func lines(tb testing.TB, path string) int {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Count(raw, []byte("\n"))
}
