package audit

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OtherLabel is the client or topic label of everything past LabelCap.
const OtherLabel = "other"

// Message directions in the per-client and per-topic metrics.
const (
	DirPublish = "publish" // messages a client published (to a topic)
	DirDeliver = "deliver" // messages delivered to a client (through a subscription filter)
)

type metrics struct {
	connsTotal   *prometheus.CounterVec
	authFail     *prometheus.CounterVec
	events       *prometheus.CounterVec
	alerts       *prometheus.CounterVec
	blocksTotal  *prometheus.CounterVec
	blocked      *prometheus.GaugeVec
	blockedConns prometheus.Counter
	dropped      *prometheus.CounterVec
	emitErrors   prometheus.Counter
	clients      *capped
	topics       *capped
}

func newMetrics(cfg Config, now func() time.Time) *metrics {
	m := &metrics{
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_audit_connections_total",
			Help: "Client connections accepted, by listener and TLS version (\"none\" for plain).",
		}, []string{"listener", "tls"}),
		authFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_audit_auth_failures_total",
			Help: "Refused logins, by listener.",
		}, []string{"listener"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_audit_events_total",
			Help: "Audit events observed, by kind (including those suppressed or kept quiet).",
		}, []string{"kind"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_audit_alerts_total",
			Help: "Audit alerts raised, by rule.",
		}, []string{"rule"}),
		blocksTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_audit_blocks_total",
			Help: "Temporary blocks imposed by the brute-force rules, by scope (addr, user).",
		}, []string{"scope"}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warren_audit_blocked",
			Help: "Addresses and users blocked now, by scope.",
		}, []string{"scope"}),
		blockedConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warren_audit_blocked_connections_total",
			Help: "Successful logins from a blocked address or user that the auditor closed.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_audit_dropped_total",
			Help: "Audit observations or events dropped because a queue was full, by stage (queue, emit, tap).",
		}, []string{"stage"}),
		emitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "warren_audit_emit_errors_total",
			Help: "Audit events the sink refused or did not take in time.",
		}),
	}
	m.clients = newCapped(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warren_audit_client_messages_total",
		Help: "Messages per client id and direction (publish: sent by the client; deliver: matched by its subscriptions). " +
			"The first label_cap client ids get a series; later ones count as client=\"other\".",
	}, []string{"client", "direction"}), "client", cfg.LabelCap, cfg.LabelIdle, now)
	m.topics = newCapped(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warren_audit_topic_messages_total",
		Help: "Messages per MQTT topic (publish) or subscription filter (deliver). " +
			"The first label_cap topics get a series; later ones count as topic=\"other\".",
	}, []string{"topic", "direction"}), "topic", cfg.LabelCap, cfg.LabelIdle, now)
	for _, r := range Rules {
		m.alerts.WithLabelValues(string(r))
	}
	for _, k := range Kinds {
		m.events.WithLabelValues(string(k))
	}
	for _, s := range []string{ScopeAddr, ScopeUser} {
		m.blocksTotal.WithLabelValues(s)
		m.blocked.WithLabelValues(s)
	}
	for _, s := range []string{"queue", "emit", "tap"} {
		m.dropped.WithLabelValues(s)
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.connsTotal, m.authFail, m.events, m.alerts,
		m.blocksTotal, m.blocked, m.blockedConns, m.dropped, m.emitErrors, m.clients.vec, m.topics.vec} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// capped is a counter vector whose first label (client or topic) has at
// most max distinct values at a time. A value gets a series the first time
// it is counted while there is room; past the cap it is counted as
// OtherLabel. A value not counted for idle is dropped (its series
// removed) when room is needed, so a long-running daemon follows the
// clients and topics that are active rather than the first ones it saw.
type capped struct {
	vec       *prometheus.CounterVec
	labelName string
	max       int
	idle      time.Duration
	now       func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
	// noIdleUntil: a full scan found no name idle before this time, so
	// until then a new name goes to OtherLabel without another scan.
	noIdleUntil time.Time
}

func newCapped(vec *prometheus.CounterVec, labelName string, max int, idle time.Duration, now func() time.Time) *capped {
	return &capped{vec: vec, labelName: labelName, max: max, idle: idle, now: now, last: map[string]time.Time{}}
}

// label returns the label value to count name under.
func (c *capped) label(name string) string {
	if name == "" {
		name = "-"
	}
	if name == OtherLabel {
		return name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.last[name]; ok {
		c.last[name] = now
		return name
	}
	if len(c.last) >= c.max && !now.Before(c.noIdleUntil) {
		oldest := now
		for k, t := range c.last {
			if now.Sub(t) > c.idle {
				delete(c.last, k)
				c.vec.DeletePartialMatch(prometheus.Labels{c.labelName: k})
			} else if t.Before(oldest) {
				oldest = t
			}
		}
		// Names only get younger, so none idles before the oldest does.
		c.noIdleUntil = oldest.Add(c.idle)
	}
	if len(c.last) >= c.max {
		return OtherLabel
	}
	c.last[name] = now
	return name
}

// add counts n messages of name in direction dir.
func (c *capped) add(name, dir string, n uint64) {
	if n == 0 {
		return
	}
	c.vec.WithLabelValues(c.label(name), dir).Add(float64(n))
}

// size is the number of names with their own series.
func (c *capped) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.last)
}
