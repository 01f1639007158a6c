package edge

import (
	"context"
	"testing"
	"time"
)

// benchEdge is an edge tuned for measuring: no rate limit, a store that
// never fills.
func benchEdge(b *testing.B) *Edge {
	cfg := testConfig(b, b.TempDir())
	cfg.UDP.RateLimit.Rate = 0
	cfg.Store.MaxBytes = 0
	cfg.Admin.Listen = ""
	cfg.MQTT.Listen = ""
	e, _ := startEdge(b, cfg)
	return e
}

func accepted(e *Edge) uint64 { return e.counters.accepted["udp"].Load() }
func rejected(e *Edge) uint64 {
	var n uint64
	for _, v := range e.counters.rejected {
		n += v.Load()
	}
	return n
}

// BenchmarkStartup measures New+Start+Close of an edge on a fresh store.
func BenchmarkStartup(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cfg := testConfig(b, b.TempDir())
		e, err := New(cfg, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := e.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "ms/start")
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
}
