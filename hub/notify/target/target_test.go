package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/warren-mesh/warren/internal/secretfile"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetryableStatus(t *testing.T) {
	for code, want := range map[int]bool{
		200: false, 204: false, 301: false, 400: false, 401: false, 403: false, 404: false,
		408: true, 413: false, 422: false, 425: true, 429: true, 500: true, 502: true, 503: true, 599: true,
	} {
		if got := RetryableStatus(code); got != want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"seconds", "120", 120 * time.Second, true},
		{"zero", "0", 0, true},
		{"spaces", " 5 ", 5 * time.Second, true},
		{"http date", "Fri, 01 May 2026 12:00:30 GMT", 30 * time.Second, true},
		{"date in the past", "Fri, 01 May 2026 11:00:00 GMT", 0, true},
		{"huge", "99999999999999", 7 * 24 * time.Hour, true},
		{"negative", "-5", 0, false},
		{"empty", "", 0, false},
		{"garbage", "soon", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestStatusError(t *testing.T) {
	now := time.Now()
	h := http.Header{"Retry-After": {"7"}}
	retry, err := StatusError(429, h, "slow down", now)
	if !retry || err == nil {
		t.Fatalf("429: retry=%v err=%v", retry, err)
	}
	if d, ok := RetryAfter(err); !ok || d != 7*time.Second {
		t.Errorf("429: RetryAfter = %v, %v", d, ok)
	}
	if !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "slow down") {
		t.Errorf("429: message %q", err)
	}
	retry, err = StatusError(400, h, "", now)
	if retry || err == nil {
		t.Fatalf("400: retry=%v err=%v", retry, err)
	}
	if _, ok := RetryAfter(err); ok {
		t.Error("400 must not carry a Retry-After")
	}
	retry, err = StatusError(503, nil, "", now)
	if !retry || err == nil {
		t.Fatalf("503: retry=%v err=%v", retry, err)
	}
	if retry, err := StatusError(202, h, "", now); retry || err != nil {
		t.Errorf("202: retry=%v err=%v", retry, err)
	}
}

func TestDoHTTP(t *testing.T) {
	const secret = "s3cr3t-token-value"
	var status int
	var header string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if header != "" {
			w.Header().Set("Retry-After", header)
		}
		w.WriteHeader(status)
		// A server that echoes the credential back in its error text.
		fmt.Fprintf(w, "bad token %s\n\x00", r.URL.Query().Get("token"))
	}))
	defer srv.Close()
	red := NewRedactor(secret)
	do := func() (*HTTPResponse, bool, error) {
		req, err := http.NewRequestWithContext(context.Background(), "GET", srv.URL+"/x?token="+secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		return DoHTTP(srv.Client(), req, red)
	}
	tests := []struct {
		status    int
		header    string
		wantRetry bool
		wantErr   bool
		wantAfter time.Duration
	}{
		{200, "", false, false, 0},
		{400, "", false, true, 0},
		{404, "", false, true, 0},
		{429, "3", true, true, 3 * time.Second},
		{500, "", true, true, 0},
		{503, "1", true, true, time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			status, header = tt.status, tt.header
			resp, retry, err := do()
			if resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("response %+v", resp)
			}
			if retry != tt.wantRetry || (err != nil) != tt.wantErr {
				t.Fatalf("retry=%v err=%v", retry, err)
			}
			if err == nil {
				return
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("secret leaked: %q", err)
			}
			if d, ok := RetryAfter(err); tt.wantAfter > 0 && (!ok || d != tt.wantAfter) {
				t.Errorf("RetryAfter = %v, %v", d, ok)
			}
		})
	}

	// A transport failure: the error carries the URL, which must be
	// redacted, and is retryable.
	srv.Close()
	resp, retry, err := do()
	if resp != nil || !retry || err == nil {
		t.Fatalf("closed server: resp=%v retry=%v err=%v", resp, retry, err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("secret leaked: %q", err)
	}
}

