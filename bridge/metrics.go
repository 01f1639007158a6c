package bridge

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Link states, as Status reports them and the link_state gauge labels them.
const (
	StateNotConfigured = "not configured"
	StateConnecting    = "connecting"
	StateConnected     = "connected"
	StateDisconnected  = "disconnected"
)

var allStates = []string{StateNotConfigured, StateConnecting, StateConnected, StateDisconnected}

// Failure kinds counted by warren_bridge_failures_total.
const (
	failConnect = "connect" // dial, TLS or NATS handshake failed
	failLink    = "link"    // an established connection was lost
	failPublish = "publish" // the hub refused a publish or did not answer in time
	failEdge    = "edge"    // reading or acking the edge stream failed
)

type metrics struct {
	forwarded    prometheus.Counter
	duplicates   prometheus.Counter
	failures     *prometheus.CounterVec
	rewinds      prometheus.Counter
	connects     prometheus.Counter
	backlogMsgs  prometheus.Gauge
	backlogBytes prometheus.Gauge
	oldestAge    prometheus.Gauge
	rtt          prometheus.Gauge
	state        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warren_bridge_forwarded_total",
			Help: "Events the hub confirmed (PubAck, duplicates included) and the edge then acknowledged.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warren_bridge_duplicates_total",
			Help: "Confirmed events the hub already had (resent after a lost answer or a rewind).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_bridge_failures_total",
			Help: "Bridge failures by kind: connect, link (connection lost), publish (refused or timed out), edge (edge stream).",
		}, []string{"kind"}),
		rewinds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warren_bridge_rewinds_total",
			Help: "Times forwarding restarted from the first unconfirmed event to keep order.",
		}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warren_bridge_connects_total",
			Help: "Successful connections to the hub.",
		}),
		backlogMsgs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warren_bridge_backlog_messages",
			Help: "Events stored at the edge and not yet confirmed by the hub.",
		}),
		backlogBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warren_bridge_backlog_bytes",
			Help: "Bytes of the events stored at the edge and not yet confirmed by the hub.",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warren_bridge_backlog_oldest_age_seconds",
			Help: "Age of the oldest event not yet confirmed by the hub (0 when none).",
		}),
		rtt: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "warren_bridge_rtt_seconds",
			Help: "Last measured round-trip time to the hub.",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warren_bridge_link_state",
			Help: "1 for the hub link's current state, 0 for the others.",
		}, []string{"state"}),
	}
	for _, k := range []string{failConnect, failLink, failPublish, failEdge} {
		m.failures.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.forwarded, m.duplicates, m.failures, m.rewinds, m.connects,
		m.backlogMsgs, m.backlogBytes, m.oldestAge, m.rtt, m.state} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) setState(s string) {
	for _, x := range allStates {
		v := 0.0
		if x == s {
			v = 1
		}
		m.state.WithLabelValues(x).Set(v)
	}
}
