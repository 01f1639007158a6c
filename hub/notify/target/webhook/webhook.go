// Package webhook is the notifier target that sends each notification to
// an HTTP endpoint: the message as JSON or a Go-template body, extra
// headers, bearer or basic auth, and an Idempotency-Key header so a
// receiver can drop a retried duplicate.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Notifier posts notifications to a webhook. Safe for concurrent use.
type Notifier struct {
	cfg         Config
	client      *http.Client
	body        *target.Template
	noBody      bool // GET, DELETE
	query       map[string]*target.Template
	contentType string
	header      http.Header
	red         *target.Redactor
}

// New returns a webhook target. client may be nil (a default client is
// used); secrets in *_file keys are read now.
func New(cfg Config, client *http.Client) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		client = &http.Client{}
	}
	n := &Notifier{cfg: cfg, client: client, header: http.Header{}}
	secrets := target.URLSecrets(cfg.URL)
	for k, v := range cfg.Headers {
		n.header.Set(k, v)
	}
	var errs []error
	for k, file := range cfg.HeaderFiles {
		v, err := target.ReadSecretFile("header_files."+k, file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := validHeader(k, v); err != nil {
			errs = append(errs, fmt.Errorf("header_files.%s: %w", k, err))
			continue
		}
		n.header.Set(k, v)
		secrets = append(secrets, v)
	}
	token, err := target.Secret("bearer_token", cfg.BearerToken, cfg.BearerTokenFile)
	if err != nil {
		errs = append(errs, err)
	} else if token != "" {
		n.header.Set("Authorization", "Bearer "+token)
		secrets = append(secrets, token)
	}
	password, err := target.Secret("password", cfg.Password, cfg.PasswordFile)
	if err != nil {
		errs = append(errs, err)
	} else if cfg.Username != "" {
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(cfg.Username, password)
		n.header.Set("Authorization", req.Header.Get("Authorization"))
		secrets = append(secrets, password)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for k, v := range cfg.Query {
		if n.query == nil {
			n.query = map[string]*target.Template{}
		}
		if n.query[k], err = target.ParseTemplate("query."+k, v); err != nil {
			return nil, err
		}
	}
	n.contentType = cfg.ContentType
	if n.noBody = cfg.Method == http.MethodGet || cfg.Method == http.MethodDelete; n.noBody {
		n.header.Del("Content-Type")
		if n.header.Get("User-Agent") == "" {
			n.header.Set("User-Agent", "warren-notify")
		}
		n.red = target.NewRedactor(secrets...)
		return n, nil
	}
	if cfg.Body != "" {
		n.body, err = target.ParseTemplate("body", cfg.Body)
		if err != nil {
			return nil, err
		}
		if n.contentType == "" {
			n.contentType = "text/plain; charset=utf-8"
		}
	} else if n.contentType == "" {
		n.contentType = "application/json"
	}
	n.header.Set("Content-Type", n.contentType)
	if n.header.Get("User-Agent") == "" {
		n.header.Set("User-Agent", "warren-notify")
	}
	n.red = target.NewRedactor(secrets...)
	return n, nil
}

// Notify sends one request. 2xx is success; 408, 425, 429 and 5xx and
// network failures are retryable (429/503 with Retry-After as a
// target.RetryAfterError); other statuses are not.
func (n *Notifier) Notify(ctx context.Context, m *target.Message) (bool, error) {
	var body []byte
	switch {
	case n.noBody:
	case n.body != nil:
		s, err := n.body.Execute(m)
		if err != nil {
			return false, err
		}
		body = []byte(s)
	default:
		b, err := target.MarshalMessage(m)
		if err != nil {
			return false, err
		}
		body = b
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if !n.noBody {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, n.cfg.Method, n.cfg.URL, rd)
	if err != nil {
		return false, n.red.Error(fmt.Errorf("build request: %w", err))
	}
	if len(n.query) > 0 {
		q := req.URL.Query()
		for k, t := range n.query {
			v, err := t.Execute(m)
			if err != nil {
				return false, err
			}
			q.Set(k, v)
		}
		req.URL.RawQuery = q.Encode()
	}
	for k, v := range n.header {
		req.Header[k] = v
	}
	if m.ID != "" {
		req.Header.Set("Idempotency-Key", m.ID)
	}
	_, retry, err := target.DoHTTP(n.client, req, n.red)
	if err != nil {
		return retry, fmt.Errorf("webhook: %w", err)
	}
	return false, nil
}

var _ target.Notifier = (*Notifier)(nil)