func TestDoHTTPBadCertificateNotRetryable(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	_, retry, err := DoHTTP(&http.Client{}, req, nil)
	if err == nil || retry {
		t.Fatalf("untrusted certificate: retry=%v err=%v", retry, err)
	}
}

func TestRedactorError(t *testing.T) {
	base := fmt.Errorf("post: %w", context.DeadlineExceeded)
	wrapped := &RetryAfterError{After: time.Second, Err: fmt.Errorf("token abc123 refused: %w", base)}
	err := NewRedactor("abc123").Error(wrapped)
	if strings.Contains(err.Error(), "abc123") {
		t.Errorf("leaked: %q", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("errors.Is lost")
	}
	if d, ok := RetryAfter(err); !ok || d != time.Second {
		t.Errorf("RetryAfter lost: %v %v", d, ok)
	}
	if NewRedactor().Error(nil) != nil {
		t.Error("nil error must stay nil")
	}
	var nilRed *Redactor
	if got := nilRed.String("x http://u:p@h/"); strings.Contains(got, "u:p") {
		t.Errorf("nil redactor kept userinfo: %q", got)
	}
}

func TestRedactString(t *testing.T) {
	red := NewRedactor("tok/en+1", "pw")
	tests := []struct{ in, want string }{
		{`Post "https://user:pass@example.com/a?token=xyz&b=1": EOF`, `Post "https://REDACTED@example.com/a?b=REDACTED&token=REDACTED": EOF`},
		{"value tok/en+1 and tok%2Fen%2B1", "value REDACTED and REDACTED"},
		{"mqtt://bob:pw@broker:1883 refused", "mqtt://REDACTED@broker:1883 refused"},
		{"no url here", "no url here"},
		{"odd ://thing", "odd ://thing"},
		{"http://h/p#frag", "http://h/p"},
	}
	for _, tt := range tests {
		if got := red.String(tt.in); got != tt.want {
			t.Errorf("String(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	got := RedactURL("https://u:p@h.example/path?k=v")
	if strings.Contains(got, "u:p") || strings.Contains(got, "=v") {
		t.Errorf("RedactURL = %q", got)
	}
	if got := RedactURL("http://[::1"); got != "<unparsable url>" {
		t.Errorf("unparsable: %q", got)
	}
	if _, err := url.Parse(RedactURL("https://u:p@h/")); err != nil {
		t.Errorf("redacted URL does not parse: %v", err)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, content, want string
		wantErr             bool
	}{
		{"plain", "hunter2", "hunter2", false},
		{"newline", "hunter2\n", "hunter2", false},
		{"crlf", "hunter2\r\n", "hunter2", false},
		{"only one newline trimmed", "hunter2\n\n", "hunter2\n", false},
		{"inner space kept", " a b ", " a b ", false},
		{"empty", "", "", true},
		{"just newline", "\n", "", true},
		{"too big", strings.Repeat("x", secretfile.Max+1), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSecretFile("token_file", write(tt.name, tt.content))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %q, %v", got, err)
			}
			if err != nil && !strings.Contains(err.Error(), "token_file") {
				t.Errorf("error does not name the key: %v", err)
			}
			if err != nil && strings.Contains(err.Error(), strings.Repeat("x", 10)) {
				t.Errorf("error contains the content: %v", err)
			}
		})
	}
	_, err := ReadSecretFile("password_file", filepath.Join(dir, "missing"))
	if err == nil || !strings.Contains(err.Error(), "password_file") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

func TestSecret(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(p, []byte("fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Secret("token", "", p); err != nil || got != "fromfile" {
		t.Errorf("file: %q %v", got, err)
	}
	if got, err := Secret("token", "inline", ""); err != nil || got != "inline" {
		t.Errorf("inline: %q %v", got, err)
	}
	if got, err := Secret("token", "", ""); err != nil || got != "" {
		t.Errorf("none: %q %v", got, err)
	}
	if _, err := Secret("token", "inline", p); err == nil || strings.Contains(err.Error(), "inline") && !strings.Contains(err.Error(), "token_file") {
		t.Errorf("both: %v", err)
	}
}

func TestTemplate(t *testing.T) {
	m := &Message{Edge: "site1", Topic: "logging/hare", Fields: map[string]any{"user": "Jo", "n": 3.0}}
	tests := []struct {
		name, text, want string
		wantErr          bool
	}{
		{"static", "/var/log/warren.log", "/var/log/warren.log", false},
		{"edge", "/var/log/{{.Edge}}.log", "/var/log/site1.log", false},
		{"field", "{{.Fields.user | lower}}-{{.Fields.n}}", "jo-3", false},
		{"replace", `{{replace "/" "_" .Topic}}`, "logging_hare", false},
		{"json", "{{json .Fields.user}}", `"Jo"`, false},
		{"missing field", "{{.Fields.nope}}", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := ParseTemplate("path", tt.text)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tpl.Execute(m)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %q, %v", got, err)
			}
			if err != nil && !strings.Contains(err.Error(), "path") {
				t.Errorf("error does not name the key: %v", err)
			}
		})
	}
	if _, err := ParseTemplate("topic", "{{.Edge"); err == nil || !strings.Contains(err.Error(), "topic") {
		t.Errorf("bad template: %v", err)
	}
	// A nil Fields map reports the missing key instead of panicking.
	tpl, _ := ParseTemplate("k", "{{.Fields.user}}")
	if _, err := tpl.Execute(&Message{}); err == nil {
		t.Error("nil Fields: want error")
	}
}

func TestMarshalMessage(t *testing.T) {
	m := &Message{
		ID: "e1/r/t", Topic: "logging/hare", Edge: "site1", Title: "T", Body: "B", Priority: 2,
		Payload: []byte("{\"user\":\"jo\"}\xff"), Fields: map[string]any{"user": "jo"},
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)),
	}
	b, err := MarshalMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "e1/r/t", "topic": "logging/hare", "edge": "site1", "title": "T", "message": "B",
		"priority": 2.0, "payload": "{\"user\":\"jo\"}\uFFFD", "fields": map[string]any{"user": "jo"},
		"time": "2026-01-02T02:04:05.000000006Z",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestContent(t *testing.T) {
	m := &Message{Body: "body", Payload: []byte("payload")}
	for mode, want := range map[string]string{ContentBody: "body", ContentPayload: "payload"} {
		got, err := Content(mode, m)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v", mode, got, err)
		}
	}
	if b, err := Content(ContentJSON, m); err != nil || !json.Valid(b) {
		t.Errorf("json: %q %v", b, err)
	}
	if err := ValidateContent("payload", "xml"); err == nil || !strings.Contains(err.Error(), "payload") {
		t.Errorf("ValidateContent: %v", err)
	}
	if _, err := Content("xml", m); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestClampPriority(t *testing.T) {
	for in, want := range map[int]int{-9: -2, -2: -2, 0: 0, 2: 2, 7: 2} {
		if got := ClampPriority(in); got != want {
			t.Errorf("ClampPriority(%d) = %d", in, got)
		}
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("https://u:p@h/x?token=abc", "abc")
	f.Add("plain text", "x")
	f.Add("a://b://c", "")
	f.Fuzz(func(t *testing.T, s, secret string) {
		got := NewRedactor(secret).String(s)
		if len(secret) >= 4 && !strings.Contains(Redacted, secret) && strings.Contains(got, secret) && !strings.Contains(s, Redacted) {
			// The secret can only survive if it is built from the
			// replacement text itself.
			t.Errorf("secret %q survived in %q", secret, got)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Fri, 01 May 2026 12:00:30 GMT")
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, time.Unix(0, 0))
		if d < 0 || (!ok && d != 0) {
			t.Errorf("ParseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}

func TestURLSecrets(t *testing.T) {
	got := URLSecrets("https://longuser:pw@h/x?token=abcd&v=1&key=k2")
	want := []string{"pw", "longuser", "abcd"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	if URLSecrets("%zz") != nil {
		t.Error("unparsable URL")
	}
}
