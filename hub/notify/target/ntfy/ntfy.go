// Package ntfy is the notifier target that publishes to an ntfy server
// with its header API: the body is the message, Title, Priority (1..5),
// Tags, Click, Icon and Markdown ride in headers, auth is a bearer token
// or basic auth.
package ntfy

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Notifier publishes notifications to one ntfy topic. Safe for concurrent
// use.
type Notifier struct {
	cfg      Config
	client   *http.Client
	endpoint string
	auth     string
	red      *target.Redactor
}

// New returns an ntfy target. client may be nil; secrets are read now.
func New(cfg Config, client *http.Client) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	n := &Notifier{cfg: cfg, client: client, endpoint: strings.TrimRight(cfg.URL, "/") + "/" + cfg.Topic}
	secrets := target.URLSecrets(cfg.URL)
	if len(cfg.Topic) >= 4 {
		secrets = append(secrets, cfg.Topic)
	}
	token, terr := target.Secret("token", cfg.Token, cfg.TokenFile)
	password, perr := target.Secret("password", cfg.Password, cfg.PasswordFile)
	if err := errors.Join(terr, perr); err != nil {
		return nil, err
	}
	switch {
	case token != "":
		n.auth = "Bearer " + token
		secrets = append(secrets, token)
	case cfg.Username != "":
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(cfg.Username, password)
		n.auth = req.Header.Get("Authorization")
		secrets = append(secrets, password)
	}
	n.red = target.NewRedactor(secrets...)
	return n, nil
}

// Priority maps the -2..2 scale to ntfy's 1 (min) .. 5 (urgent).
func Priority(p int) int {
	return target.ClampPriority(p) + 3
}

// Notify publishes m. Statuses are classified as in target.DoHTTP.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.endpoint, strings.NewReader(m.Body))
	if err != nil {
		return false, n.red.Error(fmt.Errorf("ntfy: build request: %w", err))
	}
	h := req.Header
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("User-Agent", "warren-notify")
	if m.Title != "" {
		h.Set("Title", headerText(m.Title))
	}
	h.Set("Priority", strconv.Itoa(Priority(m.Priority)))
	if len(n.cfg.Tags) > 0 {
		h.Set("Tags", headerText(strings.Join(n.cfg.Tags, ",")))
	}
	if n.cfg.Click != "" {
		h.Set("Click", n.cfg.Click)
	}
	if n.cfg.Icon != "" {
		h.Set("Icon", n.cfg.Icon)
	}
	if n.cfg.Markdown {
		h.Set("Markdown", "yes")
	}
	if n.auth != "" {
		h.Set("Authorization", n.auth)
	}
	_, retry, err := target.DoHTTP(n.client, req, n.red)
	if err != nil {
		return retry, fmt.Errorf("ntfy: %w", err)
	}
	return false, nil
}

// headerText makes s safe for a header: line breaks become spaces and
// non-ASCII text is RFC 2047 encoded, which ntfy decodes.
func headerText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
	return mime.BEncoding.Encode("utf-8", s)
}

var _ target.Notifier = (*Notifier)(nil)
