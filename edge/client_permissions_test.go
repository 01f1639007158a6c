package edge

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
)

// TestClientsCannotTouchTheStore: MQTT and NATS clients of the edge (local
// devices, a bridging mosquitto) may publish events, but must not be able
// to write into the edge's streams past ingest or drive the JetStream API
// of the edge's account: a purge or delete of EDGE would lose accepted
// events, one of HARE_NONCES would re-open every replay.

// The deny list is edge.clientPublishDeny.
func TestClientsCannotTouchTheStore(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.NATS.Listen = "127.0.0.1:0"
	e, _ := startEdge(t, cfg)
	s := sender(t, "127.0.0.1")
	send(t, s, e.UDPAddr(), v0(1, "kept"))
	waitFor(t, "accepted", 5*time.Second, func() bool { return e.Status().Accepted[event.SourceUDP] == 1 })
	backlog := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := e.streamStatus(ctx)
		if err != nil {
			t.Fatalf("edge stream: %v", err)
		}
		return st.Messages
	}

	mc, err := mqttClient(t, e.MQTTAddr(), "device-perm", "", "")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.NATSURL(), nats.Timeout(5*time.Second),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refusals are expected
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	t.Run("no writes into the streams", func(t *testing.T) {
		publish(t, mc, "ev/logging/hare", 1, "forged")
		publish(t, mc, "nonce/hare", 1, "0 host1 0000000000000000")
		_ = nc.Publish("ev.logging.hare", []byte("forged over nats"))
		_ = nc.Publish("nonce.hare", []byte("0 host1 0000000000000000"))
		_ = nc.Flush()
		publish(t, mc, "logging/marker", 1, "marker")
		waitStored(t, e, "marker")
		for _, m := range storedEvents(t, e.JetStream()) {
			if string(m.Data) == "forged" || string(m.Data) == "forged over nats" {
				t.Errorf("a client wrote %q straight into the edge stream", m.Data)
			}
		}
	})

	t.Run("no JetStream API", func(t *testing.T) {
		before := backlog()
		publish(t, mc, "$JS/API/STREAM/PURGE/EDGE", 1, "")
		publish(t, mc, "$JS/API/STREAM/PURGE/"+NonceStream, 1, "")
		publish(t, mc, "logging/marker2", 1, "marker2")
		waitStored(t, e, "marker2")
		if got := backlog(); got < before+1 {
			t.Errorf("an MQTT client purged the edge stream: %d events before, %d after (plus one marker)", before, got)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, event.EdgeStream); err == nil {
			t.Errorf("a NATS client deleted the %s stream", event.EdgeStream)
		}
	})
}
