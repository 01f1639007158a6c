package dashboard

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 30, 0, time.UTC)

func newTestAgg(t *testing.T, mod func(*AggregatorConfig)) (*Aggregator, *time.Time) {
	t.Helper()
	cfg := DefaultAggregatorConfig()
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAggregator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	a.now = func() time.Time { return now }
	return a, &now
}

func auditMsg(t *testing.T, edge string, ev audit.Event) Message {
	t.Helper()
	b, err := audit.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return Message{Edge: edge, Topic: ev.StoreTopic(), Source: event.SourceAudit, Time: ev.Time, Payload: b}
}

func TestAggregator(t *testing.T) {
	a, now := newTestAgg(t, nil)
	ctx := context.Background()
	hare := func(host string, at time.Time) Message {
		return Message{Edge: "e1", Topic: event.HareTopic, Source: event.SourceUDP, Time: at,
			Payload: []byte(`{"hostname":"` + host + `","remote":"127.0.0.1","rhost":"x","service":"sshd","tst":1,"tty":"ssh","user":"jo"}`)}
	}
	for i := 0; i < 3; i++ {
		a.Observe(hare("vm1", t0.Add(-2*time.Minute)))
	}
	a.Observe(hare("vm2", t0))
	a.Observe(Message{Edge: "e2", Topic: "sensors/t1", Source: event.SourceMQTT, Time: t0, Payload: []byte("21.5")})
	a.Observe(auditMsg(t, "e1", audit.Event{Kind: audit.KindConnect, Time: t0, ClientID: "dev1"}))
	a.Observe(auditMsg(t, "e1", audit.Event{Kind: audit.KindAuthFail, Time: t0.Add(-time.Minute)}))
	a.Observe(auditMsg(t, "e2", audit.Event{Kind: audit.KindAlert, Time: t0.Add(-time.Minute), Rule: audit.RuleBruteAddr, Severity: "critical", Key: "10.0.0.9", Message: "m1"}))
	a.Observe(auditMsg(t, "e1", audit.Event{Kind: audit.KindAlert, Time: t0, Rule: audit.RulePlain, Key: "10.0.0.8", Message: "m2"}))
	a.Observe(auditMsg(t, "e2", audit.Event{Kind: audit.KindTraffic, Time: t0,
		Clients: []audit.Traffic{{Name: "dev1", In: 10, Out: 2}, {Name: "dev2", In: 1}},
		Topics:  []audit.Traffic{{Name: "sensors/#", Out: 7}, {Name: "sensors/t1", In: 10}}}))
	a.Observe(auditMsg(t, "e1", audit.Event{Kind: audit.KindVersion, Time: t0, Lang: "edge", Edge: "e1", Version: "0.5.0"}))
	a.Observe(Message{Edge: "e1", Topic: "warren/audit/connect", Source: event.SourceAudit, Payload: []byte("garbage")})

	tl, err := a.Timeline(ctx, 5*time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]uint64{
		SeriesLogins:      {0, 0, 3, 0, 1},
		SeriesConnections: {0, 0, 0, 0, 1},
		SeriesAuthFail:    {0, 0, 0, 1, 0},
		SeriesAlerts:      {0, 0, 0, 1, 1},
		SeriesEvents:      {0, 0, 3, 0, 2},
		SeriesPublishes:   {0, 0, 0, 0, 11},
		SeriesDeliveries:  {0, 0, 0, 0, 2},
	}
	if d := cmp.Diff(want, tl.Series); d != "" {
		t.Errorf("series (-want +got)\n%s", d)
	}
	if tl.StepMS != 60000 || len(tl.Times) != 5 || tl.Times[4] != time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC).UnixMilli() {
		t.Errorf("times %v step %d", tl.Times, tl.StepMS)
	}
	// Steps of 2 buckets add up.
	tl2, _ := a.Timeline(ctx, 4*time.Minute, 2*time.Minute)
	if got := tl2.Series[SeriesLogins]; !cmp.Equal(got, []uint64{3, 1}) {
		t.Errorf("2m steps: logins %v", got)
	}

	devs, _ := a.TopDevices(ctx, 10)
	wantDevs := []Count{{Name: "e2/dev1", In: 10, Out: 2}, {Name: "e1/vm1", In: 3}, {Name: "e1/vm2", In: 1}, {Name: "e2/dev2", In: 1}}
	if d := cmp.Diff(wantDevs, devs); d != "" {
		t.Errorf("devices (-want +got)\n%s", d)
	}
	topics, _ := a.TopTopics(ctx, 2)
	wantTopics := []Count{{Name: "sensors/#", Out: 7}, {Name: "logging/hare", In: 4}}
	if d := cmp.Diff(wantTopics, topics); d != "" {
		t.Errorf("topics (-want +got)\n%s", d)
	}
	alerts, _ := a.Alerts(ctx, 10)
	if len(alerts) != 2 || alerts[0].Message != "m2" || alerts[1].Edge != "e2" || alerts[1].Rule != "brute_force_addr" {
		t.Errorf("alerts %+v", alerts)
	}
	if a.Rejected() != 1 {
		t.Errorf("rejected %d, want 1", a.Rejected())
	}

	since := t0.Add(-time.Hour)
	a.SetFleet(func() []Edge {
		return []Edge{{ID: "e1", Connected: true, Address: "192.0.2.1:5000", LastSeen: &since}, {ID: "e3", Version: "0.4.0"}}
	})
	fleet, _ := a.Fleet(ctx)
	if len(fleet) != 3 || fleet[0].ID != "e1" || fleet[1].ID != "e2" || fleet[2].ID != "e3" {
		t.Fatalf("fleet %+v", fleet)
	}
	if !fleet[0].Connected || fleet[0].Version != "0.5.0" || fleet[0].Events != 4 || fleet[0].Alerts != 1 || !fleet[0].LastSeen.Equal(t0) {
		t.Errorf("e1 %+v", fleet[0])
	}
	if fleet[1].Connected || fleet[1].Alerts != 1 || fleet[1].Events != 1 {
		t.Errorf("e2 %+v", fleet[1])
	}

	// An hour later the old buckets are still there; a day later they are gone.
	*now = t0.Add(25 * time.Hour)
	tl, _ = a.Timeline(ctx, 24*time.Hour, time.Hour)
	for _, v := range tl.Series[SeriesLogins] {
		if v != 0 {
			t.Fatalf("old buckets still counted after the retention: %v", tl.Series[SeriesLogins])
		}
	}
	// Events outside the retention are not put in a bucket.
	a.Observe(hare("vm3", t0))
	tl, _ = a.Timeline(ctx, 24*time.Hour, time.Hour)
	var sum uint64
	for _, v := range tl.Series[SeriesLogins] {
		sum += v
	}
	if sum != 0 {
		t.Errorf("a day-old event landed in the timeline")
	}
}

