package pushover

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
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

const (
	appToken = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
	userKey  = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
)

// fakePushover validates requests the way Pushover's messages API does:
// form-encoded POST, known token and user, a message, priority -2..2, and
// for priority 2 retry >= 30 and expire <= 10800. It answers with
// Pushover's JSON (status, request, receipt or errors).
type fakePushover struct {
	*httptest.Server
	mu       sync.Mutex
	got      []url.Values
	failure  int
	header   http.Header
	override string
}

func newFake(t *testing.T) *fakePushover {
	f := &fakePushover{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		reply := func(code int, v map[string]any) {
			v["request"] = "5042853c-402d-4a18-abcb-168734a801de"
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(v)
		}
		f.mu.Lock()
		failure, header, override := f.failure, f.header, f.override
		f.mu.Unlock()
		for k, v := range header {
			w.Header()[k] = v
		}
		if override != "" {
			w.WriteHeader(200)
			w.Write([]byte(override))
			return
		}
		if failure != 0 {
			reply(failure, map[string]any{"status": 0, "errors": []string{"temporary trouble"}})
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			reply(400, map[string]any{"status": 0, "errors": []string{"bad request"}})
			return
		}
		if err := r.ParseForm(); err != nil {
			reply(400, map[string]any{"status": 0, "errors": []string{"bad form"}})
			return
		}
		form := r.PostForm
		var errs []string
		if form.Get("token") != appToken {
			reply(400, map[string]any{"status": 0, "token": "invalid", "errors": []string{"application token is invalid, see https://pushover.net/api"}})
			return
		}
		if form.Get("user") != userKey {
			errs = append(errs, "user identifier is not a valid user, group, or subscribed user key, see https://pushover.net/api#identifiers")
		}
		if form.Get("message") == "" {
			errs = append(errs, "message cannot be blank")
		}
		prio, err := strconv.Atoi(form.Get("priority"))
		if form.Get("priority") != "" && (err != nil || prio < -2 || prio > 2) {
			errs = append(errs, "priority is invalid")
		}
		if prio == 2 {
			retry, rerr := strconv.Atoi(form.Get("retry"))
			expire, eerr := strconv.Atoi(form.Get("expire"))
			if rerr != nil {
				errs = append(errs, "retry must be supplied with priority=2")
			} else if retry < 30 {
				errs = append(errs, "retry is too small")
			}
			if eerr != nil {
				errs = append(errs, "expire must be supplied with priority=2")
			} else if expire > 10800 {
				errs = append(errs, "expire is too large")
			}
		}
		if len(errs) > 0 {
			reply(400, map[string]any{"status": 0, "errors": errs})
			return
		}
		f.mu.Lock()
		f.got = append(f.got, form)
		f.mu.Unlock()
		out := map[string]any{"status": 1}
		if prio == 2 {
			out["receipt"] = "rLqVuqTRh62UzxtmqiaLzQmVcPgiCy"
		}
		reply(200, out)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakePushover) forms() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.got...)
}

func (f *fakePushover) set(status int, h http.Header, override string) {
	f.mu.Lock()
	f.failure, f.header, f.override = status, h, override
	f.mu.Unlock()
}

