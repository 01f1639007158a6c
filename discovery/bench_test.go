package discovery

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// benchConfig is a loopback node with a profile's own timers (no test
// tuning), so the figures are what a deployment with that profile gets.
func benchConfig(name, profile, key string) Config {
	c := DefaultConfig()
	c.NodeName = name
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.Profile = profile
	c.KeyFiles = []string{key}
	c.RejoinInterval = time.Second
	return c
}

func benchStart(b *testing.B, c Config, m Meta) *Node {
	b.Helper()
	n, err := startPlain(c, m)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func startPlain(c Config, m Meta) (*Node, error) {
	n, err := New(c, m, nil)
	if err != nil {
		return nil, err
	}
	if err := n.Start(context.Background()); err != nil {
		return nil, err
	}
	return n, nil
}

func shutdownAll(nodes []*Node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.Shutdown() }()
	}
	wg.Wait()
}

func benchWait(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkHubTo20Edges measures, from the hub's start, the time until the
// hub lists 20 edges started in-process right after it (hub-sees-20-ms),
// until every edge has the hub's URL (edges-know-hub-ms), and until all 21
// nodes list each other alive (full-mesh-ms).
func BenchmarkHubTo20Edges(b *testing.B) {
	for _, profile := range []string{ProfileWAN, ProfileLAN, ProfileLocal} {
		b.Run(profile, func(b *testing.B) {
			key := writeKeyFile(b, b.TempDir(), "gossip.key", testKey(20))
			var sees, know, mesh time.Duration
			for range b.N {
				start := time.Now()
				hub := benchStart(b, benchConfig("hub", profile, key), hubMeta("tls://127.0.0.1:4222"))
				nodes := []*Node{hub}
				edges := make([]*Node, 20)
				errs := make([]error, 20)
				var wg sync.WaitGroup
				for i := range edges {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c := benchConfig(fmt.Sprintf("e%02d", i), profile, key)
						c.Seeds = []string{hub.LocalAddr()}
						edges[i], errs[i] = startPlain(c, edgeMeta())
					}()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						b.Fatalf("edge %d: %v", i, err)
					}
				}
				nodes = append(nodes, edges...)
				benchWait(b, time.Minute, "the hub to list 20 edges", func() bool { return hub.Stats().Edges == 20 })
				sees += time.Since(start)
				benchWait(b, time.Minute, "every edge to know the hub", func() bool {
					for _, e := range edges {
						if len(e.HubURLs()) == 0 {
							return false
						}
					}
					return true
				})
				know += time.Since(start)
				benchWait(b, 2*time.Minute, "a full mesh", func() bool {
					for _, n := range nodes {
						if n.Stats().Alive != 21 {
							return false
						}
					}
					return true
				})
				mesh += time.Since(start)
				b.StopTimer()
				shutdownAll(nodes)
				b.StartTimer()
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Millisecond) }
			b.ReportMetric(ms(sees), "hub-sees-20-ms")
			b.ReportMetric(ms(know), "edges-know-hub-ms")
			b.ReportMetric(ms(mesh), "full-mesh-ms")
		})
	}
}

// BenchmarkGossipAtRest measures gossip traffic per node once a cluster has
// converged and settled: bytes and packets on the wire (UDP datagrams plus
// TCP push/pull streams, encrypted and labelled), counted by the node's own
// transport wrapper, over a window (default 3 s; set
// WARREN_BENCH_GOSSIP_WINDOW, e.g. 2m, to include WAN push/pulls, which run
// every 60 s). Figures are averages over all nodes.
func BenchmarkGossipAtRest(b *testing.B) {
	window := 3 * time.Second
	if v := os.Getenv("WARREN_BENCH_GOSSIP_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("WARREN_BENCH_GOSSIP_WINDOW: %v", err)
		}
		window = d
	}
	cases := []struct {
		profile string
		nodes   int
		settle  time.Duration // let join broadcasts finish their retransmits
	}{
		{ProfileWAN, 5, 4 * time.Second},
		{ProfileWAN, 21, 6 * time.Second},
		{ProfileLAN, 5, 2 * time.Second},
	}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("%s/%d-nodes", tc.profile, tc.nodes), func(b *testing.B) {
			key := writeKeyFile(b, b.TempDir(), "gossip.key", testKey(21))
			for range b.N {
				b.StopTimer()
				hub := benchStart(b, benchConfig("hub", tc.profile, key), hubMeta("tls://127.0.0.1:4222"))
				nodes := []*Node{hub}
				for i := 1; i < tc.nodes; i++ {
					c := benchConfig(fmt.Sprintf("e%02d", i), tc.profile, key)
					c.Seeds = []string{hub.LocalAddr()}
					nodes = append(nodes, benchStart(b, c, edgeMeta()))
				}
				benchWait(b, 2*time.Minute, "convergence", func() bool {
					for _, n := range nodes {
						if n.Stats().Alive != tc.nodes {
							return false
						}
					}
					return true
				})
				time.Sleep(tc.settle) // a measurement window, not a wait for a condition
				before := make([]Stats, len(nodes))
				for i, n := range nodes {
					before[i] = n.Stats()
				}
				b.StartTimer()
				time.Sleep(window)
				b.StopTimer()
				var sent, recv, tcpSent, psent uint64
				for i, n := range nodes {
					s := n.Stats()
					sent += s.BytesSent - before[i].BytesSent
					recv += s.BytesReceived - before[i].BytesReceived
					tcpSent += s.StreamBytesSent - before[i].StreamBytesSent
					psent += s.PacketsSent - before[i].PacketsSent
				}
				per := func(v uint64) float64 { return float64(v) / float64(len(nodes)) / window.Seconds() }
				b.ReportMetric(per(sent), "sent-B/s/node")
				b.ReportMetric(per(recv), "recv-B/s/node")
				b.ReportMetric(per(tcpSent), "tcp-sent-B/s/node")
				b.ReportMetric(per(psent), "udp-sent-pkt/s/node")
				shutdownAll(nodes)
			}
		})
	}
}
