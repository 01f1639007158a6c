package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValidate(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:9100", "[::1]:0", "localhost:1", "unix:/tmp/x.sock"} {
		if err := (Config{Listen: ok}).Validate("admin.listen"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:9100", ":9100", "10.1.1.1:1", "unix:", "nope"} {
		err := (Config{Listen: bad}).Validate("admin.listen")
		if err == nil || !strings.HasPrefix(err.Error(), "admin.listen: ") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "warren_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	healthy := true
	h := Handlers{
		Registry: reg,
		Health: func() error {
			if !healthy {
				return errors.New("store down")
			}
			return nil
		},
		Status: func() any { return map[string]int{"accepted": 7} },
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, listen := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "a.sock")} {
		t.Run(listen, func(t *testing.T) {
			s, err := Listen(Config{Listen: listen}, h, logger)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var st map[string]int
			if err := Get(ctx, s.Addr(), "/status", &st); err != nil || st["accepted"] != 7 {
				t.Fatalf("status = %v, %v", st, err)
			}
			var raw []byte
			if err := Get(ctx, s.Addr(), "/metrics", &raw); err != nil || !strings.Contains(string(raw), "warren_test_total 3") {
				t.Fatalf("metrics = %s, %v", raw, err)
			}
			healthy = true
			if err := Get(ctx, s.Addr(), "/healthz", &raw); err != nil {
				t.Fatalf("healthz: %v", err)
			}
			healthy = false
			if err := Get(ctx, s.Addr(), "/healthz", &raw); err == nil || !strings.Contains(err.Error(), "store down") {
				t.Fatalf("unhealthy healthz: %v", err)
			}
		})
	}
}
