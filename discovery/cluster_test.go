package discovery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
)

const waitLong = 15 * time.Second

func hubMeta(urls ...string) Meta {
	return Meta{Role: RoleHub, Version: "v-test", NATSURLs: urls, TLSServerName: "hub.warren"}
}

func edgeMeta() Meta { return Meta{Role: RoleEdge, Version: "v-test", Link: LinkConnecting} }

func TestClusterHubAndThreeEdges(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(1))

	hub := startNode(t, testConfig("hub", key), hubMeta("tls://127.0.0.1:4222"))
	var edges []*testNode
	for i := 1; i <= 3; i++ {
		c := testConfig(fmt.Sprintf("e%d", i), key)
		c.Seeds = []string{hub.LocalAddr()}
		edges = append(edges, startNode(t, c, edgeMeta()))
	}
	all := append([]*testNode{hub}, edges...)
	waitConverged(t, waitLong, all, "hub", "e1", "e2", "e3")

	for _, e := range edges {
		if got := e.HubURLs(); !slices.Equal(got, []string{"tls://127.0.0.1:4222"}) {
			t.Errorf("%s: HubURLs = %v", e.cfg.NodeName, got)
		}
		h, ok := e.Hub()
		if !ok || h.Name != "hub" || h.Meta.TLSServerName != "hub.warren" || h.Reason != "only alive hub" {
			t.Errorf("%s: Hub = %+v, %v", e.cfg.NodeName, h, ok)
		}
	}
	waitFor(t, waitLong, "hub stats to show 1 hub and 3 edges", func() bool {
		s := hub.Stats()
		return s.Alive == 4 && s.Hubs == 1 && s.Edges == 3
	})
	if s := hub.Stats(); s.Refused() != 0 {
		t.Errorf("hub refused gossip: %+v", s)
	}

	// The hub got a join event per edge, with parsed metadata.
	waitFor(t, waitLong, "join events at the hub", func() bool {
		return len(hub.eventsOf(EventJoin, "e1")) > 0 && len(hub.eventsOf(EventJoin, "e2")) > 0 && len(hub.eventsOf(EventJoin, "e3")) > 0
	})
	j := hub.eventsOf(EventJoin, "e2")[0]
	if diff := cmp.Diff(Meta{Role: RoleEdge, ID: "e2", Version: "v-test", Link: LinkConnecting}, j.Member.Meta); diff != "" {
		t.Errorf("join event metadata (-want +got):\n%s", diff)
	}
	if j.Member.Addr != edges[1].LocalAddr() || j.Member.State != StateAlive || j.Member.MetaErr != "" {
		t.Errorf("join event member: %+v", j.Member)
	}

	// Metadata updates are coalesced and reach the hub.
	for i := range 100 {
		if err := edges[0].UpdateMeta(Meta{Role: RoleEdge, Version: "v-test", Backlog: uint64(i), Link: LinkUp}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, waitLong, "the hub to see e1's last backlog", func() bool {
		m, _ := hub.member("e1")
		return m.Meta.Backlog == 99 && m.Meta.Link == LinkUp
	})
	if ups := edges[0].Stats().MetaUpdates; ups == 0 || ups >= 50 {
		t.Errorf("100 quick updates made %d broadcasts; want them coalesced", ups)
	}
	// An update event carries it (or a join, if a busy machine made e1 look
	// failed for a moment and it came back with the new metadata).
	waitFor(t, waitLong, "an event with e1's last backlog", func() bool {
		for _, typ := range []EventType{EventUpdate, EventJoin} {
			for _, ev := range hub.eventsOf(typ, "e1") {
				if ev.Member.Meta.Backlog == 99 {
					return true
				}
			}
		}
		return false
	})
	if len(hub.eventsOf(EventUpdate, "e1")) == 0 {
		t.Error("no update event at the hub")
	}
	if err := edges[0].UpdateMeta(Meta{Role: RoleEdge, ID: strings.Repeat("x", 65)}); err == nil {
		t.Error("UpdateMeta accepted an invalid id")
	}

	// A graceful leave and a crash are told apart.
	if err := edges[1].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	_ = edges[1].Shutdown()
	_ = edges[2].Shutdown()
	waitFor(t, waitLong, "the hub to see e2 left and e3 dead, with events", func() bool {
		m2, _ := hub.member("e2")
		m3, _ := hub.member("e3")
		return m2.State == StateLeft && m3.State == StateDead &&
			len(hub.eventsOf(EventLeave, "e2")) > 0 && len(hub.eventsOf(EventFail, "e3")) > 0
	})
	if m3, _ := hub.member("e3"); m3.Meta.ID != "e3" {
		t.Errorf("a dead member should keep its last metadata, got %+v", m3.Meta)
	}
	waitFor(t, waitLong, "hub stats: 2 alive, 1 dead, 1 left", func() bool {
		s := hub.Stats()
		return s.Alive == 2 && s.Dead == 1 && s.Left == 1
	})
	self, ok := hub.member("hub")
	if !ok || !self.Self {
		t.Errorf("hub's own entry: %+v", self)
	}
}

