package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// fastTuning are serf-style test timers, with a longer suspicion multiplier
// and TCP timeout so that a busy 2-core machine (or -race) rarely declares
// healthy nodes dead. Tests still never depend on the absence of such false
// failures unless that is what they test.
func fastTuning() Tuning {
	return Tuning{
		GossipInterval:      5 * time.Millisecond,
		ProbeInterval:       50 * time.Millisecond,
		ProbeTimeout:        25 * time.Millisecond,
		PushPullInterval:    300 * time.Millisecond,
		TCPTimeout:          2 * time.Second,
		SuspicionMult:       6,
		GossipToTheDeadTime: 2 * time.Second,
		DeadNodeReclaimTime: 100 * time.Millisecond,
	}
}

// testConfig is a loopback node on a random port with fast timers.
func testConfig(name string, keyFiles ...string) Config {
	c := DefaultConfig()
	c.NodeName = name
	c.BindAddr = "127.0.0.1"
	c.BindPort = 0
	c.Profile = ProfileLocal
	c.Tuning = fastTuning()
	c.Label = "warren-test"
	c.KeyFiles = keyFiles
	c.RejoinInterval = 100 * time.Millisecond
	c.MetaUpdateInterval = 20 * time.Millisecond
	c.EventBuffer = 1024
	return c
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// testLogger returns a logger that records (and with WARREN_TEST_LOG=1 also
// prints) everything, and the recorder.
func testLogger(t testing.TB) (*slog.Logger, *recordHandler) {
	h := &recordHandler{}
	if os.Getenv("WARREN_TEST_LOG") != "" {
		return slog.New(teeHandler{h, slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})}), h
	}
	return slog.New(h), h
}

type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(context.Context, slog.Level) bool { return true }
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	_ = t.a.Handle(ctx, r)
	return t.b.Handle(ctx, r)
}
func (t teeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(a), t.b.WithAttrs(a)}
}
func (t teeHandler) WithGroup(g string) slog.Handler {
	return teeHandler{t.a.WithGroup(g), t.b.WithGroup(g)}
}

// testNode is a started node plus a recorder of its events and logs.
type testNode struct {
	*Node
	logs *recordHandler

	mu     sync.Mutex
	events []Event
	done   chan struct{}
}

// startNode creates and starts a node and collects its events until the
// test ends.
func startNode(t testing.TB, cfg Config, meta Meta) *testNode {
	t.Helper()
	logger, logs := testLogger(t)
	n, err := New(cfg, meta, logger.With("node", cfg.NodeName))
	if err != nil {
		t.Fatalf("new %s: %v", cfg.NodeName, err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", cfg.NodeName, err)
	}
	tn := &testNode{Node: n, logs: logs, done: make(chan struct{})}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case ev := <-n.Events():
				tn.mu.Lock()
				tn.events = append(tn.events, ev)
				tn.mu.Unlock()
			case <-tn.done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = n.Shutdown()
		close(tn.done)
		<-stopped
	})
	return tn
}

// eventsOf returns the recorded events of one type about one member.
func (tn *testNode) eventsOf(typ EventType, member string) []Event {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var out []Event
	for _, ev := range tn.events {
		if ev.Type == typ && (member == "" || ev.Member.Name == member) {
			out = append(out, ev)
		}
	}
	return out
}

// member returns this node's entry for name.
func (tn *testNode) member(name string) (Member, bool) {
	for _, m := range tn.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// aliveNames lists the alive members this node sees.
func (tn *testNode) aliveNames() []string {
	var out []string
	for _, m := range tn.Members() {
		if m.State == StateAlive {
			out = append(out, m.Name)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitConverged waits until every node sees exactly the given names alive.
func waitConverged(t testing.TB, timeout time.Duration, nodes []*testNode, names ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(names))
	waitFor(t, timeout, fmt.Sprintf("every node to see %v alive", want), func() bool {
		for _, n := range nodes {
			if !slices.Equal(n.aliveNames(), want) {
				return false
			}
		}
		return true
	})
}

// waitTraffic waits until every node has received at least n more packets,
// i.e. the cluster has gossiped for a while under the current state.
func waitTraffic(t testing.TB, nodes []*testNode, n uint64) {
	t.Helper()
	base := make([]uint64, len(nodes))
	for i, nd := range nodes {
		base[i] = nd.Stats().PacketsReceived
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("%d packets at every node", n), func() bool {
		for i, nd := range nodes {
			if nd.Stats().PacketsReceived < base[i]+n {
				return false
			}
		}
		return true
	})
}
