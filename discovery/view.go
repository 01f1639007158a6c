package discovery

import (
	"time"
)

// View is a node's discovery state for status output (`edge status`, the
// hub's /discovery): who it is, the members it knows, the hub it would dial
// and why, and its counters. It holds no key material (fingerprints only).
type View struct {
	Node     string        `json:"node"`
	Addr     string        `json:"addr"`
	Label    string        `json:"label"`
	Profile  string        `json:"profile"`
	Seeds    []string      `json:"seeds"`
	Keyring  KeyringStatus `json:"keyring"`
	Hub      *ViewHub      `json:"hub,omitempty"`
	HubWhy   string        `json:"hub_reason"`
	HubURLs  []string      `json:"hub_urls"`
	Members  []ViewMember  `json:"members"`
	Counters ViewCounters  `json:"counters"`
}

// ViewHub is the hub a node would dial.
type ViewHub struct {
	Name       string   `json:"name"`
	Addr       string   `json:"addr"`
	Version    string   `json:"version,omitempty"`
	NATSURLs   []string `json:"nats_urls"`
	ServerName string   `json:"tls_server_name,omitempty"`
}

// ViewMember is one member in a View.
type ViewMember struct {
	Name    string    `json:"name"`
	Addr    string    `json:"addr"`
	State   State     `json:"state"`
	Since   time.Time `json:"since"`
	Role    Role      `json:"role,omitempty"`
	Version string    `json:"version,omitempty"`
	Backlog uint64    `json:"backlog,omitempty"`
	Link    LinkState `json:"link,omitempty"`
	MetaErr string    `json:"meta_error,omitempty"`
	RTTms   float64   `json:"rtt_ms,omitempty"`
	Self    bool      `json:"self,omitempty"`
}

// ViewCounters are the Stats a person looks at.
type ViewCounters struct {
	Alive              int     `json:"alive"`
	Dead               int     `json:"dead"`
	Left               int     `json:"left"`
	Joins              uint64  `json:"joins"`
	JoinFailures       uint64  `json:"join_failures"`
	Rejoins            uint64  `json:"rejoins"`
	RefusedWrongKey    uint64  `json:"refused_wrong_key"`
	RefusedUnencrypted uint64  `json:"refused_unencrypted"`
	RefusedLabel       uint64  `json:"refused_label"`
	MetaInvalid        uint64  `json:"meta_invalid"`
	BytesSent          uint64  `json:"bytes_sent"`
	BytesReceived      uint64  `json:"bytes_received"`
	HealthScore        int     `json:"health_score"`
	UptimeSeconds      float64 `json:"uptime_seconds"`
}

// View returns the node's discovery state.
func (n *Node) View() View {
	h, ok, members := n.del.hubChoice()
	s := n.Stats()
	v := View{
		Node:    n.cfg.NodeName,
		Addr:    n.LocalAddr(),
		Label:   n.cfg.Label,
		Profile: n.cfg.Profile,
		Seeds:   append([]string{}, n.cfg.Seeds...),
		Keyring: n.Keyring(),
		HubWhy:  h.Reason,
		HubURLs: []string{},
		Members: make([]ViewMember, 0, len(members)),
		Counters: ViewCounters{
			Alive: s.Alive, Dead: s.Dead, Left: s.Left,
			Joins: s.Joins, JoinFailures: s.JoinFailures, Rejoins: s.Rejoins,
			RefusedWrongKey: s.RefusedWrongKey, RefusedUnencrypted: s.RefusedUnencrypted, RefusedLabel: s.RefusedLabel,
			MetaInvalid: s.MetaInvalid, BytesSent: s.BytesSent, BytesReceived: s.BytesReceived,
			HealthScore: s.HealthScore, UptimeSeconds: s.Uptime.Seconds(),
		},
	}
	if v.HubWhy == "" {
		v.HubWhy = "no alive hub known"
	}
	if ok {
		v.Hub = &ViewHub{Name: h.Name, Addr: h.Addr, Version: h.Meta.Version,
			NATSURLs: append([]string{}, h.Meta.NATSURLs...), ServerName: h.Meta.TLSServerName}
		v.HubURLs = hubURLs(members, h)
	}
	for _, m := range members {
		vm := ViewMember{Name: m.Name, Addr: m.Addr, State: m.State, Since: m.Since.UTC(), Role: m.Meta.Role,
			Version: m.Meta.Version, Backlog: m.Meta.Backlog, Link: m.Meta.Link, MetaErr: m.MetaErr, Self: m.Self}
		if m.RTT > 0 {
			vm.RTTms = float64(m.RTT.Microseconds()) / 1000
		}
		v.Members = append(v.Members, vm)
	}
	return v
}
