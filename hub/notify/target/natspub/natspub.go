// Package natspub is the notifier target that publishes notifications on
// the hub's own NATS connection: a core publish, or a JetStream publish
// that waits for the PubAck and carries the notification id as
// Nats-Msg-Id so retries are stored once.
package natspub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Headers set on every published message.
const (
	HeaderID       = "Warren-Notification-Id"
	HeaderTopic    = "Warren-Topic"
	HeaderEdge     = "Warren-Edge"
	HeaderTitle    = "Warren-Title"
	HeaderPriority = "Warren-Priority"
)

// ErrNotConnected is returned (retryable) while the connection is down.
var ErrNotConnected = errors.New("nats connection not connected")

// Notifier publishes notifications to NATS. Safe for concurrent use. It
// does not own the connection: the hub closes it.
type Notifier struct {
	cfg     Config
	subject *target.Template
	nc      *nats.Conn
	js      jetstream.JetStream
}

// New returns a NATS publish target on nc, the hub's connection.
func New(cfg Config, nc *nats.Conn) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("natspub target: nil nats connection")
	}
	tpl, err := target.ParseTemplate("subject", cfg.Subject)
	if err != nil {
		return nil, err
	}
	n := &Notifier{cfg: cfg, subject: tpl, nc: nc}
	if cfg.JetStream {
		if cfg.Domain != "" {
			n.js, err = jetstream.NewWithDomain(nc, cfg.Domain)
		} else {
			n.js, err = jetstream.New(nc)
		}
		if err != nil {
			return nil, fmt.Errorf("jetstream: %w", err)
		}
	}
	return n, nil
}

// Notify publishes m. A subject that cannot be rendered or is invalid, and
// a message over the server's max payload, are not retryable; a closed or
// reconnecting connection, a missing PubAck and JetStream errors are.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	subject, err := n.subject.Execute(m)
	if err != nil {
		return false, err
	}
	if err := checkSubject(subject); err != nil {
		return false, fmt.Errorf("subject %q: %w", subject, err)
	}
	data, err := target.Content(n.cfg.Content, m)
	if err != nil {
		return false, err
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(HeaderID, headerValue(m.ID))
	msg.Header.Set(HeaderTopic, headerValue(m.Topic))
	msg.Header.Set(HeaderEdge, headerValue(m.Edge))
	if m.Title != "" {
		msg.Header.Set(HeaderTitle, headerValue(m.Title))
	}
	msg.Header.Set(HeaderPriority, strconv.Itoa(m.Priority))
	if !n.nc.IsConnected() {
		// While reconnecting nats.go would buffer the publish and might
		// lose it; report instead so the engine retries.
		return true, fmt.Errorf("publish to %q: %w (status %s)", subject, ErrNotConnected, n.nc.Status())
	}
	if limit := n.nc.MaxPayload(); limit > 0 && int64(len(data)) > limit {
		return false, fmt.Errorf("publish to %q: %d bytes exceed the server's max payload %d", subject, len(data), limit)
	}
	if n.js == nil {
		if err := n.nc.PublishMsg(msg); err != nil {
			return classify(err), fmt.Errorf("publish to %q: %w", subject, err)
		}
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	opts := []jetstream.PublishOpt{}
	if m.ID != "" {
		opts = append(opts, jetstream.WithMsgID(m.ID))
	}
	if _, err := n.js.PublishMsg(ctx, msg, opts...); err != nil {
		return classify(err), fmt.Errorf("jetstream publish to %q: %w", subject, err)
	}
	return false, nil
}

func classify(err error) bool {
	switch {
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrHeadersNotSupported):
		return false
	}
	return true
}

// checkSubject refuses subjects that cannot or must not be published to.
func checkSubject(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case strings.HasPrefix(s, "$"):
		return errors.New("starts with '$' (system and JetStream API subjects are off limits)")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return errors.New("contains whitespace or a control character")
	}
	for _, tok := range strings.Split(s, ".") {
		switch tok {
		case "":
			return errors.New("has an empty token")
		case "*", ">":
			return errors.New("has a wildcard token")
		}
	}
	return nil
}

// headerValue keeps a header value on one line.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

var _ target.Notifier = (*Notifier)(nil)
