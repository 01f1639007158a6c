package hub

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
)

// metrics are the hub's Prometheus metrics. Counters also keep their
// values for Status.
type metrics struct {
	h                *Hub
	ingest           *countVec
	refused          *countVec
	unlisted         prometheus.Counter
	republished      prometheus.Counter
	republishedN     atomic.Uint64
	republishSkipped prometheus.Counter
	storeSeconds     prometheus.Histogram
}

// countVec is a CounterVec whose values Status can read back.
type countVec struct {
	vec *prometheus.CounterVec
	mu  sync.Mutex
	n   map[string]uint64
}

func newCountVec(opts prometheus.CounterOpts, labels ...string) *countVec {
	return &countVec{vec: prometheus.NewCounterVec(opts, labels), n: map[string]uint64{}}
}

type countLabels struct {
	c      *countVec
	labels []string
}

func (c *countVec) WithLabelValues(l ...string) countLabels { return countLabels{c, l} }

func (l countLabels) Inc() {
	l.c.vec.WithLabelValues(l.labels...).Inc()
	key := l.labels[0]
	for _, s := range l.labels[1:] {
		key += "/" + s
	}
	l.c.mu.Lock()
	l.c.n[key]++
	l.c.mu.Unlock()
}

func (c *countVec) snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func newMetrics(h *Hub) *metrics {
	m := &metrics{
		h: h,
		ingest: newCountVec(prometheus.CounterOpts{
			Name: "hub_ingest_events_total",
			Help: "Edge events handled by the ingest service, by result (stored, duplicate, store_error, timeout, out_of_order, forged_msg_id, ...).",
		}, "result"),
		refused: newCountVec(prometheus.CounterOpts{
			Name: "hub_refused_connections_total",
			Help: "Connections refused, by listener (nats, mqtt, mqtt-tls) and reason.",
		}, "listener", "reason"),
		unlisted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hub_unlisted_edge_logins_total",
			Help: "Edge logins accepted with a certificate not in pki_dir/edges (nats.allow_unlisted_edges).",
		}),
		republished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hub_republished_total",
			Help: "Stored events republished on their MQTT topic.",
		}),
		republishSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hub_republish_skipped_total",
			Help: "Stored events not republished because their topic maps to an internal subject.",
		}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hub_ingest_store_seconds",
			Help:    "Time from an edge event's arrival to the stream's answer.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
	}
	for _, r := range ingestResults {
		m.ingest.vec.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(reg *prometheus.Registry) error {
	cs := []prometheus.Collector{
		m.ingest.vec, m.refused.vec, m.unlisted, m.republished, m.republishSkipped, m.storeSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hub_edges_connected",
			Help: "Edges with at least one open connection.",
		}, func() float64 { return float64(m.h.edges.connectedCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hub_mqtt_clients",
			Help: "Open MQTT client connections (local and TLS).",
		}, func() float64 { return float64(len(m.h.mqttClients())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hub_stream_messages",
			Help: "Events in the hub stream.",
		}, func() float64 { return float64(m.h.streamStatus().Messages) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hub_stream_bytes",
			Help: "Bytes in the hub stream.",
		}, func() float64 { return float64(m.h.streamStatus().Bytes) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// StreamStatus describes the hub stream.
type StreamStatus struct {
	Name            string `json:"name"`
	Messages        uint64 `json:"messages"`
	Bytes           uint64 `json:"bytes"`
	FirstSeq        uint64 `json:"first_seq"`
	LastSeq         uint64 `json:"last_seq"`
	DuplicateWindow string `json:"duplicate_window"`
	MaxBytes        int64  `json:"max_bytes"` // -1: unlimited
	MaxAge          string `json:"max_age"`   // "0s": forever
	Discard         string `json:"discard"`
	Error           string `json:"error,omitempty"`
}

// streamStatus reads the stream state from the server directly (no
// request round trip), so scrapes and status work whatever the load.
func (h *Hub) streamStatus() StreamStatus {
	st := StreamStatus{
		Name:            event.HubStream,
		DuplicateWindow: h.cfg.Stream.DuplicateWindow.String(),
		MaxBytes:        -1,
		MaxAge:          h.cfg.Stream.MaxAge.String(),
		Discard:         h.cfg.Stream.Discard,
	}
	if h.cfg.Stream.MaxBytes > 0 {
		st.MaxBytes = h.cfg.Stream.MaxBytes
	}
	s := h.Server()
	if s == nil {
		st.Error = ErrNotRunning.Error()
		return st
	}
	ad, err := s.JszAccount(&server.JSzOptions{Account: AccountHub, Streams: true})
	if err != nil {
		st.Error = err.Error()
		return st
	}
	for _, sd := range ad.Streams {
		if sd.Name == event.HubStream {
			ss := sd.State
			st.Messages, st.Bytes, st.FirstSeq, st.LastSeq = ss.Msgs, ss.Bytes, ss.FirstSeq, ss.LastSeq
			return st
		}
	}
	st.Error = "stream not found"
	return st
}
