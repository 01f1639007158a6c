package dashboard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
)

// MessageFromHub reads a message of the HUB stream (subject
// hub.ev.<edge>.<subject>, warren headers) into a Message: edge and topic
// from the subject, as the notifier reads them (event.HubOrigin).
func MessageFromHub(subject string, h nats.Header, data []byte) (Message, error) {
	edge, topic, received, err := event.HubOrigin(subject, h)
	if err != nil {
		return Message{}, err
	}
	if e := h.Get(event.HdrEdge); e != "" && e != edge {
		return Message{}, fmt.Errorf("subject %q: edge header %q differs", subject, e)
	}
	return Message{Edge: edge, Topic: topic, Source: h.Get(event.HdrSource), Payload: data, Time: received}, nil
}

// FollowOptions tune Follow.
type FollowOptions struct {
	// Stream is the stream to read. Default event.HubStream.
	Stream string
	// Since is how far back to start, so the timeline survives a hub
	// restart. Default the aggregator's retention; 0 uses the default,
	// negative starts with new events only.
	Since time.Duration
}

// Follow reads the hub's stream with an ordered (ephemeral, unacknowledged)
// consumer and feeds every message to agg until ctx ends. It starts Since
// ago; the ordered consumer recreates itself after errors, so Follow
// returns only when ctx ends (nil) or the consumer cannot be made.
func Follow(ctx context.Context, js jetstream.JetStream, agg *Aggregator, o FollowOptions) error {
	if js == nil || agg == nil {
		return errors.New("dashboard: follow needs a JetStream context and an aggregator")
	}
	if o.Stream == "" {
		o.Stream = event.HubStream
	}
	if o.Since == 0 {
		o.Since = agg.cfg.Retention
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if o.Since > 0 {
		start := time.Now().Add(-o.Since)
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
	}
	cons, err := js.OrderedConsumer(ctx, o.Stream, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dashboard: consumer on %s: %w", o.Stream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		m, err := MessageFromHub(msg.Subject(), msg.Headers(), msg.Data())
		if err != nil {
			agg.mu.Lock()
			agg.bad++
			agg.mu.Unlock()
			return
		}
		agg.Observe(m)
	})
	if err != nil {
		return fmt.Errorf("dashboard: consume %s: %w", o.Stream, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