// TestHubMovesEdgesFollow restarts the hub under the same name on another
// address; edges must follow without a restart.
func TestHubMovesEdgesFollow(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		name := "crash"
		if graceful {
			name = "graceful"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			key := writeKeyFile(t, dir, "gossip.key", testKey(2))

			// The hub advertises an unspecified host: readers substitute the
			// address they see it on, so the URL follows the hub's address.
			hub1 := startNode(t, testConfig("hub", key), hubMeta("nats://0.0.0.0:4222"))
			var edges []*testNode
			for i := 1; i <= 2; i++ {
				c := testConfig(fmt.Sprintf("e%d", i), key)
				c.Seeds = []string{hub1.LocalAddr()}
				edges = append(edges, startNode(t, c, edgeMeta()))
			}
			waitConverged(t, waitLong, append([]*testNode{hub1}, edges...), "hub", "e1", "e2")
			for _, e := range edges {
				if got := e.HubURLs(); !slices.Equal(got, []string{"nats://127.0.0.1:4222"}) {
					t.Fatalf("%s: HubURLs before the move = %v", e.cfg.NodeName, got)
				}
			}

			if graceful {
				if err := hub1.Leave(time.Second); err != nil {
					t.Fatal(err)
				}
			}
			_ = hub1.Shutdown()
			if !graceful {
				// Let the edges declare the old hub dead, as after a real crash.
				waitFor(t, waitLong, "edges to see the hub fail", func() bool {
					return len(edges[0].eventsOf(EventFail, "hub")) > 0 && len(edges[1].eventsOf(EventFail, "hub")) > 0
				})
			}

			// Same name, new address: another loopback IP when the system has
			// one (Linux routes all of 127/8), else only a new port.
			c := testConfig("hub", key)
			c.BindAddr = "127.0.0.2"
			if !loopbackUsable("127.0.0.2") {
				t.Log("127.0.0.2 not usable here; moving the hub to a new port only")
				c.BindAddr = "127.0.0.1"
			}
			c.Seeds = []string{edges[0].LocalAddr()}
			hub2 := startNode(t, c, hubMeta("nats://0.0.0.0:4223"))
			if hub2.LocalAddr() == hub1.LocalAddr() {
				t.Fatalf("new hub got the old address %s", hub2.LocalAddr())
			}
			host, _, _ := net.SplitHostPort(hub2.LocalAddr())
			want := []string{"nats://" + host + ":4223"}
			for _, e := range edges {
				waitFor(t, waitLong, e.cfg.NodeName+" to follow the hub", func() bool {
					return slices.Equal(e.HubURLs(), want)
				})
				m, _ := e.member("hub")
				if m.Addr != hub2.LocalAddr() || m.State != StateAlive {
					t.Errorf("%s sees the hub as %+v", e.cfg.NodeName, m)
				}
			}
		})
	}
}

