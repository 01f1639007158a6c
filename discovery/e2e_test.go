package discovery_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-mesh/warren/bridge"
	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/edge"
	"github.com/warren-mesh/warren/hub"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
)

// End-to-end: a real hub (hub.New/Run) advertised through discovery, real
// edges (edge.New) whose bridges dial through discovery only (no static
// hub.url), everything on loopback.

// e2eLog collects a component's log lines; shown when the test fails.
type e2eLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *e2eLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func newLog(tb testing.TB, name string) *slog.Logger {
	l := &e2eLog{}
	tb.Cleanup(func() {
		if tb.Failed() {
			l.mu.Lock()
			tb.Logf("---- %s log ----\n%s", name, l.b.String())
			l.mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func e2eWait(tb testing.TB, timeout time.Duration, what func() string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; ; d = min(2*d, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what())
		}
		time.Sleep(d)
	}
}

// gossipConfig is a loopback node with serf-style fast timers.
func gossipConfig(name, bindIP, keyFile string, seeds ...string) discovery.Config {
	c := discovery.DefaultConfig()
	c.NodeName = name
	c.BindAddr = bindIP
	c.BindPort = 0
	c.Profile = discovery.ProfileLocal
	c.Label = "warren-e2e"
	c.KeyFiles = []string{keyFile}
	c.Seeds = seeds
	c.RejoinInterval = 100 * time.Millisecond
	c.MetaUpdateInterval = 20 * time.Millisecond
	c.Tuning = discovery.Tuning{
		GossipInterval:      5 * time.Millisecond,
		ProbeInterval:       50 * time.Millisecond,
		ProbeTimeout:        25 * time.Millisecond,
		PushPullInterval:    300 * time.Millisecond,
		TCPTimeout:          2 * time.Second,
		SuspicionMult:       6,
		GossipToTheDeadTime: 2 * time.Second,
		DeadNodeReclaimTime: 100 * time.Millisecond,
	}
	return c
}

func writeGossipKey(tb testing.TB, dir string, b byte) string {
	tb.Helper()
	key := make([]byte, 32)
	for i := range key {
		key[i] = b
	}
	p := filepath.Join(dir, fmt.Sprintf("gossip-%d.key", b))
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// runningHub is a hub and its discovery node, as cmd/hub wires them.
type runningHub struct {
	*hub.Hub
	node   *discovery.Node
	cancel context.CancelFunc
	done   chan error
}

// startHub runs a hub on a free loopback NATS port and advertises it in
// gossip as "hub" (on bindIP), joining seeds.
func startHub(tb testing.TB, dataDir, pkiDir, key, bindIP string, seeds ...string) *runningHub {
	tb.Helper()
	return startHubWith(tb, e2eSetup{log: func(name string) *slog.Logger { return newLog(tb, name) }, gossip: gossipConfig},
		dataDir, pkiDir, key, bindIP, seeds...)
}

// e2eSetup chooses loggers and gossip configurations (tests: fast timers
// and collected logs; benchmarks: a profile's own timers, no logs).
type e2eSetup struct {
	log    func(name string) *slog.Logger
	gossip func(name, bindIP, keyFile string, seeds ...string) discovery.Config
}

func startHubWith(tb testing.TB, su e2eSetup, dataDir, pkiDir, key, bindIP string, seeds ...string) *runningHub {
	tb.Helper()
	cfg := hub.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.PKIDir = pkiDir
	cfg.NATS.Listen = net.JoinHostPort(bindIP, "0") // where the gossip is: the URL says 0.0.0.0
	cfg.MQTT.Listen, cfg.MQTT.TLSListen, cfg.Admin.Listen = "", "", ""
	cfg.Log.Level = "debug"
	h, err := hub.New(cfg, su.log("hub"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rh := &runningHub{Hub: h, cancel: cancel, done: make(chan error, 1)}
	go func() { rh.done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-rh.done:
		cancel()
		tb.Fatalf("hub: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		tb.Fatal("hub not ready after 30 s")
	}
	_, port, _ := net.SplitHostPort(h.Addrs().NATS)
	meta := discovery.Meta{Role: discovery.RoleHub, Version: "e2e",
		NATSURLs: []string{"tls://0.0.0.0:" + port}, TLSServerName: pki.DefaultServerName}
	n, err := discovery.New(su.gossip("hub", bindIP, key, seeds...), meta, su.log("hub gossip"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	h.SetFleetSource(n.Members)
	rh.node = n
	tb.Cleanup(func() { rh.stop(tb, false) })
	return rh
}

// stop stops the hub; graceful leaves the gossip cluster first, otherwise
// the node just vanishes (a crash, as far as gossip can tell).
func (rh *runningHub) stop(tb testing.TB, graceful bool) {
	if rh.cancel == nil {
		return
	}
	if graceful {
		_ = rh.node.Leave(time.Second)
	}
	_ = rh.node.Shutdown()
	rh.cancel()
	rh.cancel = nil
	select {
	case err := <-rh.done:
		if err != nil {
			tb.Errorf("hub run: %v", err)
		}
	case <-time.After(30 * time.Second):
		tb.Error("hub did not stop within 30 s")
	}
}

func (rh *runningHub) storedMsgs(tb testing.TB) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := rh.JetStream().Stream(ctx, event.HubStream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

func (rh *runningHub) edge(id string) (hub.EdgeStatus, bool) {
	for _, e := range rh.Edges() {
		if e.ID == id {
			return e, true
		}
	}
	return hub.EdgeStatus{}, false
}

// runningEdge is an edge with its discovery node and a bridge that dials
// only through discovery, as cmd/edge wires them.
type runningEdge struct {
	*edge.Edge
	node   *discovery.Node
	bridge *bridge.Bridge
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startEdge(tb testing.TB, id, dir, pkiDir, key string, seeds ...string) *runningEdge {
	tb.Helper()
	return startEdgeWith(tb, e2eSetup{log: func(name string) *slog.Logger { return newLog(tb, name) }, gossip: gossipConfig},
		id, dir, pkiDir, key, seeds...)
}

func startEdgeWith(tb testing.TB, su e2eSetup, id, dir, pkiDir, key string, seeds ...string) *runningEdge {
	tb.Helper()
	l := pki.LayoutOf(pkiDir)
	cfg := edge.DefaultConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(dir, id)
	cfg.UDP.Listen = "127.0.0.1:0"
	cfg.MQTT.Listen, cfg.Admin.Listen = "", ""
	cfg.Log.Level = "debug"
	cfg.Hub.CAFile, cfg.Hub.CertFile, cfg.Hub.KeyFile = l.CACert, l.EdgeCert(id), l.EdgeKey(id)
	cfg.Hub.Heartbeat = 200 * time.Millisecond
	logger := su.log("edge " + id)
	e, err := edge.New(cfg, logger, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.Start(ctx); err != nil {
		cancel()
		tb.Fatal(err)
	}
	re := &runningEdge{Edge: e, cancel: cancel}
	n, err := discovery.New(su.gossip(id, "127.0.0.1", key, seeds...),
		discovery.Meta{Role: discovery.RoleEdge, Version: "e2e", Link: discovery.LinkConnecting}, logger)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	re.node = n
	b, err := bridge.New(cfg.Hub, e, logger, nil, bridge.WithHubAddrs(n.HubURLs))
	if err != nil {
		tb.Fatal(err)
	}
	re.bridge = b
	re.wg.Go(func() { _ = b.Run(ctx) })
	re.wg.Go(func() { // what cmd/edge's discovery service does
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				st := b.Status()
				_ = n.UpdateMeta(discovery.Meta{Role: discovery.RoleEdge, Version: "e2e", Backlog: st.BacklogMsgs, Link: discovery.LinkFromBridge(st.State)})
			}
		}
	})
	tb.Cleanup(func() { re.stop(false) })
	return re
}

func (re *runningEdge) stop(graceful bool) {
	if re.cancel == nil {
		return
	}
	if graceful {
		_ = re.node.Leave(time.Second)
	}
	re.cancel()
	re.cancel = nil
	re.wg.Wait()
	_ = re.node.Shutdown()
	_ = re.Close()
}

// login sends one unsigned hare datagram (accepted from loopback).
func (re *runningEdge) login(tb testing.TB, user string) {
	tb.Helper()
	c, err := net.Dial("udp", re.UDPAddr())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	msg := fmt.Sprintf(`{"tst":%d,"hostname":"vm","user":%q,"service":"sshd","rhost":"198.51.100.7","tty":"ssh"}`, time.Now().Unix(), user)
	if _, err := c.Write([]byte(msg)); err != nil {
		tb.Fatal(err)
	}
}

// TestBridgeFollowsMovedHub: an edge configured with nothing but a gossip
// seed and key forwards to the hub; the hub then comes back on another NATS
// port and another gossip address (same name, same store, same PKI), and the
// edge's running bridge follows it, without a restart and with the TLS
// server name unchanged. Run once with a graceful hub stop, once with a
// crash.
func TestBridgeFollowsMovedHub(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real hubs and edges")
	}
	for _, graceful := range []bool{true, false} {
		name := "crash"
		if graceful {
			name = "graceful"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pkiDir := filepath.Join(dir, "pki")
			if _, err := pki.DevPKI(pkiDir, "e1"); err != nil {
				t.Fatal(err)
			}
			key := writeGossipKey(t, dir, 1)
			hubData := filepath.Join(dir, "hub")

			hub1 := startHub(t, hubData, pkiDir, key, "127.0.0.1")
			e1 := startEdge(t, "e1", dir, pkiDir, key, hub1.node.LocalAddr())
			e2eWait(t, 20*time.Second, func() string { return fmt.Sprintf("e1 connected to hub1: %+v", e1.bridge.Status()) }, func() bool {
				return e1.bridge.Status().State == "connected"
			})
			if st := e1.bridge.Status(); st.URL != "tls://"+hub1.Addrs().NATS || st.ServerName != "hub.warren" {
				t.Fatalf("bridge link %+v; want tls://%s, server name hub.warren", st, hub1.Addrs().NATS)
			}
			e1.login(t, "before")
			e2eWait(t, 20*time.Second, func() string { return "the first login stored at the hub" }, func() bool { return hub1.storedMsgs(t) == 1 })

			// The hub lists e1 from both sources.
			e2eWait(t, 10*time.Second, func() string { es, _ := hub1.edge("e1"); return fmt.Sprintf("hub1's fleet entry for e1: %+v", es) }, func() bool {
				es, ok := hub1.edge("e1")
				return ok && es.Connected && slices.Equal(es.Sources, []string{"nats", "gossip"}) && es.Gossip == "alive" && es.Link == "up" && es.Mark == ""
			})

			oldNATS := hub1.Addrs().NATS
			hub1.stop(t, graceful)
			e2eWait(t, 20*time.Second, func() string { return fmt.Sprintf("e1 to lose the hub: %+v", e1.bridge.Status()) }, func() bool {
				return e1.bridge.Status().State != "connected"
			})
			e1.login(t, "during") // stored at the edge while the hub is away

			// The hub returns elsewhere: a new NATS port and a new gossip
			// address (another loopback IP where the system has one). It
			// knows one edge to join, as a moved hub must (discovery.seeds).
			ip := "127.0.0.2"
			if l, err := net.Listen("tcp", ip+":0"); err != nil {
				t.Log("127.0.0.2 unusable here: the hub moves to new ports only")
				ip = "127.0.0.1"
			} else {
				l.Close()
			}
			hub2 := startHub(t, hubData, pkiDir, key, ip, e1.node.LocalAddr())
			if hub2.Addrs().NATS == oldNATS {
				t.Fatalf("the new hub got the old NATS address %s", oldNATS)
			}
			e2eWait(t, 30*time.Second, func() string {
				return fmt.Sprintf("e1's bridge to follow the hub to %s: %+v; discovery %v", hub2.Addrs().NATS, e1.bridge.Status(), e1.node.HubURLs())
			}, func() bool {
				st := e1.bridge.Status()
				return st.State == "connected" && st.URL == "tls://"+hub2.Addrs().NATS
			})
			if st := e1.bridge.Status(); st.ServerName != "hub.warren" || st.TLSVersion != "1.3" {
				t.Errorf("after the move: link %+v", st)
			}
			e1.login(t, "after")
			e2eWait(t, 20*time.Second, func() string { return fmt.Sprintf("3 logins at the hub, %d stored", hub2.storedMsgs(t)) }, func() bool {
				return hub2.storedMsgs(t) == 3
			})

			// A graceful edge departure shows as "left" in the hub's fleet.
			e1.stop(true)
			e2eWait(t, 20*time.Second, func() string { es, _ := hub2.edge("e1"); return fmt.Sprintf("e1 marked left: %+v", es) }, func() bool {
				es, ok := hub2.edge("e1")
				return ok && !es.Connected && es.Gossip == "left" && es.Mark == hub.MarkLeft
			})
		})
	}
}
