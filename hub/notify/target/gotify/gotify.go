// Package gotify is the notifier target that posts to a Gotify server:
// POST /message with a JSON {title, message, priority, extras} body and the
// application token in the X-Gotify-Key header.
package gotify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Notifier posts notifications to Gotify. Safe for concurrent use.
type Notifier struct {
	cfg      Config
	client   *http.Client
	endpoint string
	token    string
	extras   map[string]any
	red      *target.Redactor
}

// New returns a Gotify target. client may be nil; the token file is read
// now.
func New(cfg Config, client *http.Client) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token, err := target.Secret("token", cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	n := &Notifier{
		cfg:      cfg,
		client:   client,
		endpoint: strings.TrimRight(cfg.URL, "/") + "/message",
		token:    token,
		red:      target.NewRedactor(append(target.URLSecrets(cfg.URL), token)...),
	}
	if cfg.Markdown || cfg.Click != "" {
		n.extras = map[string]any{}
		if cfg.Markdown {
			n.extras["client::display"] = map[string]any{"contentType": "text/markdown"}
		}
		if cfg.Click != "" {
			n.extras["client::notification"] = map[string]any{"click": map[string]any{"url": cfg.Click}}
		}
	}
	return n, nil
}

// message is Gotify's message model.
type message struct {
	Title    string         `json:"title,omitempty"`
	Message  string         `json:"message"`
	Priority int            `json:"priority"`
	Extras   map[string]any `json:"extras,omitempty"`
}

// gotifyError is Gotify's error body.
type gotifyError struct {
	Error       string `json:"error"`
	Description string `json:"errorDescription"`
}

// Priority maps the -2..2 scale through the configured table.
func (n *Notifier) Priority(p int) int {
	return n.cfg.Priorities[target.ClampPriority(p)+2]
}

// Notify posts m. Statuses are classified as in target.DoHTTP; Gotify's
// errorDescription is added to the error.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	body, err := json.Marshal(message{Title: m.Title, Message: m.Body, Priority: n.Priority(m.Priority), Extras: n.extras})
	if err != nil {
		return false, fmt.Errorf("gotify: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.endpoint, bytes.NewReader(body))
	if err != nil {
		return false, n.red.Error(fmt.Errorf("gotify: build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "warren-notify")
	req.Header.Set("X-Gotify-Key", n.token)
	resp, retry, err := target.DoHTTP(n.client, req, n.red)
	if err != nil {
		if resp != nil {
			var ge gotifyError
			if json.Unmarshal(resp.Body, &ge) == nil && ge.Description != "" {
				// Keep the classification (and any Retry-After) of err.
				return retry, fmt.Errorf("gotify: %s: %w", n.red.String(target.Snippet([]byte(ge.Description))), err)
			}
		}
		return retry, fmt.Errorf("gotify: %w", err)
	}
	return false, nil
}

var _ target.Notifier = (*Notifier)(nil)