func loopbackUsable(ip string) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// TestKeyRotationNoSplit rotates the cluster key through the key files, one
// node at a time, while gossip runs: no node may refuse a message or be
// declared dead at any step.
func TestKeyRotationNoSplit(t *testing.T) {
	dir := t.TempDir()
	oldKey := writeKeyFile(t, dir, "old.key", testKey(3))
	newKey := writeKeyFile(t, dir, "new.key", testKey(4))

	hub := startNode(t, testConfig("hub", oldKey), hubMeta("tls://127.0.0.1:4222"))
	nodes := []*testNode{hub}
	for i := 1; i <= 2; i++ {
		c := testConfig(fmt.Sprintf("e%d", i), oldKey)
		c.Seeds = []string{hub.LocalAddr()}
		nodes = append(nodes, startNode(t, c, edgeMeta()))
	}
	waitConverged(t, waitLong, nodes, "hub", "e1", "e2")

	// A split by keys shows as refused messages: a node encrypting with a
	// key another lacks. That must never happen. A member declared failed
	// without any refusal is a busy machine missing probe deadlines, not a
	// key problem; it is logged, and the cluster must be whole again.
	check := func(step string) {
		t.Helper()
		waitTraffic(t, nodes, 30)
		for _, n := range nodes {
			if s := n.Stats(); s.Refused() != 0 {
				t.Fatalf("%s: %s refused %d messages: the keys split the cluster: %v", step, n.cfg.NodeName, s.Refused(), n.logs.find("gossip refused"))
			}
			if f := n.eventsOf(EventFail, ""); len(f) > 0 {
				t.Logf("%s: %s saw %s fail without any refusal (timing on a busy machine)", step, n.cfg.NodeName, f[0].Member.Name)
			}
		}
		waitConverged(t, waitLong, nodes, "e1", "e2", "hub")
	}
	oldFP, newFP := KeyFingerprint(testKey(3)), KeyFingerprint(testKey(4))
	steps := []struct {
		name    string
		files   []string
		primary string
		keys    int
	}{
		{"install new key", []string{oldKey, newKey}, oldFP, 2},
		{"switch to new key", []string{newKey, oldKey}, newFP, 2},
		{"remove old key", []string{newKey}, newFP, 1},
	}
	for _, st := range steps {
		for _, n := range nodes { // one node at a time, gossip running in between
			if err := n.SetKeyFiles(st.files); err != nil {
				t.Fatalf("%s on %s: %v", st.name, n.cfg.NodeName, err)
			}
			if k := n.Keyring(); k.Primary != st.primary || len(k.Keys) != st.keys {
				t.Fatalf("%s on %s: keyring %+v", st.name, n.cfg.NodeName, k)
			}
			waitTraffic(t, nodes, 5)
		}
		check(st.name)
	}

	// The old key is now refused, and the refusal is counted and logged at
	// the hub.
	c := testConfig("stale", oldKey)
	stale := startNode(t, c, edgeMeta())
	if _, err := stale.Join(hub.LocalAddr()); err == nil {
		t.Fatal("a node with the removed key joined")
	}
	waitFor(t, waitLong, "the hub to count the refusal", func() bool { return hub.Stats().RefusedWrongKey > 0 })
	if _, ok := hub.member("stale"); ok {
		t.Error("the hub lists the node with the removed key")
	}
	// A node with the new key joins.
	fresh := startNode(t, testConfig("fresh", newKey), edgeMeta())
	if _, err := fresh.Join(hub.LocalAddr()); err != nil {
		t.Fatalf("a node with the new key cannot join: %v", err)
	}
}

