package notify

import (
	dto "github.com/prometheus/client_model/go"
	"testing"
	"time"
)

// nowForTest is a fixed instant: Tuesday 2026-11-24 09:08:07.654321 UTC
// (10:08 in Berlin).
var nowForTest = time.Date(2026, 11, 24, 9, 8, 7, 654321000, time.UTC)

// compileYAML parses and compiles a notify section, failing the test on
// error.
func compileYAML(t testing.TB, doc string) *compiled {
	t.Helper()
	cfg, err := parseYAMLConfig(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hareEvent is a hared-shaped login event.
func hareEvent(id, user string, at time.Time) *Event {
	payload := `{"hostname":"vm","remote":"127.0.0.1","rhost":"198.51.100.7","service":"sshd","tst":1795384609,"tty":"pts/3","user":"` + user + `"}`
	return NewEvent(id, "logging/hare", "site-1", "udp", []byte(payload), at)
}

func counterValue(t testing.TB, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
