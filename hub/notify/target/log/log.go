// Package log is the notifier target that writes each notification as one
// structured log/slog record: the simplest way to see notifications, and
// the target of the out-of-the-box configuration.
package log

import (
	"context"
	"errors"
	"log/slog"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Notifier logs notifications. It never fails and never retries.
type Notifier struct {
	cfg    Config
	level  slog.Level
	logger *slog.Logger
}

// New returns a log target that writes to logger.
func New(cfg Config, logger *slog.Logger) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		return nil, errors.New("log target: nil logger")
	}
	level, _ := parseLevel(cfg.Level)
	return &Notifier{cfg: cfg, level: level, logger: logger}, nil
}

// Notify writes one record with the attributes id, topic, edge, title,
// body, priority (and payload when configured).
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String("id", m.ID),
		slog.String("topic", m.Topic),
		slog.String("edge", m.Edge),
		slog.String("title", m.Title),
		slog.String("body", m.Body),
		slog.Int("priority", m.Priority),
	)
	if n.cfg.Payload {
		attrs = append(attrs, slog.String("payload", string(m.Payload)))
	}
	n.logger.LogAttrs(ctx, n.level, n.cfg.Message, attrs...)
	return false, nil
}

var _ target.Notifier = (*Notifier)(nil)
