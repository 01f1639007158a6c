package notify

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the notifier's Prometheus series (namespace warren_notify).
type metrics struct {
	events       *prometheus.CounterVec   // result: routed, unrouted, invalid
	queued       *prometheus.CounterVec   // target
	sent         *prometheus.CounterVec   // target
	failed       *prometheus.CounterVec   // target: failed attempts
	retried      *prometheus.CounterVec   // target: attempts scheduled again
	deadlettered *prometheus.CounterVec   // target
	skipped      *prometheus.CounterVec   // target: already sent (idempotency record)
	suppressed   *prometheus.CounterVec   // target, stage
	missing      *prometheus.CounterVec   // route
	renderErrors *prometheus.CounterVec   // route
	reloads      *prometheus.CounterVec   // result
	synthetic    *prometheus.CounterVec   // kind: silence, recovered, offline, online
	sendSeconds  *prometheus.HistogramVec // target
	silent       *prometheus.GaugeVec     // watch, edge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "warren", Subsystem: "notify", Name: name, Help: help}, labels)
	}
	m := &metrics{
		events:       cv("events_total", "Events taken from the hub stream, by result (routed, unrouted, invalid).", "result"),
		queued:       cv("queued_total", "Notifications written to a target's outbox.", "target"),
		sent:         cv("sent_total", "Notifications delivered.", "target"),
		failed:       cv("failed_total", "Failed delivery attempts.", "target"),
		retried:      cv("retried_total", "Failed attempts scheduled to be tried again.", "target"),
		deadlettered: cv("deadlettered_total", "Notifications moved to the dead-letter stream.", "target"),
		skipped:      cv("skipped_total", "Deliveries skipped because the idempotency record says they were sent.", "target"),
		suppressed:   cv("suppressed_total", "Notifications not sent, by stage (dedup, quiet, render, route).", "target", "stage"),
		missing:      cv("missing_keys_total", "Templates that named a key the event lacks.", "route"),
		renderErrors: cv("render_errors_total", "Templates that failed for another reason (a value the format spec cannot format, a bad priority).", "route"),
		reloads:      cv("reloads_total", "Configuration reloads, by result (ok, error).", "result"),
		synthetic:    cv("synthetic_total", "Notifications the notifier made itself, by kind (silence, recovered, offline, online).", "kind"),
		sendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "warren", Subsystem: "notify", Name: "send_seconds",
			Help:    "Duration of delivery attempts.",
			Buckets: []float64{.001, .005, .025, .1, .5, 1, 2.5, 5, 10, 30},
		}, []string{"target"}),
		silent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "warren", Subsystem: "notify", Name: "silent",
			Help: "1 while a silence watch sees no events.",
		}, []string{"watch", "edge"}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.events, m.queued, m.sent, m.failed, m.retried, m.deadlettered, m.skipped, m.suppressed, m.missing, m.renderErrors, m.reloads, m.synthetic, m.sendSeconds, m.silent} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}
