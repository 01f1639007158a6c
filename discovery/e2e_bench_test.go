package discovery_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/hub/pki"
)

// benchGossip is a loopback node with the profile's own timers: the
// figures are what a deployment with that profile gets.
func benchGossip(profile string, rejoin time.Duration) func(name, bindIP, keyFile string, seeds ...string) discovery.Config {
	return func(name, bindIP, keyFile string, seeds ...string) discovery.Config {
		c := discovery.DefaultConfig()
		c.NodeName = name
		c.BindAddr = bindIP
		c.BindPort = 0
		c.Profile = profile
		c.KeyFiles = []string{keyFile}
		c.Seeds = seeds
		if rejoin > 0 {
			c.RejoinInterval = rejoin
		}
		return c
	}
}

// freeGossipPort is a loopback port free for TCP and UDP a moment ago.
func freeGossipPort(b *testing.B) int {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	b.Fatal("no free gossip port")
	return 0
}

// BenchmarkHubTo20ConnectedEdges measures the time from a hub's start
// (hub.New, Run, discovery node) until it has 20 edges connected over
// mutual TLS: real in-process edges (edge.New, embedded JetStream) whose
// bridges know the hub only through discovery (no static hub.url), with the
// WAN profile's timers. hub-first: the edges start right after the hub.
// edges-waiting: the 20 edges run first and find the hub by re-joining their
// seed (default rejoin_interval: re-joins after 1 s, 2 s, 4 s, ... while no
// hub is known, so the figure depends on where in that series the hub
// comes up). It then reports the gossip traffic per node
// at rest over a 10 s window (all 21 nodes converged, links up, no events).
func BenchmarkHubTo20ConnectedEdges(b *testing.B) {
	const edges = 20
	quiet := func(string) *slog.Logger { return slog.New(slog.DiscardHandler) }
	for _, tc := range []struct {
		name       string
		edgesFirst bool
	}{{"hub-first", false}, {"edges-waiting", true}} {
		b.Run(tc.name, func(b *testing.B) {
			su := e2eSetup{log: quiet, gossip: benchGossip(discovery.ProfileWAN, 0)}
			var total, ready time.Duration
			var restSent, restRecv float64
			for range b.N {
				b.StopTimer()
				dir, err := os.MkdirTemp("", "warren-bench-")
				if err != nil {
					b.Fatal(err)
				}
				pkiDir := filepath.Join(dir, "pki")
				ids := make([]string, edges)
				for i := range ids {
					ids[i] = fmt.Sprintf("b%02d", i)
				}
				if _, err := pki.DevPKI(pkiDir, ids...); err != nil {
					b.Fatal(err)
				}
				key := writeGossipKey(b, dir, 9)
				// The hub's gossip address is fixed in advance, as in a
				// deployment (the edges' seed).
				seed := fmt.Sprintf("127.0.0.1:%d", freeGossipPort(b))
				hubSU := su
				hubSU.gossip = func(name, ip, k string, seeds ...string) discovery.Config {
					c := su.gossip(name, ip, k, seeds...)
					_, p, _ := net.SplitHostPort(seed)
					fmt.Sscan(p, &c.BindPort)
					return c
				}
				runEdges := make([]*runningEdge, edges)
				startEdges := func() {
					var wg sync.WaitGroup
					for i := range runEdges {
						wg.Go(func() { runEdges[i] = startEdgeWith(b, su, ids[i], dir, pkiDir, key, seed) })
					}
					wg.Wait()
				}
				if tc.edgesFirst {
					startEdges()
				}
				b.StartTimer()
				start := time.Now()
				h := startHubWith(b, hubSU, filepath.Join(dir, "hub"), pkiDir, key, "127.0.0.1")
				ready += time.Since(start)
				if !tc.edgesFirst {
					startEdges()
				}
				benchWait(b, 2*time.Minute, "20 connected edges", func() bool {
					n := 0
					for _, e := range h.Edges() {
						if e.Connected {
							n++
						}
					}
					return n == edges
				})
				total += time.Since(start)
				b.StopTimer()
				benchWait(b, time.Minute, "21 alive members everywhere", func() bool {
					if h.node.Stats().Alive != edges+1 {
						return false
					}
					for _, e := range runEdges {
						if e.node.Stats().Alive != edges+1 {
							return false
						}
					}
					return true
				})
				nodes := []*discovery.Node{h.node}
				for _, e := range runEdges {
					nodes = append(nodes, e.node)
				}
				time.Sleep(3 * time.Second) // let join broadcasts finish their retransmits
				before := make([]discovery.Stats, len(nodes))
				for i, n := range nodes {
					before[i] = n.Stats()
				}
				const window = 10 * time.Second // two WAN probe intervals
				time.Sleep(window)
				var sent, recv uint64
				for i, n := range nodes {
					s := n.Stats()
					sent += s.BytesSent - before[i].BytesSent
					recv += s.BytesReceived - before[i].BytesReceived
				}
				restSent += float64(sent) / float64(len(nodes)) / window.Seconds()
				restRecv += float64(recv) / float64(len(nodes)) / window.Seconds()
				var wg sync.WaitGroup
				for _, e := range runEdges {
					wg.Go(func() { e.stop(false) })
				}
				wg.Wait()
				h.stop(b, false)
				os.RemoveAll(dir)
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Millisecond) }
			b.ReportMetric(ms(ready), "hub-ready-ms")
			b.ReportMetric(ms(total), "hub-start-to-20-connected-ms")
			b.ReportMetric(restSent/float64(b.N), "rest-sent-B/s/node")
			b.ReportMetric(restRecv/float64(b.N), "rest-recv-B/s/node")
		})
	}
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