func TestReloadKeysKeepsKeyringOnBadFile(t *testing.T) {
	dir := t.TempDir()
	a := writeKeyFile(t, dir, "a.key", testKey(5))
	cfg := testConfig("n", a)
	n, err := New(cfg, edgeMeta(), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := n.Keyring()
	if err := writeFile(a, "garbage"); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadKeys(); err == nil || !strings.Contains(err.Error(), a) {
		t.Fatalf("ReloadKeys with a bad file: err = %v", err)
	}
	if diff := cmp.Diff(before, n.Keyring()); diff != "" {
		t.Errorf("keyring changed after a failed reload (-before +after):\n%s", diff)
	}
	writeKeyFile(t, dir, "a.key", testKey(6))
	if err := n.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	if k := n.Keyring(); k.Primary != KeyFingerprint(testKey(6)) || len(k.Keys) != 1 {
		t.Errorf("after reload: %+v", k)
	}
	if err := n.RemoveKey(testKey(6)); err == nil {
		t.Error("removing the primary key succeeded")
	}
	if err := n.InstallKey([]byte("short")); err == nil {
		t.Error("installing a 5-byte key succeeded")
	}

	insecure := testConfig("i")
	insecure.Insecure = true
	in, err := New(insecure, edgeMeta(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.InstallKey(testKey(1)); err != ErrInsecure {
		t.Errorf("InstallKey on an insecure node: %v", err)
	}
	if k := in.Keyring(); k.Encrypted {
		t.Errorf("insecure keyring status: %+v", k)
	}
}

// TestRefusedPeers: a wrong key, no key and a wrong label are each refused,
// counted and logged at the hub, and never listed.
func TestRefusedPeers(t *testing.T) {
	dir := t.TempDir()
	good := writeKeyFile(t, dir, "good.key", testKey(7))
	wrong := writeKeyFile(t, dir, "wrong.key", testKey(8))

	hub := startNode(t, testConfig("hub", good), hubMeta("tls://127.0.0.1:4222"))
	tests := []struct {
		name   string
		cfg    func() Config
		reason string
		count  func(Stats) uint64
	}{
		{"wrong key", func() Config { return testConfig("intruder-key", wrong) }, "wrong-key",
			func(s Stats) uint64 { return s.RefusedWrongKey }},
		{"no key", func() Config { c := testConfig("intruder-plain"); c.Insecure = true; return c }, "unencrypted",
			func(s Stats) uint64 { return s.RefusedUnencrypted }},
		{"wrong label", func() Config { c := testConfig("intruder-label", good); c.Label = "other"; return c }, "wrong-label",
			func(s Stats) uint64 { return s.RefusedLabel }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.count(hub.Stats())
			n := startNode(t, tt.cfg(), edgeMeta())
			if _, err := n.Join(hub.LocalAddr()); err == nil {
				t.Fatal("join succeeded")
			}
			if n.Stats().JoinFailures == 0 {
				t.Error("the refused node did not count its failed join")
			}
			waitFor(t, waitLong, "the hub to count the refusal", func() bool { return tt.count(hub.Stats()) > before })
			found := false
			for _, w := range hub.logs.find("gossip refused") {
				if w["reason"] == tt.reason && strings.HasPrefix(w["from"], "127.0.0.1:") {
					found = true
				}
			}
			if !found {
				t.Errorf("no %q refusal warning at the hub: %v", tt.reason, hub.logs.find("gossip refused"))
			}
			if _, ok := hub.member(n.cfg.NodeName); ok {
				t.Error("the hub lists the refused node")
			}
		})
	}
	// The key never appears in any log record.
	hub.logs.mu.Lock()
	defer hub.logs.mu.Unlock()
	for _, r := range hub.logs.records {
		s := r.Message
		r.Attrs(func(a slog.Attr) bool { s += " " + a.Value.String(); return true })
		if strings.Contains(s, "BwcHBwcH") { // base64 of the key bytes
			t.Fatalf("key material in a log record: %s", s)
		}
	}
}

// garbageDelegate is a raw memberlist delegate advertising arbitrary bytes.
type garbageDelegate struct{ meta atomic.Pointer[[]byte] }

func (d *garbageDelegate) NodeMeta(limit int) []byte {
	if p := d.meta.Load(); p != nil {
		return *p
	}
	return nil
}
func (d *garbageDelegate) NotifyMsg([]byte)                {}
func (d *garbageDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *garbageDelegate) LocalState(bool) []byte          { return nil }
func (d *garbageDelegate) MergeRemoteState([]byte, bool)   {}

// TestMalformedMetaFromPeer joins a raw memberlist node that advertises
// garbage metadata: the hub and the edge keep running, list it with an
// error, count it, and never take it for a hub.
func TestMalformedMetaFromPeer(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(9))
	hub := startNode(t, testConfig("hub", key), hubMeta("tls://127.0.0.1:4222"))
	ec := testConfig("e1", key)
	ec.Seeds = []string{hub.LocalAddr()}
	edge := startNode(t, ec, edgeMeta())
	waitConverged(t, waitLong, []*testNode{hub, edge}, "hub", "e1")

	garbage := [][]byte{
		[]byte("not json at all"),
		{0x00, 0xff, 0xfe, 0x80},
		[]byte(`{"r":"hub","u":["nats://127.0.0.1:1"]`), // truncated
		[]byte(`{"r":"hub","u":["http://127.0.0.1:1"]}`),
		[]byte(`{"r":"hub","u":["nats://user:pw@127.0.0.1:1"]}`),
		[]byte(`{"r":"aaa-hub","u":["nats://127.0.0.1:1"]}`),
		[]byte(`{"r":"edge","bl":-5}`),
		[]byte(`{"r":"edge","id":"a\u0000b"}`),
		[]byte(strings.Repeat("[", 512)),
		[]byte(`{"r":"hub","u":"nats://127.0.0.1:1"}`),
		[]byte(`{"r":"edge"} {"r":"hub"}`),
	}
	gd := &garbageDelegate{}
	gd.meta.Store(&garbage[0])
	mc := memberlist.DefaultLocalConfig()
	mc.Name = "aaa-garbage" // sorts before "hub": it would win if ever taken for a hub
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.Label = "warren-test"
	mc.SecretKey = testKey(9)
	mc.GossipInterval, mc.ProbeInterval, mc.ProbeTimeout = 5*time.Millisecond, 50*time.Millisecond, 25*time.Millisecond
	mc.SuspicionMult = 6
	mc.Delegate = gd
	mc.LogOutput = io.Discard
	raw, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Shutdown() })
	if _, err := raw.Join([]string{hub.LocalAddr()}); err != nil {
		t.Fatal(err)
	}

	for i, g := range garbage {
		g := g
		if i > 0 {
			gd.meta.Store(&g)
			// A timeout only means "not sent yet"; the wait below decides.
			_ = raw.UpdateNode(time.Second)
		}
		for _, n := range []*testNode{hub, edge} {
			waitFor(t, waitLong, fmt.Sprintf("%s to see garbage %d", n.cfg.NodeName, i), func() bool {
				return n.Stats().MetaInvalid >= uint64(i+1)
			})
			m, ok := n.member("aaa-garbage")
			if !ok || m.MetaErr == "" || m.Meta.Role != "" {
				t.Fatalf("%s lists the garbage node as %+v", n.cfg.NodeName, m)
			}
		}
		if h, ok := edge.Hub(); ok && h.Name != "hub" {
			t.Fatalf("garbage %d: the edge chose %q as its hub", i, h.Name)
		}
	}
	if got := edge.HubURLs(); !slices.Equal(got, []string{"tls://127.0.0.1:4222"}) {
		t.Errorf("edge HubURLs = %v", got)
	}
	if len(hub.logs.find("member advertises invalid metadata; ignoring it")) == 0 {
		t.Error("no warning about invalid metadata at the hub")
	}
	// Still a working cluster: a new edge joins and everyone sees it.
	c := testConfig("e2", key)
	c.Seeds = []string{hub.LocalAddr()}
	e2 := startNode(t, c, edgeMeta())
	waitConverged(t, waitLong, []*testNode{hub, edge, e2}, "aaa-garbage", "e1", "e2", "hub")
}

