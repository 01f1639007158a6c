package discovery

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"time"
)

// State is a member's state as this node last learned it.
//
// There is no "suspect" state: memberlist does not report suspicion to its
// delegates, and reading it from memberlist's node list outside its lock is
// a data race. A suspect member stays StateAlive until it is declared dead.
type State string

// Member states.
const (
	StateAlive State = "alive"
	StateDead  State = "dead" // failed: stopped answering probes
	StateLeft  State = "left" // left gracefully
)

// Member is one node of the gossip cluster.
type Member struct {
	// Name is the memberlist node name.
	Name string
	// Addr is the gossip address, "ip:port".
	Addr string
	// State is alive, dead or left.
	State State
	// Since is when this node saw the state (or address) change.
	Since time.Time
	// Meta is the member's parsed metadata; the zero Meta when MetaErr is set.
	Meta Meta
	// MetaErr says why the member's metadata could not be used; empty when
	// it is valid.
	MetaErr string
	// RTT is the round-trip time of this node's last successful probe of the
	// member; 0 until one completed.
	RTT time.Duration
	// Self is true for this node's own entry.
	Self bool
}

// IsHub reports whether m is an alive hub with valid metadata and at least
// one NATS URL, i.e. a hub an edge can dial.
func (m Member) IsHub() bool {
	return m.State == StateAlive && m.MetaErr == "" && m.Meta.Role == RoleHub && len(m.Meta.NATSURLs) > 0
}

// EventType is the kind of a membership event.
type EventType int

// Membership events.
const (
	EventJoin   EventType = iota + 1 // a member joined (or came back)
	EventUpdate                      // a member's metadata changed
	EventLeave                       // a member left gracefully
	EventFail                        // a member stopped answering and was declared dead
)

func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	default:
		return fmt.Sprintf("event(%d)", int(t))
	}
}

// Event is a membership change, delivered on Node.Events.
type Event struct {
	Type   EventType
	Member Member
	Time   time.Time
}

// HubChoice is the hub this node would dial, and why.
type HubChoice struct {
	Member
	// Reason explains the choice for status output and logs.
	Reason string
}

// chooseHub picks the hub among members: the current choice while it stays an
// alive hub (no flapping between hubs), otherwise the alive hub with the
// lowest name, so that all edges converge on the same one.
func chooseHub(members []Member, current string) (HubChoice, bool) {
	var hubs []Member
	for _, m := range members {
		if m.IsHub() {
			hubs = append(hubs, m)
		}
	}
	if len(hubs) == 0 {
		return HubChoice{Reason: "no alive hub known"}, false
	}
	sort.Slice(hubs, func(i, j int) bool { return hubs[i].Name < hubs[j].Name })
	if len(hubs) == 1 {
		return HubChoice{Member: hubs[0], Reason: "only alive hub"}, true
	}
	for _, h := range hubs {
		if h.Name == current {
			return HubChoice{Member: h, Reason: fmt.Sprintf("current hub, still alive (%d hubs)", len(hubs))}, true
		}
	}
	return HubChoice{Member: hubs[0], Reason: fmt.Sprintf("lowest name of %d alive hubs", len(hubs))}, true
}

// hubURLs lists the chosen hub's NATS URLs, then those of the other alive
// hubs (by name), without duplicates. Unspecified hosts become the hub's
// gossip IP.
func hubURLs(members []Member, chosen HubChoice) []string {
	var out []string
	seen := map[string]bool{}
	add := func(m Member) {
		for _, u := range m.Meta.NATSURLs {
			r := resolveURL(u, m.Addr)
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	add(chosen.Member)
	others := make([]Member, 0, len(members))
	for _, m := range members {
		if m.IsHub() && m.Name != chosen.Name {
			others = append(others, m)
		}
	}
	sort.Slice(others, func(i, j int) bool { return others[i].Name < others[j].Name })
	for _, m := range others {
		add(m)
	}
	return out
}

// resolveURL replaces an empty or unspecified host (0.0.0.0, ::) in a NATS
// URL with the IP of gossipAddr; other URLs come back unchanged.
func resolveURL(raw, gossipAddr string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host := u.Hostname()
	if host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return raw
		}
	}
	gip, _, err := net.SplitHostPort(gossipAddr)
	if err != nil || gip == "" {
		return raw
	}
	port := u.Port()
	if port == "" {
		port = "4222"
	}
	u.Host = net.JoinHostPort(gip, port)
	return u.String()
}
