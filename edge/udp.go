package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/wire"
)

// udpReadBuffer is the socket receive buffer asked for; the kernel may cap
// it (net.core.rmem_max). It absorbs bursts while the read loop is busy.
const udpReadBuffer = 8 << 20

func (e *Edge) startUDP() error {
	addr, err := net.ResolveUDPAddr("udp", e.cfg.UDP.Listen)
	if err != nil {
		return fmt.Errorf("udp.listen: %w", err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return fmt.Errorf("udp.listen: %w", err)
	}
	if err := conn.SetReadBuffer(udpReadBuffer); err != nil {
		e.log.Warn("udp receive buffer", "err", err)
	}
	subject, err := event.EdgeSubject(e.cfg.UDP.Topic)
	if err != nil {
		conn.Close()
		return fmt.Errorf("udp.topic: %w", err)
	}
	e.udp = conn
	go e.readUDP(conn, subject)
	return nil
}

// readUDP is the UDP shell around datagramCore: read, decode, queue.
func (e *Edge) readUDP(conn *net.UDPConn, subject string) {
	defer close(e.readDone)
	log := e.log.With("component", "udp")
	buf := make([]byte, e.cfg.UDP.MaxSize+1) // one more byte detects oversize
	topic := e.cfg.UDP.Topic
	overload := rateLog{every: 10 * time.Second}
	var lastExpire time.Time
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn("udp read", "err", err)
			select {
			case <-e.stopping:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		b := buf[:n]
		switch wire.KindOf(b) {
		case wire.KindV0:
			e.counters.datagrams[formatV0].Add(1)
		case wire.KindV1:
			e.counters.datagrams[formatV1].Add(1)
		default:
			e.counters.datagrams[formatUnknown].Add(1)
		}
		d, reason := e.core.decode(b, src.Addr(), now)
		if now.Sub(lastExpire) > time.Second {
			lastExpire = now
			e.core.replay.expire(now.UnixMilli())
			e.replaySize.Store(int64(e.core.replay.size))
		}
		if reason != "" {
			e.counters.reject(reason, 1)
			if reason == ReasonUnsigned {
				e.unsignedDatagram(src)
			}
			// A flood lands here: build the log line only when it is shown.
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("datagram rejected", "reason", reason, "remote", src.String(), "size", n)
			}
			continue
		}
		auth := "unsigned"
		if d.signed {
			auth = "signed:" + d.keyID
		}
		rec := record{
			subject: subject, payload: d.payload, source: event.SourceUDP,
			remote: src.String(), auth: auth, topic: topic, received: now,
			signed: d.signed, keyID: d.keyID, nonce: d.nonce, tsMillis: d.tsMillis,
			tstFixed: d.tstFixed, unsigned: !d.signed,
		}
		select {
		case e.queue <- rec:
		default:
			e.counters.reject(ReasonOverload, 1)
			if ok, suppressed := overload.allow(now); ok {
				log.Warn("ingest queue full: datagram dropped (raise ingest.queue_size or find the flood)",
					"remote", src.String(), "dropped_since_last_log", suppressed)
			}
		}
	}
}

// startMQTTIngest subscribes to the ingest filters on the subscriber
// connection and queues every message for the stream.
func (e *Edge) startMQTTIngest() error {
	seen := map[string]bool{}
	for _, f := range e.cfg.Ingest.Filters {
		subs, err := event.FilterToSubjects(f)
		if err != nil {
			return fmt.Errorf("ingest.filters: %w", err)
		}
		for _, s := range subs {
			if seen[s] {
				continue
			}
			seen[s] = true
			sub, err := e.ncSub.Subscribe(s, e.onMQTT)
			if err != nil {
				return fmt.Errorf("ingest.filters: subscribe %s: %w", s, err)
			}
			// Far above what the queue holds: drops here are counted.
			if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
				return fmt.Errorf("ingest.filters: %w", err)
			}
			e.subsMu.Lock()
			e.mqttSubs = append(e.mqttSubs, sub)
			e.subsMu.Unlock()
		}
	}
	log := e.log.With("component", "mqtt-ingest")
	dropped := rateLog{every: 10 * time.Second}
	e.ncSub.SetErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
			n, _ := sub.Dropped()
			if ok, _ := dropped.allow(time.Now()); ok {
				log.Error("mqtt ingest too slow: messages dropped", "subject", sub.Subject, "dropped_total", n)
			}
		}
	})
	if err := e.ncSub.Flush(); err != nil {
		return fmt.Errorf("mqtt ingest: %w", err)
	}
	return nil
}

// onMQTT queues one MQTT (or NATS) publish. It blocks while the queue is
// full: the subscription's pending buffer absorbs bursts.
func (e *Edge) onMQTT(m *nats.Msg) {
	rec := record{
		subject:  event.EdgeSubjectPrefix + m.Subject,
		payload:  m.Data,
		source:   event.SourceMQTT,
		auth:     "mqtt",
		topic:    event.SubjectToTopic(m.Subject),
		received: time.Now(),
	}
	select {
	case e.queue <- rec:
	case <-e.stopping:
		// Close waits for drained messages; the queue still takes them.
		select {
		case e.queue <- rec:
		case <-time.After(5 * time.Second):
			e.counters.reject(ReasonStoreError, 1)
		}
	}
}

// refreshMQTTDrops copies the subscriptions' slow-consumer drop counts into
// the mqtt_dropped counter (nats.go counts them; no callback per message).
func (e *Edge) refreshMQTTDrops() {
	e.subsMu.Lock()
	defer e.subsMu.Unlock()
	var total uint64
	for _, s := range e.mqttSubs {
		if n, err := s.Dropped(); err == nil && n > 0 {
			total += uint64(n)
		}
	}
	if total > e.mqttDropSeen {
		e.counters.reject(ReasonMQTTDropped, total-e.mqttDropSeen)
		e.mqttDropSeen = total
	}
}
