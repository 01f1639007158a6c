package discovery

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a node's Stats as Prometheus metrics (namespace
// warren_discovery):
//
//	warren_discovery_members{state="alive|dead|left"}
//	warren_discovery_hubs_alive, warren_discovery_edges_alive
//	warren_discovery_refused_total{reason="wrong_key|unencrypted|wrong_label"}
//	warren_discovery_joins_total, _join_failures_total, _rejoins_total
//	warren_discovery_meta_invalid_total, _meta_updates_total, _events_dropped_total
//	warren_discovery_bytes_total{dir="sent|received"}, _packets_total{dir}
//	warren_discovery_hub_known (1 when an alive hub is known)
//	warren_discovery_health_score
type Collector struct {
	n *Node

	members, hubs, edges, refused, joins, joinFailures, rejoins *prometheus.Desc
	metaInvalid, metaUpdates, dropped, bytes, packets           *prometheus.Desc
	hubKnown, health                                            *prometheus.Desc
}

// NewCollector returns a collector for n; register it once.
func NewCollector(n *Node) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("warren_discovery_"+name, help, labels, nil)
	}
	return &Collector{
		n:            n,
		members:      d("members", "Gossip members known, by state (this node included).", "state"),
		hubs:         d("hubs_alive", "Alive hubs with valid metadata."),
		edges:        d("edges_alive", "Alive edges with valid metadata."),
		refused:      d("refused_total", "Gossip messages refused, by reason (wrong_key: a peer with another gossip key).", "reason"),
		joins:        d("joins_total", "Successful joins (initial, explicit and periodic re-joins)."),
		joinFailures: d("join_failures_total", "Join attempts no seed answered."),
		rejoins:      d("rejoins_total", "Periodic re-join attempts made while no hub or no other member was known."),
		metaInvalid:  d("meta_invalid_total", "Membership records with unusable metadata."),
		metaUpdates:  d("meta_updates_total", "Metadata broadcasts by this node."),
		dropped:      d("events_dropped_total", "Membership events dropped because their reader was slow."),
		bytes:        d("bytes_total", "Gossip bytes on the wire (UDP and TCP, encrypted), by direction.", "dir"),
		packets:      d("packets_total", "Gossip UDP packets, by direction.", "dir"),
		hubKnown:     d("hub_known", "1 when an alive hub is known, else 0."),
		health:       d("health_score", "memberlist's awareness score: 0 is healthy."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.hubs, c.edges, c.refused, c.joins, c.joinFailures, c.rejoins,
		c.metaInvalid, c.metaUpdates, c.dropped, c.bytes, c.packets, c.hubKnown, c.health} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	ct := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(c.members, float64(s.Alive), "alive")
	g(c.members, float64(s.Dead), "dead")
	g(c.members, float64(s.Left), "left")
	g(c.hubs, float64(s.Hubs))
	g(c.edges, float64(s.Edges))
	ct(c.refused, s.RefusedWrongKey, "wrong_key")
	ct(c.refused, s.RefusedUnencrypted, "unencrypted")
	ct(c.refused, s.RefusedLabel, "wrong_label")
	ct(c.joins, s.Joins)
	ct(c.joinFailures, s.JoinFailures)
	ct(c.rejoins, s.Rejoins)
	ct(c.metaInvalid, s.MetaInvalid)
	ct(c.metaUpdates, s.MetaUpdates)
	ct(c.dropped, s.EventsDropped)
	ct(c.bytes, s.BytesSent, "sent")
	ct(c.bytes, s.BytesReceived, "received")
	ct(c.packets, s.PacketsSent, "sent")
	ct(c.packets, s.PacketsReceived, "received")
	known := 0.0
	if _, ok := c.n.Hub(); ok {
		known = 1
	}
	g(c.hubKnown, known)
	g(c.health, float64(s.HealthScore))
}
