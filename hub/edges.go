package hub

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/discovery"
	"github.com/warren-mesh/warren/hub/pki"
	"github.com/warren-mesh/warren/internal/event"
)

// Heartbeat is the status heartbeat an edge publishes on
// edge.<id>.$warren.status (event.Heartbeat).
type Heartbeat = event.Heartbeat

// edgeTracker follows edge connections (from the server's connect and
// disconnect events) and heartbeats.
type edgeTracker struct {
	h *Hub

	// gossip lists the discovery members (SetFleetSource); nil when
	// discovery does not run.
	gossip atomic.Pointer[func() []discovery.Member]

	mu    sync.Mutex
	edges map[string]*edgeRec
	byCID map[uint64]string
	cbs   []func(id string, up bool, at time.Time)
}

type edgeRec struct {
	id         string
	conns      map[uint64]connRec
	hb         *Heartbeat
	hbAt       time.Time
	lastSeen   time.Time
	stored     uint64
	duplicates uint64
}

type connRec struct {
	cid    uint64
	remote string
	since  time.Time
	tls    string
	listed bool
}

func newEdgeTracker(h *Hub) *edgeTracker {
	return &edgeTracker{h: h, edges: map[string]*edgeRec{}, byCID: map[uint64]string{}}
}

func (t *edgeTracker) onLink(f func(string, bool, time.Time)) {
	t.mu.Lock()
	t.cbs = append(t.cbs, f)
	t.mu.Unlock()
}

func (t *edgeTracker) rec(id string) *edgeRec {
	r := t.edges[id]
	if r == nil {
		r = &edgeRec{id: id, conns: map[uint64]connRec{}}
		t.edges[id] = r
	}
	return r
}

// start subscribes to connect/disconnect events (system account) and
// picks up edges that connected before the subscription.
func (t *edgeTracker) start(sys *nats.Conn) error {
	if _, err := sys.Subscribe("$SYS.ACCOUNT.*.CONNECT", t.connectEvent); err != nil {
		return fmt.Errorf("connect events: %w", err)
	}
	if _, err := sys.Subscribe("$SYS.ACCOUNT.*.DISCONNECT", t.disconnectEvent); err != nil {
		return fmt.Errorf("disconnect events: %w", err)
	}
	if err := sys.Flush(); err != nil {
		return fmt.Errorf("system events: %w", err)
	}
	return nil
}

// reconcile adds edge connections the events have not reported (made
// before the subscription).
func (t *edgeTracker) reconcile(s *server.Server) {
	cz, err := s.Connz(&server.ConnzOptions{Account: AccountEdges, Username: true, Limit: 100000})
	if err != nil {
		return
	}
	for _, ci := range cz.Conns {
		t.connected(ci.Cid, ci.AuthorizedUser, ci.Start)
	}
}

func (t *edgeTracker) connectEvent(m *nats.Msg) {
	var ev server.ConnectEventMsg
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return
	}
	if ev.Client.Account != AccountEdges {
		return
	}
	at := ev.Time
	if ev.Client.Start != nil {
		at = *ev.Client.Start
	}
	t.connected(ev.Client.ID, ev.Client.User, at)
}

func (t *edgeTracker) connected(cid uint64, user string, at time.Time) {
	id, err := pki.EdgeIDFromUserName(user)
	if err != nil {
		return // the ingest's own connection
	}
	info, _ := t.h.auth.info(cid)
	t.mu.Lock()
	if _, known := t.byCID[cid]; known {
		t.mu.Unlock()
		return
	}
	r := t.rec(id)
	first := len(r.conns) == 0
	r.conns[cid] = connRec{cid: cid, remote: info.Remote, since: at.UTC(), tls: info.TLSVersion, listed: info.Listed}
	r.lastSeen = time.Now().UTC()
	t.byCID[cid] = id
	cbs := append([]func(string, bool, time.Time){}, t.cbs...)
	t.mu.Unlock()
	t.h.log.Info("edge connected", "edge", id, "remote", info.Remote, "tls", info.TLSVersion, "cid", cid)
	if first {
		for _, f := range cbs {
			f(id, true, at)
		}
	}
}