// TestEventsNeverBlock: nobody reads a 2-event buffer, yet the cluster
// converges and the dropped events are counted.
func TestEventsNeverBlock(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(10))
	hc := testConfig("hub", key)
	hc.EventBuffer = 2
	logger, _ := testLogger(t)
	hubNode, err := New(hc, hubMeta("tls://127.0.0.1:4222"), logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := hubNode.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hubNode.Shutdown() })
	hub := &testNode{Node: hubNode}

	nodes := []*testNode{hub}
	names := []string{"hub"}
	for i := 1; i <= 4; i++ {
		c := testConfig(fmt.Sprintf("e%d", i), key)
		c.Seeds = []string{hubNode.LocalAddr()}
		nodes = append(nodes, startNode(t, c, edgeMeta()))
		names = append(names, c.NodeName)
	}
	waitConverged(t, waitLong, nodes, names...)
	if d := hubNode.Stats().EventsDropped; d < 3 {
		t.Errorf("EventsDropped = %d, want at least 3 (5 joins into a buffer of 2)", d)
	}
	// The oldest event (the hub's own join) was dropped, newer ones kept.
	var got []string
	for len(got) < 2 {
		ev := <-hubNode.Events()
		got = append(got, ev.Member.Name)
	}
	if slices.Contains(got, "hub") {
		t.Errorf("the buffer kept the oldest event: %v", got)
	}
}

