package ntfy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// published is what the fake server decoded from one publish request, as
// ntfy's header API defines it.
type published struct {
	Topic    string
	Message  string
	Title    string
	Priority int
	Tags     []string
	Click    string
	Icon     string
	Markdown bool
	Auth     string
}

// fakeNtfy speaks ntfy's publish API: POST /<topic>, message in the body,
// options in headers (RFC 2047 encoded words decoded), JSON answer.
type fakeNtfy struct {
	*httptest.Server
	mu      sync.Mutex
	got     []published
	failure int
	header  http.Header
}

func newFake(t *testing.T) *fakeNtfy {
	f := &fakeNtfy{}
	dec := new(mime.WordDecoder)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		failure, header := f.failure, f.header
		f.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		if failure != 0 {
			w.WriteHeader(failure)
			fmt.Fprintf(w, `{"code":%d0,"http":%d,"error":"failed"}`, failure, failure)
			return
		}
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			http.Error(w, `{"code":40001,"http":400,"error":"method"}`, 400)
			return
		}
		body, _ := io.ReadAll(r.Body)
		p := published{Topic: strings.TrimPrefix(r.URL.Path, "/"), Message: string(body), Auth: r.Header.Get("Authorization")}
		p.Title, _ = dec.DecodeHeader(r.Header.Get("Title"))
		p.Click = r.Header.Get("Click")
		p.Icon = r.Header.Get("Icon")
		p.Markdown = r.Header.Get("Markdown") == "yes"
		if tags, _ := dec.DecodeHeader(r.Header.Get("Tags")); tags != "" {
			p.Tags = strings.Split(tags, ",")
		}
		p.Priority = 3
		if v := r.Header.Get("Priority"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 5 {
				http.Error(w, `{"code":40007,"http":400,"error":"invalid priority"}`, 400)
				return
			}
			p.Priority = n
		}
		f.mu.Lock()
		f.got = append(f.got, p)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"id": "abc", "time": time.Now().Unix(), "event": "message", "topic": p.Topic, "message": p.Message})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeNtfy) published() []published {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]published(nil), f.got...)
}

func (f *fakeNtfy) fail(status int, h http.Header) {
	f.mu.Lock()
	f.failure, f.header = status, h
	f.mu.Unlock()
}

func TestPublish(t *testing.T) {
	srv := newFake(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("tk_secret123\n"), 0o600)
	cfg := DefaultConfig()
	cfg.URL = srv.URL + "/"
	cfg.Topic = "warren-alerts"
	cfg.Tags = []string{"warning", "lock"}
	cfg.Click = "https://example.com/login/1"
	cfg.Icon = "https://example.com/icon.png"
	cfg.Markdown = true
	cfg.TokenFile = tokenFile
	n, err := New(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	for p := -2; p <= 2; p++ {
		m := &target.Message{ID: "e", Title: "Login on vm: jö 🔑", Body: "jo from 198.51.100.7\nvia sshd", Priority: p}
		if retry, err := n.Notify(context.Background(), m); err != nil {
			t.Fatalf("priority %d: retry=%v err=%v", p, retry, err)
		}
	}
	got := srv.published()
	if len(got) != 5 {
		t.Fatalf("%d publishes", len(got))
	}
	for i, p := range got {
		want := published{
			Topic: "warren-alerts", Message: "jo from 198.51.100.7\nvia sshd", Title: "Login on vm: jö 🔑",
			Priority: i + 1, Tags: []string{"warning", "lock"}, Click: "https://example.com/login/1",
			Icon: "https://example.com/icon.png", Markdown: true, Auth: "Bearer tk_secret123",
		}
		if d := cmp.Diff(want, p); d != "" {
			t.Errorf("publish %d (-want +got)\n%s", i, d)
		}
	}
}

func TestBasicAuthAndMinimalHeaders(t *testing.T) {
	srv := newFake(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Topic = "t"
	cfg.Username = "bob"
	cfg.Password = "pw"
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), &target.Message{Body: "hi", Priority: 9}); err != nil {
		t.Fatal(err)
	}
	p := srv.published()[0]
	r := &http.Request{Header: http.Header{"Authorization": {p.Auth}}}
	if u, pw, ok := r.BasicAuth(); !ok || u != "bob" || pw != "pw" {
		t.Errorf("basic auth %q", p.Auth)
	}
	if p.Priority != 5 || p.Title != "" || p.Tags != nil || p.Markdown {
		t.Errorf("%+v", p)
	}
}

func TestFailures(t *testing.T) {
	srv := newFake(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Topic = "secret-topic-name"
	cfg.Token = "tk_verysecret"
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
		{429, http.Header{"Retry-After": {"30"}}, true, 30 * time.Second},
		{400, nil, false, 0},
		{403, nil, false, 0},
	}
	for _, tt := range tests {
		srv.fail(tt.status, tt.header)
		retry, err := n.Notify(context.Background(), &target.Message{Body: "x"})
		if err == nil || retry != tt.wantRetry {
			t.Errorf("%d: retry=%v err=%v", tt.status, retry, err)
			continue
		}
		if d, ok := target.RetryAfter(err); ok != (tt.wantAfter > 0) || d != tt.wantAfter {
			t.Errorf("%d: RetryAfter %v %v", tt.status, d, ok)
		}
	}
	srv.Close()
	retry, err := n.Notify(context.Background(), &target.Message{Body: "x"})
	if err == nil || !retry {
		t.Fatalf("closed: retry=%v err=%v", retry, err)
	}
	if strings.Contains(err.Error(), "secret-topic-name") || strings.Contains(err.Error(), "tk_verysecret") {
		t.Errorf("error leaks the topic or token: %v", err)
	}
}

func TestPriority(t *testing.T) {
	for in, want := range map[int]int{-5: 1, -2: 1, -1: 2, 0: 3, 1: 4, 2: 5, 3: 5} {
		if got := Priority(in); got != want {
			t.Errorf("Priority(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no topic", func(c *Config) { c.Topic = "" }, "topic"},
		{"bad topic", func(c *Config) { c.Topic = "a/b" }, "topic"},
		{"long topic", func(c *Config) { c.Topic = strings.Repeat("a", 65) }, "topic"},
		{"bad url", func(c *Config) { c.URL = "ntfy.sh" }, "url"},
		{"bad tag", func(c *Config) { c.Tags = []string{"a,b"} }, "tags[0]"},
		{"bad click", func(c *Config) { c.Click = "not a url" }, "click"},
		{"two tokens", func(c *Config) { c.Token = "a"; c.TokenFile = "b" }, "token"},
		{"password without user", func(c *Config) { c.PasswordFile = "b" }, "username"},
		{"timeout", func(c *Config) { c.Timeout = -1 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Topic = "alerts"
			tt.mut(&c)
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
	c := DefaultConfig()
	c.Topic = "alerts"
	c.TokenFile = "/nonexistent"
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "token_file") {
		t.Errorf("missing token file: %v", err)
	}
}