func (t *edgeTracker) disconnectEvent(m *nats.Msg) {
	var ev server.DisconnectEventMsg
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return
	}
	t.h.auth.forget(ev.Client.ID)
	if ev.Client.Account != AccountEdges {
		return
	}
	at := ev.Time
	if ev.Client.Stop != nil {
		at = *ev.Client.Stop
	}
	t.mu.Lock()
	id, ok := t.byCID[ev.Client.ID]
	if !ok {
		t.mu.Unlock()
		return
	}
	delete(t.byCID, ev.Client.ID)
	r := t.rec(id)
	delete(r.conns, ev.Client.ID)
	r.lastSeen = at.UTC()
	last := len(r.conns) == 0
	cbs := append([]func(string, bool, time.Time){}, t.cbs...)
	t.mu.Unlock()
	t.h.log.Info("edge disconnected", "edge", id, "reason", ev.Reason, "cid", ev.Client.ID)
	if last {
		for _, f := range cbs {
			f(id, false, at)
		}
	}
}

func (t *edgeTracker) heartbeat(hb Heartbeat, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rec(hb.ID)
	r.hb = &hb
	r.hbAt = at.UTC()
	r.lastSeen = at.UTC()
}

func (t *edgeTracker) counted(id string, stored bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rec(id)
	if stored {
		r.stored++
	} else {
		r.duplicates++
	}
}

func (t *edgeTracker) connectedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.edges {
		if len(r.conns) > 0 {
			n++
		}
	}
	return n
}

