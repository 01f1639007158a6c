package edge

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/wire"
)

// The benchmarks in bench_test.go size their work by b.N, so under `make
// bench` (-benchtime 1x) they send one datagram and print nothing useful.
// These send a fixed workload per iteration, so 1x gives the figures issue
// 3 asks for: datagrams/s accepted durably (v0, v1) and the loss at 5k/s
// and 20k/s offered.

const fixedBurst = 50000

// BenchmarkUDPAcceptedDurably sends fixedBurst datagrams per iteration,
// keeping at most 4096 undecided, and reports accepted (JetStream-acked)
// datagrams per second.
func BenchmarkUDPAcceptedDurably(b *testing.B) {
	for _, format := range []string{"v0", "v1"} {
		b.Run(format, func(b *testing.B) {
			payload := v0(1795384588, "bench")
			now := time.Now()
			msgs := make([][]byte, fixedBurst)
			for i := range msgs {
				if format == "v0" {
					msgs[i] = v0(1795384588+int64(i), "bench")
					continue
				}
				var n [wire.NonceSize]byte
				binary.BigEndian.PutUint64(n[:], uint64(i)^uint64(now.UnixNano()))
				msgs[i] = seal(b, "host1", testKey, now, n, payload)
			}
			var rate, lost float64
			for range b.N {
				b.StopTimer()
				e := benchEdge(b)
				c := sender(b, "127.0.0.1")
				to, _ := net.ResolveUDPAddr("udp", e.UDPAddr())
				b.StartTimer()
				start := time.Now()
				for i, m := range msgs {
					if i%64 == 0 {
						for uint64(i)-(accepted(e)+rejected(e)) > 4096 {
							time.Sleep(50 * time.Microsecond)
						}
					}
					if _, err := c.WriteToUDP(m, to); err != nil {
						b.Fatal(err)
					}
				}
				deadline := time.Now().Add(30 * time.Second)
				for accepted(e)+rejected(e) < fixedBurst && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				el := time.Since(start)
				acc := accepted(e)
				rate += float64(acc) / el.Seconds()
				lost += float64(fixedBurst-acc) / fixedBurst * 100
				b.StopTimer()
				e.Close()
				b.StartTimer()
			}
			b.ReportMetric(rate/float64(b.N), "accepted/s")
			b.ReportMetric(lost/float64(b.N), "%lost")
		})
	}
}

// BenchmarkUDPLossAtRate offers v0 datagrams at a fixed rate for 2 s per
// iteration and reports the rate actually offered (the sender may fall
// short on a loaded machine) and the share not accepted.
func BenchmarkUDPLossAtRate(b *testing.B) {
	for _, rate := range []int{5000, 20000} {
		b.Run(fmt.Sprintf("%dk", rate/1000), func(b *testing.B) {
			n := 2 * rate
			msg := v0(1795384588, "loss")
			var offered, lost float64
			for range b.N {
				b.StopTimer()
				e := benchEdge(b)
				c := sender(b, "127.0.0.1")
				to, _ := net.ResolveUDPAddr("udp", e.UDPAddr())
				b.StartTimer()
				start := time.Now()
				for i := range n {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
					if d := time.Until(due); d > time.Millisecond {
						time.Sleep(d)
					}
					if _, err := c.WriteToUDP(msg, to); err != nil {
						b.Fatal(err)
					}
				}
				sendTime := time.Since(start)
				deadline := time.Now().Add(30 * time.Second)
				for accepted(e)+rejected(e) < uint64(n) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond) // stragglers; what is missing now was lost
				offered += float64(n) / sendTime.Seconds()
				lost += float64(uint64(n)-accepted(e)) / float64(n) * 100
				b.StopTimer()
				e.Close()
				b.StartTimer()
			}
			b.ReportMetric(offered/float64(b.N), "offered/s")
			b.ReportMetric(lost/float64(b.N), "%lost")
		})
	}
}
