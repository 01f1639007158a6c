// Package pushover is the notifier target for Pushover's message API: all
// five priorities, emergency priority 2 with retry/expire, TTL, sound,
// device, supplementary URL and HTML, and the API's JSON status and errors
// parsed into the error.
package pushover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Notifier sends notifications to Pushover. Safe for concurrent use.
type Notifier struct {
	cfg     Config
	client  *http.Client
	token   string
	userKey string
	red     *target.Redactor
}

// New returns a Pushover target. client may be nil; the token and user key
// files are read now.
func New(cfg Config, client *http.Client) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	token, terr := target.Secret("token", cfg.Token, cfg.TokenFile)
	userKey, uerr := target.Secret("user_key", cfg.UserKey, cfg.UserKeyFile)
	if err := errors.Join(terr, uerr); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	return &Notifier{
		cfg:     cfg,
		client:  client,
		token:   token,
		userKey: userKey,
		red:     target.NewRedactor(append(target.URLSecrets(cfg.APIURL), token, userKey)...),
	}, nil
}

// Form returns the form fields sent for m (without the secrets when
// redact is set, for dry runs).
func (n *Notifier) Form(m *target.Message, redact bool) url.Values {
	f := url.Values{}
	if redact {
		f.Set("token", target.Redacted)
		f.Set("user", target.Redacted)
	} else {
		f.Set("token", n.token)
		f.Set("user", n.userKey)
	}
	body := m.Body
	if strings.TrimSpace(body) == "" {
		// Pushover refuses an empty message; send what there is.
		body = string(m.Payload)
		if strings.TrimSpace(body) == "" {
			body = m.Topic
		}
		if strings.TrimSpace(body) == "" {
			body = "(empty)"
		}
	}
	f.Set("message", truncate(body, maxMessage))
	if m.Title != "" {
		f.Set("title", truncate(m.Title, maxTitle))
	}
	prio := target.ClampPriority(m.Priority)
	f.Set("priority", strconv.Itoa(prio))
	if prio == 2 {
		f.Set("retry", strconv.Itoa(int(n.cfg.Retry.Seconds())))
		f.Set("expire", strconv.Itoa(int(n.cfg.Expire.Seconds())))
	}
	if n.cfg.TTL > 0 {
		f.Set("ttl", strconv.Itoa(int(n.cfg.TTL.Seconds())))
	}
	if !m.Time.IsZero() {
		f.Set("timestamp", strconv.FormatInt(m.Time.Unix(), 10))
	}
	setIf(f, "sound", n.cfg.Sound)
	setIf(f, "device", n.cfg.Device)
	setIf(f, "url", n.cfg.URL)
	setIf(f, "url_title", n.cfg.URLTitle)
	if n.cfg.HTML {
		f.Set("html", "1")
	}
	if n.cfg.Monospace {
		f.Set("monospace", "1")
	}
	return f
}

// response is Pushover's JSON answer.
type response struct {
	Status  int      `json:"status"`
	Request string   `json:"request"`
	Receipt string   `json:"receipt"`
	Errors  []string `json:"errors"`
}

// Notify sends m. 2xx with status 1 is success; 429 and 5xx (and network
// failures) are retryable, 429 with its Retry-After; other 4xx and a 2xx
// with status != 1 are not. Pushover's error texts are in the error.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	form := n.Form(m, false).Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.APIURL, strings.NewReader(form))
	if err != nil {
		return false, n.red.Error(fmt.Errorf("pushover: build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "warren-notify")
	resp, retry, err := target.DoHTTP(n.client, req, n.red)
	if resp == nil {
		return retry, fmt.Errorf("pushover: %w", err)
	}
	var r response
	jerr := json.Unmarshal(resp.Body, &r)
	if err != nil {
		// Pushover answers 4xx with {"status":0,"errors":[...]}: those
		// texts say what to fix. Only 429 (and 5xx) are worth retrying.
		retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		if jerr == nil && len(r.Errors) > 0 {
			return retry, fmt.Errorf("pushover: %s: %w", n.errorText(r), err)
		}
		return retry, fmt.Errorf("pushover: %w", err)
	}
	if jerr != nil {
		// Accepted (2xx) but unreadable: do not resend, the message is
		// most likely out.
		return false, fmt.Errorf("pushover: unreadable response to an accepted request: %s", n.red.String(target.Snippet(resp.Body)))
	}
	if r.Status != 1 {
		return false, fmt.Errorf("pushover: status %d: %s", r.Status, n.errorText(r))
	}
	return false, nil
}

func (n *Notifier) errorText(r response) string {
	if len(r.Errors) == 0 {
		return "no error text"
	}
	return n.red.String(target.Snippet([]byte(strings.Join(r.Errors, "; "))))
}

func setIf(f url.Values, k, v string) {
	if v != "" {
		f.Set(k, v)
	}
}

// truncate cuts s to limit characters, marking the cut with an ellipsis.
func truncate(s string, limit int) string {
	r := []rune(s)
	if len(r) <= limit {
		return s
	}
	return string(r[:limit-1]) + "…"
}

var _ target.Notifier = (*Notifier)(nil)
