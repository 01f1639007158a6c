package log

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/hub/notify/target"
)

func TestNotify(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want map[string]any
	}{
		{
			name: "defaults",
			cfg:  DefaultConfig(),
			want: map[string]any{
				"level": "INFO", "msg": "notification", "id": "e1/r/t", "topic": "logging/hare", "edge": "site1",
				"title": "login", "body": "jo logged in", "priority": 1.0,
			},
		},
		{
			name: "warn with payload",
			cfg:  Config{Level: "warn", Message: "page", Payload: true},
			want: map[string]any{
				"level": "WARN", "msg": "page", "id": "e1/r/t", "topic": "logging/hare", "edge": "site1",
				"title": "login", "body": "jo logged in", "priority": 1.0, "payload": `{"user":"jo"}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			}))
			n, err := New(tt.cfg, logger)
			if err != nil {
				t.Fatal(err)
			}
			retry, err := n.Notify(context.Background(), &target.Message{
				ID: "e1/r/t", Topic: "logging/hare", Edge: "site1", Title: "login", Body: "jo logged in",
				Priority: 1, Payload: []byte(`{"user":"jo"}`), Time: time.Now(),
			})
			if retry || err != nil {
				t.Fatalf("Notify: %v %v", retry, err)
			}
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("%v: %q", err, buf.String())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestLevelFiltered(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := New(Config{Level: "debug", Message: "n"}, logger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Notify(context.Background(), &target.Message{Body: "x"}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("debug record written at warn level: %q", buf.String())
	}
}

func TestValidate(t *testing.T) {
	for name, tt := range map[string]struct {
		cfg Config
		key string
	}{
		"bad level":     {Config{Level: "loud", Message: "x"}, "level"},
		"empty message": {Config{Level: "info"}, "message"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Error("nil logger accepted")
	}
	for _, l := range []string{"debug", "INFO", "warning", "error"} {
		if err := (Config{Level: l, Message: "m"}).Validate(); err != nil {
			t.Errorf("level %q: %v", l, err)
		}
	}
}
