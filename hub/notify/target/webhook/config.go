package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Config configures a webhook target.
type Config struct {
	// URL is the endpoint, http or https. Required. Credentials in it
	// (userinfo, query tokens) are redacted from errors.
	URL string `mapstructure:"url"`
	// Method is the HTTP method: POST (default), PUT, PATCH, GET or
	// DELETE. GET and DELETE send no body: put what the receiver needs in
	// Query.
	Method string `mapstructure:"method"`
	// Query adds URL query parameters, each value a Go template over the
	// message (e.g. {msg: "{{.Body}}", user: "{{index .Fields \"user\"}}"}),
	// to the parameters the URL already has.
	Query map[string]string `mapstructure:"query"`
	// Headers are extra request headers.
	Headers map[string]string `mapstructure:"headers"`
	// HeaderFiles are extra request headers whose value is read from a
	// file (a secret such as an API key); values are redacted from errors.
	HeaderFiles map[string]string `mapstructure:"header_files"`
	// Body is a Go template over the message rendering the request body.
	// Empty (the default) sends the message as JSON: id, topic, edge,
	// title, message, priority, payload, fields, time.
	Body string `mapstructure:"body"`
	// ContentType is the Content-Type header. Default: application/json
	// for the JSON body, text/plain; charset=utf-8 for a template body.
	ContentType string `mapstructure:"content_type"`
	// BearerToken is sent as "Authorization: Bearer <token>". Prefer
	// BearerTokenFile.
	BearerToken string `mapstructure:"bearer_token"`
	// BearerTokenFile holds the bearer token.
	BearerTokenFile string `mapstructure:"bearer_token_file"`
	// Username enables HTTP basic auth with Password or PasswordFile.
	Username string `mapstructure:"username"`
	// Password is the basic-auth password. Prefer PasswordFile.
	Password string `mapstructure:"password"`
	// PasswordFile holds the basic-auth password.
	PasswordFile string `mapstructure:"password_file"`
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// DefaultConfig returns method POST, JSON body, 10s timeout.
func DefaultConfig() Config {
	return Config{Method: http.MethodPost, Timeout: 10 * time.Second}
}

// Validate checks c; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	if err := validateURL("url", c.URL); err != nil {
		errs = append(errs, err)
	}
	switch c.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	case http.MethodGet, http.MethodDelete:
		if c.Body != "" || c.ContentType != "" {
			errs = append(errs, fmt.Errorf("body: a %s request sends no body; put the fields in query", c.Method))
		}
	default:
		errs = append(errs, fmt.Errorf("method: %q is not one of POST, PUT, PATCH, GET, DELETE", c.Method))
	}
	for k, v := range c.Query {
		if k == "" {
			errs = append(errs, errors.New("query: empty parameter name"))
		} else if _, err := target.ParseTemplate("query."+k, v); err != nil {
			errs = append(errs, err)
		}
	}
	for k, v := range c.Headers {
		if err := validHeader(k, v); err != nil {
			errs = append(errs, fmt.Errorf("headers.%s: %w", k, err))
		}
	}
	for k, v := range c.HeaderFiles {
		if err := validHeader(k, "x"); err != nil {
			errs = append(errs, fmt.Errorf("header_files.%s: %w", k, err))
		} else if v == "" {
			errs = append(errs, fmt.Errorf("header_files.%s: empty file path", k))
		}
	}
	if c.Body != "" {
		if _, err := target.ParseTemplate("body", c.Body); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BearerToken != "" && c.BearerTokenFile != "" {
		errs = append(errs, errors.New("bearer_token and bearer_token_file: set only one"))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("password and password_file: set only one"))
	}
	if (c.Password != "" || c.PasswordFile != "") && c.Username == "" {
		errs = append(errs, errors.New("username: missing; a password needs a username"))
	}
	if c.Username != "" && (c.BearerToken != "" || c.BearerTokenFile != "") {
		errs = append(errs, errors.New("username: basic auth and a bearer token both set; choose one"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout: %s must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

// validateURL checks an http(s) URL; its error never repeats the URL,
// which may hold credentials.
func validateURL(key, raw string) error {
	if raw == "" {
		return fmt.Errorf("%s: missing", key)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: not a valid URL", key)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https", key)
	}
	if u.Host == "" {
		return fmt.Errorf("%s: missing host", key)
	}
	return nil
}

func validHeader(name, value string) error {
	if name == "" || strings.ContainsAny(name, " :\t\r\n") {
		return errors.New("invalid header name")
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return errors.New("header value contains a line break or NUL")
	}
	return nil
}