// TestRejoinFindsLateHub: an edge starts before its hub exists; its periodic
// re-join finds the hub once it is up, with no restart.
func TestRejoinFindsLateHub(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(11))

	// Learn a free port for the hub (UDP and TCP), then free it.
	probe := startNode(t, testConfig("probe", key), edgeMeta())
	hubAddr := probe.LocalAddr()
	_ = probe.Shutdown()
	_, portStr, _ := net.SplitHostPort(hubAddr)
	var port int
	fmt.Sscan(portStr, &port)

	ec := testConfig("e1", key)
	ec.Seeds = []string{hubAddr}
	edge := startNode(t, ec, edgeMeta())
	waitFor(t, waitLong, "a failed join", func() bool { return edge.Stats().JoinFailures > 0 })
	if _, ok := edge.Hub(); ok {
		t.Fatal("hub known before it exists")
	}

	hc := testConfig("hub", key)
	hc.BindPort = port
	hub := startNode(t, hc, hubMeta("tls://127.0.0.1:4222"))
	waitConverged(t, waitLong, []*testNode{hub, edge}, "e1", "hub")
	if s := edge.Stats(); s.Rejoins == 0 {
		t.Errorf("edge stats %+v: want re-joins", s)
	}
	// Once the hub is known, re-joining stops.
	if edge.needsRejoin() {
		t.Error("edge still wants to re-join with a hub known")
	}
}

func TestLifecycleErrors(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(12))
	n, err := New(testConfig("n", key), edgeMeta(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Join("127.0.0.1:1"); err != ErrNotStarted {
		t.Errorf("Join before Start: %v", err)
	}
	if err := n.Leave(time.Second); err != ErrNotStarted {
		t.Errorf("Leave before Start: %v", err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != ErrStarted {
		t.Errorf("second Start: %v", err)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := n.Leave(time.Second); err != ErrShutdown {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	if err := n.Start(context.Background()); err != ErrShutdown {
		t.Errorf("Start after Shutdown: %v", err)
	}

	// A taken port is a clear error.
	taken := startNode(t, testConfig("a", key), edgeMeta())
	_, p, _ := net.SplitHostPort(taken.LocalAddr())
	c := testConfig("b", key)
	fmt.Sscan(p, &c.BindPort)
	b, err := New(c, edgeMeta(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "bind gossip") {
		t.Errorf("Start on a taken port: %v", err)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// TestEmptyConnectionsAreNotRefusals: a TCP connection that sends nothing
// (a port scan, a health check) is not a refused peer.
func TestEmptyConnectionsAreNotRefusals(t *testing.T) {
	key := writeKeyFile(t, t.TempDir(), "gossip.key", testKey(14))
	hub := startNode(t, testConfig("hub", key), hubMeta("tls://127.0.0.1:4222"))
	for range 3 {
		c, err := net.Dial("tcp", hub.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	waitFor(t, waitLong, "3 empty streams counted", func() bool { return hub.Stats().EmptyStreams >= 3 })
	// A connection that does send something without a label is refused.
	c, err := net.Dial("tcp", hub.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte{0x06, 0, 0, 0})
	waitFor(t, waitLong, "the unlabelled stream to be refused", func() bool { return hub.Stats().RefusedLabel == 1 })
	_ = c.Close()
	if s := hub.Stats(); s.Refused() != 1 {
		t.Errorf("stats %+v: want only the unlabelled stream refused", s)
	}
}
