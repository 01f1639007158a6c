package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/hub/notify/target"
	"github.com/warren-mesh/warren/internal/event"
)

// Header names of outbox and dead-letter messages.
const (
	hdrNotifyTarget   = "Warren-Notify-Target"
	hdrNotifyReason   = "Warren-Notify-Reason"
	hdrNotifyAttempts = "Warren-Notify-Attempts"
)

// outboxRecord is the JSON body of an outbox message: one rendered
// notification for one target.
type outboxRecord struct {
	ID           string         `json:"id"`
	EventID      string         `json:"event_id"`
	Route        string         `json:"route"`
	Target       string         `json:"target"`
	Topic        string         `json:"topic"`
	Edge         string         `json:"edge"`
	Title        string         `json:"title"`
	Body         string         `json:"body"`
	Priority     int            `json:"priority"`
	Payload      []byte         `json:"payload"`
	Fields       map[string]any `json:"fields,omitempty"`
	Time         time.Time      `json:"time"`
	FailoverFrom string         `json:"failover_from,omitempty"`
	// First says the event was on its first delivery to the notifier when
	// this record was queued, and stored after this hub process started.
	// A worker that then gets the record on its first delivery, stored
	// after the process started too, knows it was never sent (any earlier
	// copy would need an earlier delivery of the event or of the record)
	// and skips the idempotency lookup, a round trip per notification.
	// Every other case (a redelivered event or record, anything stored
	// before a restart, failover, silence and link alerts) looks the
	// record up before sending: the delivery counts of a killed server
	// can lag what it delivered (see Engine.eventFloor).
	First bool `json:"first,omitempty"`
}

// maxRecord keeps outbox messages under the default 1 MiB NATS payload.
const maxRecord = 900 << 10

func encodeRecord(r *outboxRecord) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b) > maxRecord && r.Fields != nil {
		// Fields repeat the payload's keys; drop them first.
		c := *r
		c.Fields = nil
		b, err = json.Marshal(&c)
		if err != nil {
			return nil, err
		}
	}
	if len(b) > maxRecord {
		return nil, fmt.Errorf("notification %s is %d bytes, more than the outbox takes (%d)", r.ID, len(b), maxRecord)
	}
	return b, nil
}

func decodeRecord(b []byte) (*outboxRecord, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var r outboxRecord
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if r.ID == "" || r.Target == "" {
		return nil, errors.New("record without id or target")
	}
	return &r, nil
}

func (r *outboxRecord) message() *target.Message {
	fields := r.Fields
	if _, ok := fields[fieldPayload]; !ok && fields != nil {
		fields[fieldPayload] = string(r.Payload) // left out by recordOf
	}
	return &target.Message{ID: r.ID, Topic: r.Topic, Edge: r.Edge, Title: r.Title, Body: r.Body, Priority: r.Priority, Payload: r.Payload, Fields: fields, Time: r.Time}
}

// recordOf is the outbox record of p. Fields["payload"] is the payload
// again, as text; it is left out (message puts it back) unless a JSON key
// of the payload named "payload" took its place, so a record carries the
// payload once, not twice, and a large one stays under maxRecord.
func recordOf(p planned) *outboxRecord {
	m := p.msg
	fields := m.Fields
	if v, ok := fields[fieldPayload].(string); ok && v == string(m.Payload) {
		fields = maps.Clone(fields)
		delete(fields, fieldPayload)
	}
	return &outboxRecord{ID: m.ID, EventID: p.eventID, Route: p.route, Target: p.target, Topic: m.Topic, Edge: m.Edge, Title: m.Title, Body: m.Body, Priority: m.Priority, Payload: m.Payload, Fields: fields, Time: m.Time, First: p.first}
}

func (e *Engine) outboxMsg(p planned) (*nats.Msg, error) {
	b, err := encodeRecord(recordOf(p))
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(e.delivery.OutboxPrefix + "." + p.target)
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, p.msg.ID)
	m.Header.Set(hdrNotifyTarget, p.target)
	return m, nil
}

// enqueueSync writes one notification to the outbox and waits for the
// PubAck.
func (e *Engine) enqueueSync(ctx context.Context, p planned) error {
	m, err := e.outboxMsg(p)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(pctx, m); err != nil {
		return err
	}
	e.met.queued.WithLabelValues(p.target).Inc()
	return nil
}

