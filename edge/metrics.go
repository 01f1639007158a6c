package edge

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/version"
)

// Datagram formats counted by warren_edge_udp_datagrams_total.
const (
	formatV0      = "v0"
	formatV1      = "v1"
	formatUnknown = "unknown"
)

// counters are the edge's event counts. They are plain atomics read by both
// Status and the Prometheus collector, so the two never disagree. Every label
// value is created up front: a map read needs no lock and a reason with no
// rejection still shows 0.
type counters struct {
	accepted  map[string]*atomic.Uint64 // by source
	rejected  map[string]*atomic.Uint64 // by reason
	datagrams map[string]*atomic.Uint64 // by format
	unsigned  atomic.Uint64             // accepted unsigned (v0) datagrams
	tstFixed  atomic.Uint64
	expired   atomic.Uint64
}

func newCounters() *counters {
	c := &counters{
		accepted:  map[string]*atomic.Uint64{},
		rejected:  map[string]*atomic.Uint64{},
		datagrams: map[string]*atomic.Uint64{},
	}
	for _, s := range []string{event.SourceUDP, event.SourceMQTT} {
		c.accepted[s] = new(atomic.Uint64)
	}
	for _, r := range Reasons() {
		c.rejected[r] = new(atomic.Uint64)
	}
	for _, f := range []string{formatV0, formatV1, formatUnknown} {
		c.datagrams[f] = new(atomic.Uint64)
	}
	return c
}

func (c *counters) accept(source string, n uint64) {
	if a, ok := c.accepted[source]; ok {
		a.Add(n)
	}
}

func (c *counters) reject(reason string, n uint64) {
	r, ok := c.rejected[reason]
	if !ok {
		r = c.rejected[ReasonOther]
	}
	r.Add(n)
}

func snapshot(m map[string]*atomic.Uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v.Load()
	}
	return out
}

// collector exports the counters and the stream's state.
type collector struct {
	e *Edge

	accepted, rejected, datagrams, unsigned, tstFixed, expired *prometheus.Desc
	streamMsgs, streamBytes, streamAge, streamMaxBytes         *prometheus.Desc
	streamMaxMsgs, queueLen, queueCap, nonces, info, up        *prometheus.Desc
}

func newCollector(e *Edge) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("warren_edge_"+name, help, labels, nil)
	}
	return &collector{
		e:              e,
		accepted:       d("events_accepted_total", "Events stored in the edge stream (JetStream acknowledged), by source.", "source"),
		rejected:       d("events_rejected_total", "Events or datagrams refused, by reason.", "reason"),
		datagrams:      d("udp_datagrams_total", "UDP datagrams received, by format (v0, v1, unknown).", "format"),
		unsigned:       d("udp_unsigned_accepted_total", "Unsigned (v0) datagrams accepted."),
		tstFixed:       d("tst_fixed_total", "Accepted hare events whose tst was missing or unusable and was replaced by the receive time."),
		expired:        d("events_expired_total", "Events deleted unforwarded because they were older than store.max_age."),
		streamMsgs:     d("stream_messages", "Events in the edge stream (the backlog not yet forwarded)."),
		streamBytes:    d("stream_bytes", "Bytes in the edge stream."),
		streamAge:      d("stream_oldest_age_seconds", "Age of the oldest event in the edge stream; 0 when empty."),
		streamMaxBytes: d("stream_max_bytes", "store.max_bytes; -1 when unbounded."),
		streamMaxMsgs:  d("stream_max_messages", "store.max_msgs; -1 when unbounded."),
		queueLen:       d("ingest_queue_length", "Decoded events waiting to be stored."),
		queueCap:       d("ingest_queue_capacity", "Capacity of the ingest queue (ingest.queue_size)."),
		nonces:         d("replay_cache_entries", "Signed-datagram nonces remembered in memory."),
		info:           d("build_info", "Build information; always 1.", "version", "edge", "epoch"),
		up:             d("stream_up", "1 when the edge stream answered the last status query."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.rejected, c.datagrams, c.unsigned, c.tstFixed,
		c.expired, c.streamMsgs, c.streamBytes, c.streamAge, c.streamMaxBytes, c.streamMaxMsgs,
		c.queueLen, c.queueCap, c.nonces, c.info, c.up} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.refreshMQTTDrops()
	cnt := e.counters
	for s, v := range snapshot(cnt.accepted) {
		ch <- prometheus.MustNewConstMetric(c.accepted, prometheus.CounterValue, float64(v), s)
	}
	for r, v := range snapshot(cnt.rejected) {
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(v), r)
	}
	for f, v := range snapshot(cnt.datagrams) {
		ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(v), f)
	}
	ch <- prometheus.MustNewConstMetric(c.unsigned, prometheus.CounterValue, float64(cnt.unsigned.Load()))
	ch <- prometheus.MustNewConstMetric(c.tstFixed, prometheus.CounterValue, float64(cnt.tstFixed.Load()))
	ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(cnt.expired.Load()))
	ch <- prometheus.MustNewConstMetric(c.queueLen, prometheus.GaugeValue, float64(e.queueLen()))
	ch <- prometheus.MustNewConstMetric(c.queueCap, prometheus.GaugeValue, float64(e.cfg.Ingest.QueueSize))
	ch <- prometheus.MustNewConstMetric(c.nonces, prometheus.GaugeValue, float64(e.replaySize.Load()))
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, version.Version, e.cfg.ID, e.Epoch())
	ch <- prometheus.MustNewConstMetric(c.streamMaxBytes, prometheus.GaugeValue, float64(limitOrUnbounded(e.cfg.Store.MaxBytes)))
	ch <- prometheus.MustNewConstMetric(c.streamMaxMsgs, prometheus.GaugeValue, float64(limitOrUnbounded(e.cfg.Store.MaxMsgs)))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := e.streamStatus(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.streamMsgs, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(c.streamBytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.streamAge, prometheus.GaugeValue, st.OldestAgeSeconds)
}

func limitOrUnbounded(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}