func TestAggregatorBounds(t *testing.T) {
	a, _ := newTestAgg(t, func(c *AggregatorConfig) { c.MaxNames = 3; c.MaxAlerts = 2; c.HubID = "hub" })
	for i := 0; i < 10; i++ {
		a.Observe(Message{Edge: "e1", Topic: "t/" + string(rune('a'+i)), Time: t0})
		a.Observe(auditMsg(t, "hub", audit.Event{Kind: audit.KindAlert, Rule: audit.RuleUnsigned, Time: t0, Key: string(rune('a' + i))}))
	}
	topics, _ := a.TopTopics(context.Background(), 100)
	if len(topics) != 4 || topics[0].Name != OtherName || topics[0].In != 7 {
		t.Errorf("topics %+v", topics)
	}
	alerts, _ := a.Alerts(context.Background(), 100)
	if len(alerts) != 2 || alerts[0].Key != "j" || alerts[1].Key != "i" {
		t.Errorf("alerts %+v", alerts)
	}
	fleet, _ := a.Fleet(context.Background())
	if len(fleet) != 1 || fleet[0].ID != "e1" {
		t.Errorf("fleet %+v (the hub is not an edge)", fleet)
	}
}

func TestAggregatorConfig(t *testing.T) {
	if err := DefaultAggregatorConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*AggregatorConfig){
		"bucket":    func(c *AggregatorConfig) { c.Bucket = time.Millisecond },
		"retention": func(c *AggregatorConfig) { c.Retention = time.Second },
		"too many":  func(c *AggregatorConfig) { c.Bucket = time.Second; c.Retention = 1000 * time.Hour },
		"names":     func(c *AggregatorConfig) { c.MaxNames = 0 },
		"alerts":    func(c *AggregatorConfig) { c.MaxAlerts = 0 },
		"edges":     func(c *AggregatorConfig) { c.MaxEdges = -1 },
	} {
		cfg := DefaultAggregatorConfig()
		mod(&cfg)
		if _, err := NewAggregator(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
