package gotify

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

const appToken = "AbCdEf.123456"

// fakeGotify speaks Gotify's POST /message: JSON in, the app token in
// X-Gotify-Key, the stored message (or a Gotify error body) out.
type fakeGotify struct {
	*httptest.Server
	mu      sync.Mutex
	got     []map[string]any
	ctype   string
	failure int
	header  http.Header
}

func newFake(t *testing.T) *fakeGotify {
	f := &fakeGotify{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		writeErr := func(code int, name, desc string) {
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]any{"error": name, "errorCode": code, "errorDescription": desc})
		}
		f.mu.Lock()
		failure, header := f.failure, f.header
		f.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		switch {
		case failure != 0:
			writeErr(failure, http.StatusText(failure), "server trouble")
			return
		case r.Method != http.MethodPost || r.URL.Path != "/message":
			writeErr(404, "Not Found", "no route")
			return
		case r.Header.Get("X-Gotify-Key") != appToken:
			writeErr(401, "Unauthorized", "you need to provide a valid access token or user credentials to access this api")
			return
		}
		var body map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			writeErr(400, "Bad Request", "invalid json")
			return
		}
		if msg, _ := body["message"].(string); msg == "" {
			writeErr(400, "Bad Request", "Field 'message' is required")
			return
		}
		f.mu.Lock()
		f.got = append(f.got, body)
		f.ctype = r.Header.Get("Content-Type")
		id := len(f.got)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"id": id, "appid": 1, "message": body["message"], "priority": body["priority"]})
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGotify) messages() ([]map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.got...), f.ctype
}

func (f *fakeGotify) fail(status int, h http.Header) {
	f.mu.Lock()
	f.failure, f.header = status, h
	f.mu.Unlock()
}

func writeToken(t *testing.T, tok string) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPost(t *testing.T) {
	srv := newFake(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL + "/"
	cfg.TokenFile = writeToken(t, appToken)
	n, err := New(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	for p := -2; p <= 2; p++ {
		if retry, err := n.Notify(context.Background(), &target.Message{Title: "login", Body: "jo on vm", Priority: p}); err != nil {
			t.Fatalf("retry=%v err=%v", retry, err)
		}
	}
	var want []map[string]any
	for _, p := range []float64{0, 2, 5, 8, 10} {
		want = append(want, map[string]any{"title": "login", "message": "jo on vm", "priority": p})
	}
	got, ctype := srv.messages()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	if ctype != "application/json" {
		t.Errorf("content type %q", ctype)
	}
}

func TestExtras(t *testing.T) {
	srv := newFake(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Token = appToken
	cfg.Markdown = true
	cfg.Click = "https://example.com/x"
	cfg.Priorities = []int{1, 1, 1, 1, 7}
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), &target.Message{Body: "**hi**", Priority: 2}); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"message": "**hi**", "priority": 7.0,
		"extras": map[string]any{
			"client::display":      map[string]any{"contentType": "text/markdown"},
			"client::notification": map[string]any{"click": map[string]any{"url": "https://example.com/x"}},
		},
	}
	got, _ := srv.messages()
	if d := cmp.Diff(want, got[0]); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestFailures(t *testing.T) {
	srv := newFake(t)
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Token = "wrong-token-value"
	n, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	retry, err := n.Notify(context.Background(), &target.Message{Body: "x"})
	if err == nil || retry || !strings.Contains(err.Error(), "valid access token") {
		t.Fatalf("401: retry=%v err=%v", retry, err)
	}
	if strings.Contains(err.Error(), "wrong-token-value") {
		t.Errorf("token in error: %v", err)
	}
	for _, tt := range []struct {
		status    int
		header    http.Header
		wantRetry bool
		wantAfter time.Duration
	}{
		{500, nil, true, 0},
		{503, http.Header{"Retry-After": {"4"}}, true, 4 * time.Second},
		{400, nil, false, 0},
	} {
		srv.fail(tt.status, tt.header)
		retry, err := n.Notify(context.Background(), &target.Message{Body: "x"})
		if err == nil || retry != tt.wantRetry {
			t.Errorf("%d: retry=%v err=%v", tt.status, retry, err)
		}
		if d, ok := target.RetryAfter(err); ok != (tt.wantAfter > 0) || d != tt.wantAfter {
			t.Errorf("%d: RetryAfter %v %v", tt.status, d, ok)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url"},
		{"no token", func(c *Config) { c.Token = "" }, "token_file"},
		{"two tokens", func(c *Config) { c.TokenFile = "x" }, "token"},
		{"priorities len", func(c *Config) { c.Priorities = []int{1} }, "priorities"},
		{"priority range", func(c *Config) { c.Priorities = []int{0, 0, 0, 0, 11} }, "priorities[4]"},
		{"click", func(c *Config) { c.Click = "x" }, "click"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.URL = "https://gotify.example.com"
			c.Token = "t"
			tt.mut(&c)
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
}