func secretFile(t *testing.T, name, v string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newNotifier(t *testing.T, srv *fakePushover, mut func(*Config)) *Notifier {
	t.Helper()
	cfg := DefaultConfig()
	cfg.APIURL = srv.URL + "/1/messages.json"
	cfg.TokenFile = secretFile(t, "token", appToken)
	cfg.UserKeyFile = secretFile(t, "user", userKey)
	if mut != nil {
		mut(&cfg)
	}
	n, err := New(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var when = time.Unix(1795384588, 0)

func TestAllPriorities(t *testing.T) {
	srv := newFake(t)
	n := newNotifier(t, srv, func(c *Config) {
		c.Sound = "siren"
		c.Device = "phone,tablet"
		c.URL = "https://example.com/l/1"
		c.URLTitle = "details"
		c.HTML = true
		c.Retry = 45 * time.Second
		c.Expire = 2 * time.Hour
		c.TTL = time.Hour
	})
	for p := -2; p <= 2; p++ {
		m := &target.Message{Title: "Login on vm", Body: "<b>jo</b> from 198.51.100.7", Priority: p, Time: when}
		if retry, err := n.Notify(context.Background(), m); err != nil {
			t.Fatalf("priority %d: retry=%v err=%v", p, retry, err)
		}
	}
	got := srv.forms()
	if len(got) != 5 {
		t.Fatalf("%d messages accepted", len(got))
	}
	for i, form := range got {
		p := i - 2
		want := url.Values{
			"token": {appToken}, "user": {userKey}, "message": {"<b>jo</b> from 198.51.100.7"}, "title": {"Login on vm"},
			"priority": {strconv.Itoa(p)}, "timestamp": {"1795384588"}, "sound": {"siren"}, "device": {"phone,tablet"},
			"url": {"https://example.com/l/1"}, "url_title": {"details"}, "html": {"1"}, "ttl": {"3600"},
		}
		if p == 2 {
			want["retry"] = []string{"45"}
			want["expire"] = []string{"7200"}
		}
		if d := cmp.Diff(want, form); d != "" {
			t.Errorf("priority %d (-want +got)\n%s", p, d)
		}
	}
}

func TestEmergencyDefaults(t *testing.T) {
	srv := newFake(t)
	n := newNotifier(t, srv, nil)
	if _, err := n.Notify(context.Background(), &target.Message{Body: "power is off", Priority: 5}); err != nil {
		t.Fatal(err)
	}
	f := srv.forms()[0]
	if f.Get("priority") != "2" || f.Get("retry") != "60" || f.Get("expire") != "3600" {
		t.Errorf("emergency fields %v", f)
	}
	if f.Has("ttl") || f.Has("html") || f.Has("timestamp") || f.Has("title") {
		t.Errorf("unset options sent: %v", f)
	}
}

func TestMessageLimitsAndFallback(t *testing.T) {
	srv := newFake(t)
	n := newNotifier(t, srv, nil)
	long := strings.Repeat("é", 2000)
	if _, err := n.Notify(context.Background(), &target.Message{Title: long, Body: long}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), &target.Message{Body: " ", Payload: []byte(`{"u":1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), &target.Message{Topic: "power/site1"}); err != nil {
		t.Fatal(err)
	}
	got := srv.forms()
	if n := len([]rune(got[0].Get("message"))); n != 1024 {
		t.Errorf("message length %d", n)
	}
	if n := len([]rune(got[0].Get("title"))); n != 250 {
		t.Errorf("title length %d", n)
	}
	if got[1].Get("message") != `{"u":1}` || got[2].Get("message") != "power/site1" {
		t.Errorf("fallbacks: %q %q", got[1].Get("message"), got[2].Get("message"))
	}
}

func TestFailures(t *testing.T) {
	srv := newFake(t)
	n := newNotifier(t, srv, nil)
	tests := []struct {
		name      string
		status    int
		header    http.Header
		override  string
		wantRetry bool
		wantAfter time.Duration
		wantText  string
	}{
		{"server error", 500, nil, "", true, 0, "temporary trouble"},
		{"rate limited", 429, http.Header{"Retry-After": {"60"}}, "", true, time.Minute, "429"},
		{"bad request", 400, nil, "", false, 0, "temporary trouble"},
		{"request timeout is a 4xx", 408, nil, "", false, 0, "408"},
		{"status 0 in a 200", 0, nil, `{"status":0,"errors":["odd"]}`, false, 0, "odd"},
		{"garbage 200", 0, nil, `<html>`, false, 0, "unreadable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.set(tt.status, tt.header, tt.override)
			retry, err := n.Notify(context.Background(), &target.Message{Body: "x"})
			if err == nil || retry != tt.wantRetry || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("retry=%v err=%v", retry, err)
			}
			if d, ok := target.RetryAfter(err); ok != (tt.wantAfter > 0) || d != tt.wantAfter {
				t.Errorf("RetryAfter %v %v", d, ok)
			}
		})
	}
}

// TestSecretsNeverInErrors drives every failure path with the real token
// and user key and checks neither appears in the error.
func TestSecretsNeverInErrors(t *testing.T) {
	srv := newFake(t)
	// A server that echoes the request back in its error text.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]any{"status": 0, "errors": []string{"token " + r.PostForm.Get("token") + " for user " + r.PostForm.Get("user") + " refused; raw: " + r.PostForm.Encode()}})
	}))
	defer echo.Close()

	check := func(name string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", name)
			return
		}
		for _, s := range []string{appToken, userKey} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: secret in error: %v", name, err)
			}
		}
	}
	// Wrong user: the API names the problem, not the key.
	n := newNotifier(t, srv, func(c *Config) { c.UserKeyFile = ""; c.UserKey = "wrong" + userKey })
	_, err := n.Notify(context.Background(), &target.Message{Body: "x"})
	check("invalid user", err)
	if !strings.Contains(err.Error(), "user identifier") {
		t.Errorf("API error text missing: %v", err)
	}
	n = newNotifier(t, srv, func(c *Config) { c.APIURL = echo.URL + "/1/messages.json?token=" + appToken })
	_, err = n.Notify(context.Background(), &target.Message{Body: "x"})
	check("echoing server", err)
	echo.Close()
	_, err = n.Notify(context.Background(), &target.Message{Body: "x"})
	check("unreachable", err)

	// Form with redact hides both.
	f := n.Form(&target.Message{Body: "x"}, true).Encode()
	if strings.Contains(f, appToken) || strings.Contains(f, userKey) {
		t.Errorf("redacted form leaks: %s", f)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no token", func(c *Config) { c.Token = "" }, "token_file"},
		{"two tokens", func(c *Config) { c.TokenFile = "x" }, "token and token_file"},
		{"no user", func(c *Config) { c.UserKey = "" }, "user_key_file"},
		{"retry too small", func(c *Config) { c.Retry = 29 * time.Second }, "retry"},
		{"expire too big", func(c *Config) { c.Expire = 10801 * time.Second }, "expire"},
		{"expire zero", func(c *Config) { c.Expire = 0 }, "expire"},
		{"expire in nanoseconds", func(c *Config) { c.Expire = 3600 }, "expire"},
		{"negative ttl", func(c *Config) { c.TTL = -time.Second }, "ttl"},
		{"html and monospace", func(c *Config) { c.HTML = true; c.Monospace = true }, "monospace"},
		{"long url", func(c *Config) { c.URL = strings.Repeat("u", 513) }, "url"},
		{"long url title", func(c *Config) { c.URLTitle = strings.Repeat("u", 101) }, "url_title"},
		{"device spaces", func(c *Config) { c.Device = "a, b" }, "device"},
		{"api url", func(c *Config) { c.APIURL = "api.pushover.net" }, "api_url"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Token = "t"
			c.UserKey = "u"
			tt.mut(&c)
			if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
	c := DefaultConfig()
	c.Token = "t"
	c.UserKey = "u"
	c.Retry = 30 * time.Second
	c.Expire = 10800 * time.Second
	if err := c.Validate(); err != nil {
		t.Errorf("limits themselves are valid: %v", err)
	}
}
