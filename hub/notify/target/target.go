// Package target defines what the notifier hands to a delivery target and the
// helpers the target packages share: the Message and Notifier types, the
// Retry-After error, HTTP outcome classification, `*_file` secret loading,
// redaction of secrets in errors, and the Go templates used for paths,
// topics and bodies. It imports no other warren package.
package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one rendered notification for one target.
type Message struct {
	// ID is the idempotency id "<event-id>/<route>/<target>", stable across retries.
	ID string
	// Topic is the MQTT topic of the event.
	Topic string
	// Edge is the id of the edge that accepted the event.
	Edge string
	// Title is the rendered title (may be empty).
	Title string
	// Body is the rendered message.
	Body string
	// Priority is on the mqttwarn/Pushover scale -2..2, 0 is normal.
	Priority int
	// Payload is the original event payload, byte for byte.
	Payload []byte
	// Fields holds the decoded JSON payload plus the renderer's built-ins;
	// templated paths, topics and bodies read it as .Fields.key.
	Fields map[string]any
	// Time is when the event was received.
	Time time.Time
}

// Notifier delivers one message. A failure reports whether trying again
// later may succeed; errors never carry secrets.
type Notifier interface {
	Notify(ctx context.Context, m *Message) (retry bool, err error)
}

// RetryAfterError wraps an error with the delay the remote end asked for
// (HTTP 429/503 Retry-After). The engine waits at least After before the
// next attempt.
type RetryAfterError struct {
	// After is the requested delay.
	After time.Duration
	// Err is the failure itself.
	Err error
}

// Error implements error.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter reports the delay requested by a RetryAfterError anywhere in
// err's chain.
func RetryAfter(err error) (time.Duration, bool) {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After, true
	}
	return 0, false
}

// ClampPriority bounds p to the -2..2 scale.
func ClampPriority(p int) int {
	return min(max(p, -2), 2)
}

// Content modes: what a target sends for a message.
const (
	// ContentBody sends the rendered body.
	ContentBody = "body"
	// ContentPayload sends the original event payload.
	ContentPayload = "payload"
	// ContentJSON sends the JSON document of the message (see MarshalMessage).
	ContentJSON = "json"
)

// ValidateContent checks a content mode; key names the config key in the error.
func ValidateContent(key, mode string) error {
	switch mode {
	case ContentBody, ContentPayload, ContentJSON:
		return nil
	}
	return fmt.Errorf("%s: %q is not one of body, payload, json", key, mode)
}

// Content returns the bytes that mode selects for m.
func Content(mode string, m *Message) ([]byte, error) {
	switch mode {
	case ContentBody:
		return []byte(m.Body), nil
	case ContentPayload:
		return m.Payload, nil
	case ContentJSON:
		return MarshalMessage(m)
	}
	return nil, fmt.Errorf("unknown content mode %q", mode)
}

// messageJSON is the JSON shape of a message used by the webhook body and
// the "json" content mode.
type messageJSON struct {
	ID       string         `json:"id"`
	Topic    string         `json:"topic"`
	Edge     string         `json:"edge"`
	Title    string         `json:"title"`
	Message  string         `json:"message"`
	Priority int            `json:"priority"`
	Payload  string         `json:"payload"`
	Fields   map[string]any `json:"fields,omitempty"`
	Time     string         `json:"time"`
}

// MarshalMessage encodes m as a JSON object with the keys id, topic, edge,
// title, message, priority, payload (the raw payload as a string; invalid
// UTF-8 becomes U+FFFD), fields (omitted when empty) and time (RFC 3339
// nano, UTC).
func MarshalMessage(m *Message) ([]byte, error) {
	payload := string(m.Payload)
	if !utf8.ValidString(payload) {
		payload = strings.ToValidUTF8(payload, "\uFFFD")
	}
	b, err := json.Marshal(messageJSON{
		ID:       m.ID,
		Topic:    m.Topic,
		Edge:     m.Edge,
		Title:    m.Title,
		Message:  m.Body,
		Priority: m.Priority,
		Payload:  payload,
		Fields:   m.Fields,
		Time:     m.Time.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	return b, nil
}
