package discovery

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want logLine
	}{
		{
			name: "wrong key on a stream",
			in:   "[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:40122\n",
			want: logLine{level: slog.LevelError, msg: "failed to receive: no installed keys could decrypt the message", from: "127.0.0.1:40122", refusal: refusalKey},
		},
		{
			name: "wrong key on a packet",
			in:   "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=[::1]:7946",
			want: logLine{level: slog.LevelError, msg: "Decrypt packet failed: no installed keys could decrypt the message", from: "[::1]:7946", refusal: refusalKey},
		},
		{
			name: "plaintext packet",
			in:   "[ERR] memberlist: Decrypt packet failed: unsupported encryption version 4 from=10.0.0.1:7946",
			want: logLine{level: slog.LevelError, msg: "Decrypt packet failed: unsupported encryption version 4", from: "10.0.0.1:7946", refusal: refusalPlaintext},
		},
		{
			name: "plaintext stream",
			in:   "[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=10.0.0.1:5000",
			want: logLine{level: slog.LevelError, msg: "failed to receive: encryption is configured but remote state is not encrypted", from: "10.0.0.1:5000", refusal: refusalPlaintext},
		},
		{
			name: "encrypted peer, insecure node",
			in:   "[ERR] memberlist: failed to receive: remote state is encrypted and encryption is not configured from=10.0.0.1:5000",
			want: logLine{level: slog.LevelError, msg: "failed to receive: remote state is encrypted and encryption is not configured", from: "10.0.0.1:5000", refusal: refusalKey},
		},
		{
			name: "label",
			in:   `[ERR] memberlist: discarding packet with unacceptable label "other": from=10.0.0.2:7946`,
			want: logLine{level: slog.LevelError, msg: `discarding packet with unacceptable label "other":`, from: "10.0.0.2:7946", refusal: refusalLabel},
		},
		{
			name: "I/O error reading the label header is not a refusal",
			in:   "[ERR] memberlist: failed to receive and remove the stream label header: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout from=127.0.0.1:2",
			want: logLine{level: slog.LevelError, msg: "failed to receive and remove the stream label header: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout", from: "127.0.0.1:2"},
		},
		{
			name: "empty label header",
			in:   "[ERR] memberlist: failed to receive and remove the stream label header: label header cannot be empty when present from=127.0.0.1:2",
			want: logLine{level: slog.LevelError, msg: "failed to receive and remove the stream label header: label header cannot be empty when present", from: "127.0.0.1:2", refusal: refusalLabel},
		},
		{
			name: "own join failure is not a refusal",
			in:   "[DEBUG] memberlist: failed to join 127.0.0.1:7946: no installed keys could decrypt the message",
			want: logLine{level: slog.LevelDebug, msg: "failed to join 127.0.0.1:7946: no installed keys could decrypt the message"},
		},
		{
			name: "warn",
			in:   "[WARN] memberlist: Refuting a suspect message (from: e1)",
			want: logLine{level: slog.LevelWarn, msg: "Refuting a suspect message (from: e1)"},
		},
		{
			name: "info",
			in:   "[INFO] memberlist: Marking e2 as failed, suspect timeout reached (0 peer confirmations)",
			want: logLine{level: slog.LevelInfo, msg: "Marking e2 as failed, suspect timeout reached (0 peer confirmations)"},
		},
		{
			name: "no memberlist prefix",
			in:   "[ERR] Failed to shutdown transport: boom",
			want: logLine{level: slog.LevelError, msg: "Failed to shutdown transport: boom"},
		},
		{
			name: "no level",
			in:   "Err: Could not set the deadline: x",
			want: logLine{level: slog.LevelInfo, msg: "Err: Could not set the deadline: x"},
		},
		{
			name: "unknown level kept",
			in:   "[NOPE] memberlist: hi",
			want: logLine{level: slog.LevelInfo, msg: "hi"},
		},
		{
			name: "empty from is text",
			in:   "[DEBUG] memberlist: x from=",
			want: logLine{level: slog.LevelDebug, msg: "x from="},
		},
		{name: "empty", in: "", want: logLine{level: slog.LevelInfo}},
		{name: "bracket only", in: "[", want: logLine{level: slog.LevelInfo, msg: "["}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseLogLine(tt.in)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(logLine{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseLogLine(f *testing.F) {
	f.Add("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:1")
	f.Add("[WARN] memberlist: x")
	f.Add("[]")
	f.Add("[ERR")
	f.Add(" from=")
	f.Fuzz(func(t *testing.T, s string) {
		l := parseLogLine(s)
		if !strings.Contains(s, l.msg) {
			t.Fatalf("message %q is not part of the line %q", l.msg, s)
		}
		if l.from != "" && !strings.Contains(s, "from="+l.from) {
			t.Fatalf("from %q is not in the line %q", l.from, s)
		}
	})
}

// recordHandler keeps every record it gets, for assertions on logs.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// find returns the attributes of every record with message msg.
func (h *recordHandler) find(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		attrs := map[string]string{"level": r.Level.String()}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

func TestLogWriterCountsAndRateLimitsRefusals(t *testing.T) {
	h := &recordHandler{}
	var c refusalCounters
	w := newLogWriter(slog.New(h), slog.New(h), &c)
	now := time.Unix(1000, 0)
	w.now = func() time.Time { return now }
	lg := log.New(w, "", 0) // as memberlist uses it

	for port := range 5 { // new connection, new source port each time
		lg.Printf("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.9:%d", 40000+port)
	}
	lg.Printf("[ERR] memberlist: discarding stream with unacceptable label %q: from=10.0.0.9:1", "x")
	lg.Printf("[INFO] memberlist: Suspect e1 has failed, no acks received")

	if got := c.key.Load(); got != 5 {
		t.Errorf("wrong-key count = %d, want 5", got)
	}
	if got := c.label.Load(); got != 1 {
		t.Errorf("label count = %d, want 1", got)
	}
	warns := h.find("gossip refused")
	if len(warns) != 2 {
		t.Fatalf("got %d refusal warnings, want 2 (one per kind and peer IP): %v", len(warns), warns)
	}
	if warns[0]["reason"] != "wrong-key" || warns[0]["from"] != "10.0.0.9:40000" || warns[0]["level"] != "WARN" {
		t.Errorf("first warning = %v", warns[0])
	}
	if len(h.find("Suspect e1 has failed, no acks received")) != 1 {
		t.Error("ordinary memberlist line not passed through")
	}

	now = now.Add(refusalLogEvery + time.Second)
	lg.Printf("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.9:50000")
	warns = h.find("gossip refused")
	if len(warns) != 3 || warns[2]["suppressed_since_last"] != "4" {
		t.Errorf("after the period: warnings %v, want a third one reporting 4 suppressed", warns)
	}
}
