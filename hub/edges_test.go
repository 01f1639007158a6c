package hub

import (
	"slices"
	"testing"
	"time"

	"github.com/warren-mesh/warren/discovery"
)

func TestFleetEntry(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	gm := func(state discovery.State, since time.Duration, link discovery.LinkState) discovery.Member {
		return discovery.Member{Name: "e1", Addr: "10.0.0.9:7946", State: state, Since: now.Add(-since),
			Meta: discovery.Meta{Role: discovery.RoleEdge, ID: "e1", Version: "v9", Backlog: 42, Link: link}}
	}
	nats := EdgeStatus{ID: "e1", Sources: []string{"nats"}}
	connected := nats
	connected.Connected, connected.Address, connected.Version, connected.BacklogMsgs, connected.LastSeen = true, "10.0.0.9:50000", "v8", 3, ago(time.Second)
	gone := nats
	gone.LastSeen = ago(time.Hour)
	recent := nats
	recent.LastSeen = ago(10 * time.Second)

	cases := []struct {
		name     string
		e        EdgeStatus
		m        discovery.Member
		inGossip bool
		sources  []string
		link     string
		mark     string
		addr     string
		version  string
		backlog  uint64
	}{
		{"connected, gossip alive: NATS wins", connected, gm(discovery.StateAlive, time.Minute, discovery.LinkUp), true,
			[]string{"nats", "gossip"}, "up", "", "10.0.0.9:50000", "v8", 3},
		{"gossip only, alive, link down", EdgeStatus{ID: "e1"}, gm(discovery.StateAlive, time.Minute, discovery.LinkDown), true,
			[]string{"gossip"}, "down", "", "10.0.0.9:7946", "v9", 42},
		{"gossip only, connecting", EdgeStatus{ID: "e1"}, gm(discovery.StateAlive, time.Minute, discovery.LinkConnecting), true,
			[]string{"gossip"}, "connecting", "", "10.0.0.9:7946", "v9", 42},
		{"disconnected, gossip dead", gone, gm(discovery.StateDead, time.Minute, discovery.LinkUp), true,
			[]string{"nats", "gossip"}, "down", MarkDead, "10.0.0.9:7946", "v9", 0},
		{"disconnected, gossip left", gone, gm(discovery.StateLeft, time.Minute, discovery.LinkUp), true,
			[]string{"nats", "gossip"}, "down", MarkLeft, "10.0.0.9:7946", "v9", 0},
		{"connected, gossip dead: mTLS wins", connected, gm(discovery.StateDead, time.Minute, discovery.LinkUp), true,
			[]string{"nats", "gossip"}, "up", "", "10.0.0.9:50000", "v8", 3},
		{"no gossip, gone an hour", gone, discovery.Member{}, false, []string{"nats"}, "down", MarkStale, "", "", 0},
		{"no gossip, gone 10 s", recent, discovery.Member{}, false, []string{"nats"}, "down", "", "", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := c.e
			e.Sources = slices.Clone(e.Sources)
			got := fleetEntry(e, c.m, c.inGossip, now)
			if !slices.Equal(got.Sources, c.sources) || got.Link != c.link || got.Mark != c.mark || got.Address != c.addr ||
				got.Version != c.version || got.BacklogMsgs != c.backlog {
				t.Errorf("got sources %v link %q mark %q addr %q version %q backlog %d", got.Sources, got.Link, got.Mark, got.Address, got.Version, got.BacklogMsgs)
			}
			if c.inGossip && (got.Gossip != string(c.m.State) || got.GossipAddr != "10.0.0.9:7946" || got.GossipSince == nil) {
				t.Errorf("gossip fields: %+v", got)
			}
			if got.LastSeen == nil {
				t.Error("no last seen")
			}
		})
	}
}

func TestGossipEdgesFilter(t *testing.T) {
	tr := newEdgeTracker(nil)
	if tr.gossipEdges() != nil {
		t.Fatal("gossip edges without a source")
	}
	members := []discovery.Member{
		{Name: "hub", Self: true, State: discovery.StateAlive, Meta: discovery.Meta{Role: discovery.RoleHub}},
		{Name: "other-hub", State: discovery.StateAlive, Meta: discovery.Meta{Role: discovery.RoleHub}},
		{Name: "bad", State: discovery.StateAlive, MetaErr: "not json"},
		{Name: "Bad_ID", State: discovery.StateAlive, Meta: discovery.Meta{Role: discovery.RoleEdge}},
		{Name: "node-x", State: discovery.StateAlive, Meta: discovery.Meta{Role: discovery.RoleEdge, ID: "site-x"}},
		{Name: "site-y", State: discovery.StateDead, Meta: discovery.Meta{Role: discovery.RoleEdge}},
	}
	f := func() []discovery.Member { return members }
	tr.gossip.Store(&f)
	got := tr.gossipEdges()
	if len(got) != 2 || got["site-x"].Name != "node-x" || got["site-y"].State != discovery.StateDead {
		t.Errorf("gossip edges: %+v", got)
	}
}
