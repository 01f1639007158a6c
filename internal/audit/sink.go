package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
)

// JetStreamSink stores events in a JetStream stream the way every warren
// event is stored: payload Encode(ev), MQTT topic ev.StoreTopic(), headers
// Warren-Edge, Warren-Source "audit", Warren-Topic and Warren-Received,
// and a synchronous publish that returns after the stream's PubAck. The
// hub uses it for its own audit events (Subject puts them in its HUB
// stream); the edge may use it or its own publisher.
type JetStreamSink struct {
	// JS publishes.
	JS jetstream.JetStream
	// Subject maps the event's NATS subject (event.TopicToSubject of its
	// topic) to the stored subject, e.g. "hub.ev.<hub-id>." + s.
	Subject func(subject string) string
	// Edge is the Warren-Edge header (the edge id, or the hub's id).
	Edge string
}

// Emit implements Sink.
func (s JetStreamSink) Emit(ctx context.Context, ev Event) error {
	if s.JS == nil || s.Subject == nil {
		return errors.New("audit: JetStreamSink needs JS and Subject")
	}
	payload, err := Encode(ev)
	if err != nil {
		return err
	}
	topic := ev.StoreTopic()
	subj, err := event.TopicToSubject(topic)
	if err != nil {
		return fmt.Errorf("audit: topic %q: %w", topic, err)
	}
	m := nats.NewMsg(s.Subject(subj))
	m.Data = payload
	m.Header.Set(event.HdrSource, event.SourceAudit)
	m.Header.Set(event.HdrTopic, topic)
	m.Header.Set(event.HdrReceived, time.Now().UTC().Format(time.RFC3339Nano))
	if s.Edge != "" {
		m.Header.Set(event.HdrEdge, s.Edge)
	}
	if _, err := s.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("audit: store %s: %w", topic, err)
	}
	return nil
}

var _ Sink = JetStreamSink{}