// parseEvent reads a hub stream message. The subject is authoritative for
// the edge and the topic (an edge can only publish under its own id); the
// headers fill in what the subject cannot say.
func parseEvent(msg jetstream.Msg, floor uint64) (*Event, error) {
	h := msg.Headers()
	edge, topic, received, err := event.HubOrigin(msg.Subject(), h)
	if err != nil {
		// Not under hub.ev. (a stream configured otherwise): the headers.
		edge, topic = h.Get(event.HdrEdge), h.Get(event.HdrTopic)
		if topic == "" {
			return nil, fmt.Errorf("subject %q: not hub.ev.<edge>.<subject> and no %s header", msg.Subject(), event.HdrTopic)
		}
		if r := h.Get(event.HdrReceived); r != "" {
			received, _ = time.Parse(time.RFC3339Nano, r)
		}
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	id := h.Get(event.HdrMsgID)
	if id == "" {
		id = "hub:" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	if received.IsZero() {
		received = meta.Timestamp
	}
	ev := NewEvent(id, topic, edge, h.Get(event.HdrSource), msg.Data(), received)
	ev.redelivered = meta.NumDelivered > 1 || meta.Sequence.Stream <= floor
	ev.fromStream = true
	return ev, nil
}

// pendingEvent is an event whose notifications are being written to the
// outbox; it is acked when all are stored.
type pendingEvent struct {
	msg     jetstream.Msg
	futures []pendingPub
	failed  bool
}

type pendingPub struct {
	f      jetstream.PubAckFuture
	target string
}

// flushEvery bounds the outbox publishes in flight before the consumer
// waits for their PubAcks and acks the events.
const flushEvery = 1024

// consume is the event loop: pull events, route and render them, write
// their notifications to the outbox, and ack each event once all of its
// notifications are stored.
func (e *Engine) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(e.delivery.Batch))
	if err != nil {
		return fmt.Errorf("notify: consume %s: %w", e.delivery.Stream, err)
	}
	ch := make(chan jetstream.Msg, e.delivery.Batch)
	go func() {
		defer close(ch)
		for {
			m, err := it.Next()
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				e.log.Warn("event consumer", "err", err)
				if waitUntil(ctx, time.Now().Add(time.Second), 0, nil) != nil {
					return
				}
				continue
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer it.Stop()

	var pending []*pendingEvent
	npub := 0
	flush := func() {
		e.flushEvents(pending)
		pending, npub = pending[:0], 0
	}
	for {
		var m jetstream.Msg
		var ok bool
		select {
		case m, ok = <-ch:
		default:
			flush()
			select {
			case m, ok = <-ch:
			case <-ctx.Done():
				it.Stop()
				return ctx.Err()
			}
		}
		if !ok {
			flush()
			return ctx.Err()
		}
		pe := e.handleEvent(ctx, m)
		pending = append(pending, pe)
		npub += len(pe.futures)
		if npub >= flushEvery || len(pending) >= e.delivery.Batch {
			flush()
		}
	}
}

// handleEvent plans one event and starts writing its notifications.
func (e *Engine) handleEvent(ctx context.Context, m jetstream.Msg) *pendingEvent {
	pe := &pendingEvent{msg: m}
	ev, err := parseEvent(m, e.eventFloor.Load())
	if err != nil {
		e.met.events.WithLabelValues("invalid").Inc()
		e.log.Warn("dropping malformed event", "subject", m.Subject(), "err", err)
		_ = m.Term()
		pe.msg = nil
		return pe
	}
	now := time.Now()
	rt := e.cur.Load()
	plans := rt.c.plan(ev, planOpts{now: now, dedup: e.dedup, met: e.met})
	for _, a := range e.watch.observe(rt.c, ev, now) {
		e.met.synthetic.WithLabelValues(string(a.kind)).Inc()
		e.log.Info("alert", "kind", a.kind, "watch", a.rule, "edge", a.edge, "duration", humanDuration(a.duration))
		plans = append(plans, rt.c.planAlert(a, planOpts{now: now, met: e.met})...)
	}
	if len(plans) == 0 {
		e.met.events.WithLabelValues("unrouted").Inc()
		return pe
	}
	e.met.events.WithLabelValues("routed").Inc()
	for _, p := range plans {
		om, err := e.outboxMsg(p)
		if err != nil {
			// Cannot be stored at all: count it, do not block the stream.
			e.log.Error("cannot queue notification", "id", p.msg.ID, "err", err)
			e.met.deadlettered.WithLabelValues(p.target).Inc()
			continue
		}
		f, err := e.js.PublishMsgAsync(om)
		if err != nil {
			pe.failed = true
			e.log.Warn("outbox publish", "target", p.target, "err", err)
			continue
		}
		pe.futures = append(pe.futures, pendingPub{f: f, target: p.target})
	}
	return pe
}

// pubTimeout bounds the wait for outbox PubAcks.
const pubTimeout = 10 * time.Second

// flushEvents waits for the outbox writes of the pending events and acks
// each event whose writes all succeeded; the others are redelivered later
// (the outbox drops the copies it already has by Msg-Id).
func (e *Engine) flushEvents(pending []*pendingEvent) {
	if len(pending) == 0 {
		return
	}
	timer := time.NewTimer(pubTimeout)
	defer timer.Stop()
	expired := false
	for _, pe := range pending {
		if pe.msg == nil {
			continue
		}
		for _, p := range pe.futures {
			if expired {
				pe.failed = true
				break
			}
			select {
			case <-p.f.Ok():
				e.met.queued.WithLabelValues(p.target).Inc()
			case err := <-p.f.Err():
				pe.failed = true
				e.log.Warn("outbox publish", "target", p.target, "err", err)
			case <-timer.C:
				expired = true
				pe.failed = true
			}
		}
		if pe.failed {
			_ = pe.msg.NakWithDelay(time.Second)
			continue
		}
		if err := pe.msg.Ack(); err != nil {
			e.log.Warn("event ack", "err", err)
		}
	}
}
