package hub

import (
	"fmt"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/event"
)

// BenchmarkIngest measures events stored per second through the whole hub
// path: an edge over mutual TLS on loopback, pipelined requests (window
// 512), ingest checks, JetStream file store, PubAck forwarded, MQTT
// republish. Each iteration stores ingestWork events (so `make bench`,
// which runs one iteration, measures a real figure).
func BenchmarkIngest(b *testing.B) {
	const ingestWork = 50000
	for _, edges := range []int{1, 4} {
		b.Run(fmt.Sprintf("edges=%d", edges), func(b *testing.B) {
			ids := make([]string, edges)
			for i := range ids {
				ids[i] = fmt.Sprintf("bench-%d", i)
			}
			cfg := testConfig(b)
			th := startHub(b, cfg, ids...)
			pipes := make([]*pipeline, edges)
			for i, id := range ids {
				pipes[i] = newPipeline(b, th.connectEdge(b, id), id, 512)
			}
			payload := []byte(harePayload)
			total := b.N * ingestWork
			b.ResetTimer()
			start := time.Now()
			done := make(chan struct{}, edges)
			for i := range edges {
				go func() {
					p := pipes[i]
					for n := i; n < total; n += edges {
						p.send(b, n/edges, event.MsgID(p.id, "bench", uint64(n/edges+1)), payload)
					}
					done <- struct{}{}
				}()
			}
			for range edges {
				<-done
			}
			for i, p := range pipes {
				want := total / edges
				if i < total%edges {
					want++
				}
				p.wait(b, want)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
			if got := th.Status().Ingest[resStored]; got != uint64(total) {
				b.Fatalf("stored %d, want %d", got, total)
			}
		})
	}
}
