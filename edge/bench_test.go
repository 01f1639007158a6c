package edge

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/wire"
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

// closedLoop sends b.N datagrams made by mk, keeping at most window of them
// unprocessed, and reports accepted datagrams per second.
func closedLoop(b *testing.B, e *Edge, mk func(i int) []byte) {
	c := sender(b, "127.0.0.1")
	to, _ := net.ResolveUDPAddr("udp", e.UDPAddr())
	const window = 4096
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = mk(i)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if i%64 == 0 {
			for uint64(i)-(accepted(e)+rejected(e)) > window {
				time.Sleep(50 * time.Microsecond)
			}
		}
		if _, err := c.WriteToUDP(msgs[i], to); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for accepted(e)+rejected(e) < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	acc := accepted(e)
	b.ReportMetric(float64(acc)/el.Seconds(), "datagrams/s")
	b.ReportMetric(float64(uint64(b.N)-acc)/float64(b.N)*100, "%lost")
}

func BenchmarkIngestV0(b *testing.B) {
	e := benchEdge(b)
	closedLoop(b, e, func(i int) []byte { return v0(1795384588+int64(i), "bench") })
}

func BenchmarkIngestV1(b *testing.B) {
	e := benchEdge(b)
	payload := v0(1795384588, "bench")
	now := time.Now()
	closedLoop(b, e, func(i int) []byte {
		var n [wire.NonceSize]byte
		binary.BigEndian.PutUint64(n[:], uint64(i)^uint64(now.UnixNano()))
		return seal(b, "host1", testKey, now, n, payload)
	})
}

// BenchmarkLoss offers datagrams at a fixed rate (one iteration is one
// datagram, paced) and reports the share that was not accepted.
func BenchmarkLoss(b *testing.B) {
	for _, rate := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("%dk", rate/1000), func(b *testing.B) {
			e := benchEdge(b)
			c := sender(b, "127.0.0.1")
			to, _ := net.ResolveUDPAddr("udp", e.UDPAddr())
			msg := v0(1795384588, "loss")
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				// pace: datagram i leaves at start + i/rate
				due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
				if d := time.Until(due); d > 200*time.Microsecond {
					time.Sleep(d)
				}
				if _, err := c.WriteToUDP(msg, to); err != nil {
					b.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for accepted(e)+rejected(e) < uint64(b.N) && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			// let stragglers land; whatever is missing now was lost
			time.Sleep(50 * time.Millisecond)
			b.StopTimer()
			sent := float64(b.N)
			b.ReportMetric(sent/time.Since(start).Seconds(), "offered/s")
			b.ReportMetric((sent-float64(accepted(e)))/sent*100, "%lost")
		})
	}
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
