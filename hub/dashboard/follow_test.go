package dashboard

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

func TestMessageFromHub(t *testing.T) {
	h := nats.Header{}
	h.Set(event.HdrEdge, "e1")
	h.Set(event.HdrTopic, "a.b/c")
	h.Set(event.HdrSource, event.SourceMQTT)
	h.Set(event.HdrReceived, "2026-11-22T12:00:00.5Z")
	m, err := MessageFromHub("hub.ev.e1.a//b.c", h, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Edge != "e1" || m.Topic != "a.b/c" || m.Source != "mqtt" || !m.Time.Equal(time.Date(2026, 11, 22, 12, 0, 0, 5e8, time.UTC)) {
		t.Errorf("%+v", m)
	}
	m, err = MessageFromHub("hub.ev.e2.x.y", nats.Header{}, nil)
	if err != nil || m.Topic != "x/y" || m.Edge != "e2" || !m.Time.IsZero() {
		t.Errorf("without headers: %+v %v", m, err)
	}
	if _, err := MessageFromHub("hub.ev.e1.x", h, nil); err != nil {
		t.Errorf("matching edge header refused: %v", err)
	}
	if _, err := MessageFromHub("hub.ev.e2.x", h, nil); err == nil {
		t.Error("edge header different from the subject accepted")
	}
	if _, err := MessageFromHub("other.subject", h, nil); err == nil {
		t.Error("non-hub subject accepted")
	}
	// The edge chooses its headers, not where its events count.
	forged := nats.Header{}
	forged.Set(event.HdrTopic, "warren/audit/alert/edge_store_full")
	if m, err := MessageFromHub("hub.ev.e1.logging.hare", forged, nil); err != nil || m.Topic != "logging/hare" {
		t.Errorf("forged Warren-Topic: %+v %v; want the subject's topic", m, err)
	}
}

// TestFollow stores events in a real HUB stream, some before Follow
// starts (replayed from Since) and some after, and some through the
// audit package's JetStreamSink, and checks the aggregator saw them all.
func TestFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server")
	}
	hs := startHubServer(t, false, nil)
	now := time.Now()
	for i := 0; i < 3; i++ {
		hs.store(t, "e1", event.HareTopic, event.SourceUDP, now.Add(-10*time.Minute), []byte(`{"hostname":"old"}`))
	}
	agg, err := NewAggregator(DefaultAggregatorConfig())
	if err != nil {
		t.Fatal(err)
	}
	runFollow(t, hs.js, agg, FollowOptions{Since: time.Hour})
	for i := 0; i < 5; i++ {
		hs.store(t, "e2", "sensors/t1", event.SourceMQTT, time.Now(), []byte("1"))
	}
	sink := audit.JetStreamSink{JS: hs.js, Edge: "hub", Subject: func(s string) string { return event.HubSubject("hub", s) }}
	if err := sink.Emit(context.Background(), audit.Event{Kind: audit.KindAlert, Rule: audit.RuleUnknown, Key: "rogue", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all events", func() bool {
		topics, _ := agg.TopTopics(context.Background(), 10)
		alerts, _ := agg.Alerts(context.Background(), 10)
		var hare, sensors uint64
		for _, c := range topics {
			switch c.Name {
			case event.HareTopic:
				hare = c.In
			case "sensors/t1":
				sensors = c.In
			}
		}
		return hare == 3 && sensors == 5 && len(alerts) == 1
	})
	tl, _ := agg.Timeline(context.Background(), time.Hour, 5*time.Minute)
	var logins uint64
	for _, v := range tl.Series[SeriesLogins] {
		logins += v
	}
	if logins != 3 {
		t.Errorf("replayed logins %d, want 3", logins)
	}
	alerts, _ := agg.Alerts(context.Background(), 1)
	if alerts[0].Edge != "hub" || alerts[0].Rule != string(audit.RuleUnknown) {
		t.Errorf("alert %+v", alerts[0])
	}
}
