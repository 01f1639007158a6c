package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/hub/notify/target"
)

type request struct {
	Method string
	Path   string
	Header http.Header
	Body   string
}

// recorder is an httptest server that records requests and answers with
// the status (and headers) the test sets.
type recorder struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []request
	status int
	header http.Header
	answer string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{status: http.StatusOK}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, request{Method: req.Method, Path: req.URL.RequestURI(), Header: req.Header.Clone(), Body: string(b)})
		status, header, answer := r.status, r.header, r.answer
		r.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) last(t *testing.T) request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request received")
	}
	return r.reqs[len(r.reqs)-1]
}

func (r *recorder) set(status int, header http.Header, answer string) {
	r.mu.Lock()
	r.status, r.header, r.answer = status, header, answer
	r.mu.Unlock()
}

func msg() *target.Message {
	return &target.Message{
		ID: "ev1/route/hook", Topic: "logging/hare", Edge: "site1", Title: "login", Body: "jo logged in",
		Priority: 1, Payload: []byte(`{"user":"jo"}`), Fields: map[string]any{"user": "jo"},
		Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func TestJSONBody(t *testing.T) {
	srv := newRecorder(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL + "/hook"
	cfg.Headers = map[string]string{"X-Extra": "1"}
	n, err := New(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	got := srv.last(t)
	if got.Method != "POST" || got.Path != "/hook" {
		t.Errorf("%s %s", got.Method, got.Path)
	}
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Idempotency-Key": "ev1/route/hook", "X-Extra": "1", "User-Agent": "warren-notify",
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(got.Body), &body); err != nil {
		t.Fatalf("%v: %q", err, got.Body)
	}
	want := map[string]any{
		"id": "ev1/route/hook", "topic": "logging/hare", "edge": "site1", "title": "login", "message": "jo logged in",
		"priority": 1.0, "payload": `{"user":"jo"}`, "fields": map[string]any{"user": "jo"}, "time": "2026-05-01T12:00:00Z",
	}
	if d := cmp.Diff(want, body); d != "" {
		t.Errorf("body (-want +got)\n%s", d)
	}
}

func TestTemplateBodyAndAuth(t *testing.T) {
	srv := newRecorder(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	key := filepath.Join(dir, "key")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	os.WriteFile(key, []byte("apikey-123\n"), 0o600)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Method = "PUT"
	cfg.Body = `{{.Edge}}: {{.Fields.user}} -> {{.Body}}`
	cfg.Username = "bob"
	cfg.PasswordFile = pw
	cfg.HeaderFiles = map[string]string{"x-api-key": key}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatal(err)
	}
	got := srv.last(t)
	if got.Method != "PUT" || got.Body != "site1: jo -> jo logged in" {
		t.Errorf("%s %q", got.Method, got.Body)
	}
	if ct := got.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	if got.Header.Get("X-Api-Key") != "apikey-123" {
		t.Errorf("header file: %q", got.Header.Get("X-Api-Key"))
	}
	req := &http.Request{Header: got.Header}
	if u, p, ok := req.BasicAuth(); !ok || u != "bob" || p != "hunter2" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
}

func TestBearer(t *testing.T) {
	srv := newRecorder(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.BearerToken = "tok"
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatal(err)
	}
	if a := srv.last(t).Header.Get("Authorization"); a != "Bearer tok" {
		t.Errorf("Authorization %q", a)
	}
}

func TestStatusClassification(t *testing.T) {
	const secret = "bearer-secret-42"
	srv := newRecorder(t)
	cfg := DefaultConfig()
	cfg.URL = strings.Replace(srv.URL, "http://", "http://user:urlpass@", 1) + "/h?token=querysecret"
	cfg.BearerToken = secret
	cfg.Username = ""
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		status    int
		header    http.Header
		wantRetry bool
		wantAfter time.Duration
	}{
		{500, nil, true, 0},
		{429, http.Header{"Retry-After": {"12"}}, true, 12 * time.Second},
		{503, http.Header{"Retry-After": {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}, true, 59 * time.Minute},
		{400, nil, false, 0},
		{401, nil, false, 0},
	}
	for _, tt := range tests {
		srv.set(tt.status, tt.header, "denied for "+secret+" querysecret urlpass")
		retry, err := n.Notify(context.Background(), msg())
		if err == nil || retry != tt.wantRetry {
			t.Errorf("%d: retry=%v err=%v", tt.status, retry, err)
			continue
		}
		for _, s := range []string{secret, "querysecret", "urlpass"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%d: error leaks %q: %v", tt.status, s, err)
			}
		}
		d, ok := target.RetryAfter(err)
		if tt.wantAfter > 0 && (!ok || d < tt.wantAfter || d > tt.wantAfter+2*time.Minute) {
			t.Errorf("%d: RetryAfter = %v, %v", tt.status, d, ok)
		}
		if tt.wantAfter == 0 && ok {
			t.Errorf("%d: unexpected RetryAfter %v", tt.status, d)
		}
	}
	// Unreachable: retryable, and the URL's secrets are redacted.
	srv.Close()
	retry, err := n.Notify(context.Background(), msg())
	if err == nil || !retry {
		t.Fatalf("closed: retry=%v err=%v", retry, err)
	}
	for _, s := range []string{secret, "querysecret", "urlpass"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("closed: error leaks %q: %v", s, err)
		}
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Timeout = 100 * time.Millisecond
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	retry, err := n.Notify(context.Background(), msg())
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
}

// TestGETWithQuery: a GET carries the message in templated query
// parameters, next to those already in the URL, and sends no body.
func TestGETWithQuery(t *testing.T) {
	r := newRecorder(t)
	c := DefaultConfig()
	c.URL = r.URL + "/notify?token=abc"
	c.Method = http.MethodGet
	c.Query = map[string]string{"msg": "{{.Body}}", "user": `{{index .Fields "user"}}`}
	n, err := New(c, r.Client())
	if err != nil {
		t.Fatal(err)
	}
	if retry, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatalf("Notify = %v (retry %v)", err, retry)
	}
	got := r.last(t)
	if got.Method != http.MethodGet || got.Path != "/notify?msg=jo+logged+in&token=abc&user=jo" || got.Body != "" {
		t.Errorf("request %s %s body %q", got.Method, got.Path, got.Body)
	}
	if ct := got.Header.Get("Content-Type"); ct != "" {
		t.Errorf("GET with Content-Type %q", ct)
	}
	if got.Header.Get("Idempotency-Key") != "ev1/route/hook" {
		t.Errorf("Idempotency-Key %q", got.Header.Get("Idempotency-Key"))
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url"},
		{"bad scheme", func(c *Config) { c.URL = "ftp://x" }, "url"},
		{"no host", func(c *Config) { c.URL = "http:///x" }, "url"},
		{"method", func(c *Config) { c.Method = "TRACE" }, "method"},
		{"GET with a body", func(c *Config) { c.Method = "GET"; c.Body = "{{.Body}}" }, "body"},
		{"query template", func(c *Config) { c.Query = map[string]string{"m": "{{"} }, "query.m"},
		{"header", func(c *Config) { c.Headers = map[string]string{"X": "a\nb"} }, "headers.X"},
		{"header file", func(c *Config) { c.HeaderFiles = map[string]string{"X": ""} }, "header_files.X"},
		{"body", func(c *Config) { c.Body = "{{" }, "body"},
		{"two tokens", func(c *Config) { c.BearerToken = "a"; c.BearerTokenFile = "b" }, "bearer_token"},
		{"password without user", func(c *Config) { c.Password = "a" }, "username"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.URL = "https://example.com/hook"
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
	c := DefaultConfig()
	c.URL = "https://user:pw@example.com/hook"
	c.BearerTokenFile = "/nonexistent/token"
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "bearer_token_file") {
		t.Errorf("missing token file: %v", err)
	}
	c.URL = "%zz://user:supersecret@"
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "supersecret") {
		t.Errorf("bad URL error leaks or is missing: %v", err)
	}
}