// EdgeStatus is one edge as the hub sees it.
type EdgeStatus struct {
	ID          string     `json:"id"`
	Connected   bool       `json:"connected"`
	Connections int        `json:"connections"`           // open connections (more than one is worth a look)
	Address     string     `json:"address,omitempty"`     // remote ip:port of the newest connection
	TLSVersion  string     `json:"tls_version,omitempty"` // of the newest connection
	Since       *time.Time `json:"since,omitempty"`       // connected since (newest connection)
	RTT         string     `json:"rtt,omitempty"`
	Listed      bool       `json:"listed"` // its certificate is the one in pki_dir/edges
	LastSeen    *time.Time `json:"last_seen,omitempty"`
	Stored      uint64     `json:"stored"`     // events stored since the hub started
	Duplicates  uint64     `json:"duplicates"` // duplicates answered since the hub started
	// From the edge's latest heartbeat:
	Version       string     `json:"version,omitempty"`
	Epoch         string     `json:"epoch,omitempty"`
	Started       *time.Time `json:"started,omitempty"`
	BacklogMsgs   uint64     `json:"backlog_msgs"`
	BacklogBytes  uint64     `json:"backlog_bytes"`
	OldestAgeMS   int64      `json:"oldest_age_ms"`
	Forwarded     uint64     `json:"forwarded"`
	LinkSince     *time.Time `json:"link_since,omitempty"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// The fleet view, NATS connections and gossip merged:
	// Sources says where the hub knows the edge from: "nats" (a mutual-TLS
	// connection or heartbeat since the hub started; the edge's identity is
	// proven) and/or "gossip" (discovery membership; an edge's gossip name is
	// not proof of identity).
	Sources []string `json:"sources"`
	// Link is the hub link: "up" while connected; otherwise what the edge
	// advertises in gossip ("down", "connecting", ...), or "down".
	Link string `json:"link"`
	// Gossip is the edge's gossip state (alive, dead or left), GossipAddr
	// its gossip address and GossipSince when that state began; empty
	// when discovery does not list it.
	Gossip      string     `json:"gossip,omitempty"`
	GossipAddr  string     `json:"gossip_addr,omitempty"`
	GossipSince *time.Time `json:"gossip_since,omitempty"`
	// Mark flags an edge that is not connected: "dead" (gossip declared it
	// failed), "left" (it left gracefully) or "stale" (nothing heard from
	// it, by NATS or gossip, for StaleAfter). Empty otherwise.
	Mark string `json:"mark,omitempty"`
}

// StaleAfter is how long an edge that is neither connected nor alive in
// gossip keeps an unmarked entry before `hub edges` marks it stale.
const StaleAfter = 2 * time.Minute

// Fleet marks (EdgeStatus.Mark).
const (
	MarkStale = "stale"
	MarkDead  = "dead"
	MarkLeft  = "left"
)

// SetFleetSource adds gossip members (discovery.Node.Members) to the edge
// list of Status, Edges and /edges: edges known only from gossip are listed
// too, and entries get their gossip state and marks. nil removes it.
func (h *Hub) SetFleetSource(f func() []discovery.Member) {
	if f == nil {
		h.edges.gossip.Store(nil)
		return
	}
	h.edges.gossip.Store(&f)
}

// gossipEdges returns the edges among the gossip members, by edge id (the
// metadata's id, else the node name); the alive entry wins over others.
func (t *edgeTracker) gossipEdges() map[string]discovery.Member {
	f := t.gossip.Load()
	if f == nil {
		return nil
	}
	out := map[string]discovery.Member{}
	for _, m := range (*f)() {
		if m.Self || m.MetaErr != "" || m.Meta.Role != discovery.RoleEdge {
			continue
		}
		id := m.Meta.ID
		if id == "" {
			id = m.Name
		}
		if event.ValidID(id) != nil {
			continue
		}
		if old, ok := out[id]; ok && old.State == discovery.StateAlive {
			continue
		}
		out[id] = m
	}
	return out
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// list returns every edge seen since the hub started, sorted by id; RTTs
// come from the server's connection list.
func (t *edgeTracker) list(s *server.Server) []EdgeStatus {
	rtt := map[uint64]string{}
	if s != nil {
		if cz, err := s.Connz(&server.ConnzOptions{Account: AccountEdges, Limit: 100000}); err == nil {
			for _, ci := range cz.Conns {
				rtt[ci.Cid] = ci.RTT
			}
		}
	}
	gossip := t.gossipEdges()
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]EdgeStatus, 0, len(t.edges)+len(gossip))
	for id, m := range gossip {
		if _, ok := t.edges[id]; !ok {
			out = append(out, fleetEntry(EdgeStatus{ID: id}, m, true, now))
		}
	}
	for _, r := range t.edges {
		e := EdgeStatus{
			ID:          r.id,
			Connected:   len(r.conns) > 0,
			Connections: len(r.conns),
			LastSeen:    timePtr(r.lastSeen),
			Stored:      r.stored,
			Duplicates:  r.duplicates,
		}
		var newest *connRec
		for _, c := range r.conns {
			if newest == nil || c.since.After(newest.since) || c.since.Equal(newest.since) && c.cid > newest.cid {
				c := c
				newest = &c
			}
		}
		if newest != nil {
			e.Address, e.TLSVersion, e.Since = newest.remote, newest.tls, timePtr(newest.since)
			e.RTT, e.Listed = rtt[newest.cid], newest.listed
		}
		if hb := r.hb; hb != nil {
			e.Version, e.Epoch, e.Started = hb.Version, hb.Epoch, timePtr(hb.Started)
			e.BacklogMsgs, e.BacklogBytes, e.OldestAgeMS = hb.BacklogMsgs, hb.BacklogBytes, hb.OldestAgeMS
			e.Forwarded, e.LinkSince, e.LastHeartbeat = hb.Forwarded, timePtr(hb.LinkSince), timePtr(r.hbAt)
		}
		e.Sources = []string{"nats"}
		m, inGossip := gossip[r.id]
		out = append(out, fleetEntry(e, m, inGossip, now))
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].ID, out[j].ID) < 0 })
	return out
}

// fleetEntry completes e (from NATS, possibly empty) with the gossip member
// m (when inGossip) and sets Link and Mark. NATS wins where both know a
// field: it is authenticated and, while connected, current.
func fleetEntry(e EdgeStatus, m discovery.Member, inGossip bool, now time.Time) EdgeStatus {
	if e.Sources == nil {
		e.Sources = []string{}
	}
	alive := false
	if inGossip {
		e.Sources = append(e.Sources, "gossip")
		e.Gossip, e.GossipAddr, e.GossipSince = string(m.State), m.Addr, timePtr(m.Since)
		alive = m.State == discovery.StateAlive
		if e.Version == "" {
			e.Version = m.Meta.Version
		}
		if e.Address == "" {
			e.Address = m.Addr
		}
		if !e.Connected && alive {
			// The edge's own, newer word on its backlog.
			e.BacklogMsgs = m.Meta.Backlog
		}
		seen := m.Since
		if alive {
			seen = now
		}
		if e.LastSeen == nil || seen.After(*e.LastSeen) {
			e.LastSeen = timePtr(seen)
		}
	}
	switch {
	case e.Connected:
		e.Link = "up"
	case alive && m.Meta.Link != "" && m.Meta.Link != discovery.LinkUp:
		e.Link = string(m.Meta.Link)
	default:
		e.Link = "down"
	}
	switch {
	case e.Connected || alive:
	case inGossip && m.State == discovery.StateDead:
		e.Mark = MarkDead
	case inGossip && m.State == discovery.StateLeft:
		e.Mark = MarkLeft
	case e.LastSeen == nil || now.Sub(*e.LastSeen) > StaleAfter:
		e.Mark = MarkStale
	}
	return e
}
