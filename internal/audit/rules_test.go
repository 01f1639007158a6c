package audit

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func testRules(mod func(*Config)) *rules {
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	return newRules(cfg)
}

func fails(r *rules, remote, user string, n int, at time.Time, step time.Duration) (alerts []Event, blocks []Block, emitted int) {
	for i := 0; i < n; i++ {
		a, b, s := r.authFailure(Event{Kind: KindAuthFail, Remote: remote, User: user}, at.Add(time.Duration(i)*step))
		alerts = append(alerts, a...)
		blocks = append(blocks, b...)
		if !s {
			emitted++
		}
	}
	return
}

func TestBruteForceAddr(t *testing.T) {
	r := testRules(nil)
	alerts, blocks, emitted := fails(r, "10.0.0.5:4000", "root", 1000, t0, time.Millisecond)
	if len(alerts) != 1 || alerts[0].Rule != RuleBruteAddr || alerts[0].Key != "10.0.0.5" || alerts[0].Count != 10 {
		t.Fatalf("alerts = %+v, want one brute_force_addr for 10.0.0.5", alerts)
	}
	if alerts[0].Until == nil || !alerts[0].Until.Equal(t0.Add(9*time.Millisecond+15*time.Minute)) {
		t.Errorf("until = %v", alerts[0].Until)
	}
	if len(blocks) != 1 || blocks[0].Scope != ScopeAddr {
		t.Fatalf("blocks = %+v", blocks)
	}
	if emitted != 10 {
		t.Errorf("%d failure events emitted, want 10 (the rest suppressed by the block)", emitted)
	}
	at := t0.Add(time.Second)
	if !r.addrBlocked("10.0.0.5", at) || r.addrBlocked("10.0.0.6", at) {
		t.Error("block not on the right address")
	}
	if got := r.blocks(at); len(got) != 1 || got[0].Suppressed != 990 {
		t.Errorf("blocks = %+v, want 990 suppressed", got)
	}
	// A successful login from the blocked address is refused, others not.
	if _, blocked := r.connect(Event{Kind: KindConnect, Remote: "10.0.0.5:1", TLS: "1.3"}, at); !blocked {
		t.Error("login from blocked address not refused")
	}
	if _, blocked := r.connect(Event{Kind: KindConnect, Remote: "10.0.0.6:1", TLS: "1.3"}, at); blocked {
		t.Error("login from another address refused")
	}
	// The block lifts itself.
	end := t0.Add(16 * time.Minute)
	lifted := r.sweep(end)
	if len(lifted) != 1 || !lifted[0].Lifted || r.addrBlocked("10.0.0.5", end) {
		t.Errorf("lifted = %+v", lifted)
	}
	// After the block and cooldown a new attack gives a new alert.
	alerts, _, _ = fails(r, "10.0.0.5:4000", "root", 10, end, time.Millisecond)
	if len(alerts) != 1 {
		t.Errorf("second attack: %d alerts, want 1", len(alerts))
	}
}

func TestBruteForceWindow(t *testing.T) {
	r := testRules(nil)
	// 9 failures a minute apart never reach 10 within 1m.
	alerts, _, _ := fails(r, "10.0.0.5", "", 50, t0, 61*time.Second)
	if len(alerts) != 0 {
		t.Errorf("slow failures raised %d alerts", len(alerts))
	}
	// 10 within the window do.
	alerts, _, _ = fails(r, "10.0.0.5", "", 10, t0.Add(time.Hour), 5*time.Second)
	if len(alerts) != 1 {
		t.Errorf("fast failures raised %d alerts, want 1", len(alerts))
	}
}

func TestBruteForceNeverBlock(t *testing.T) {
	r := testRules(nil)
	alerts, blocks, emitted := fails(r, "127.0.0.1:5", "", 100, t0, time.Millisecond)
	if len(alerts) != 1 || len(blocks) != 0 {
		t.Errorf("loopback: %d alerts %d blocks, want 1 alert and no block", len(alerts), len(blocks))
	}
	if emitted != 10 {
		t.Errorf("emitted %d, want 10 (quiet during the cooldown)", emitted)
	}
	if r.addrBlocked("127.0.0.1", t0) {
		t.Error("never_block address blocked")
	}
}

func TestBruteForceUser(t *testing.T) {
	r := testRules(nil)
	var alerts []Event
	// One failure each from 100 addresses for one user.
	for i := 0; i < 100; i++ {
		a, b, _ := r.authFailure(Event{Kind: KindAuthFail, Remote: "10.1.0." + itoa(i), User: "admin"}, t0.Add(time.Duration(i)*time.Second))
		if len(b) != 0 {
			t.Fatalf("user rule blocked without block configured: %+v", b)
		}
		alerts = append(alerts, a...)
	}
	if len(alerts) != 1 || alerts[0].Rule != RuleBruteUser || alerts[0].Key != "admin" {
		t.Fatalf("alerts = %+v", alerts)
	}
	if r.userBlocked("admin", t0.Add(2*time.Minute)) {
		t.Error("user blocked by default")
	}

	r = testRules(func(c *Config) { c.UserBruteForce.Block = time.Minute })
	_, blocks, _ := fails(r, "", "admin", 20, t0, time.Second)
	if len(blocks) != 1 || !r.userBlocked("admin", t0.Add(30*time.Second)) {
		t.Errorf("user block: %+v", blocks)
	}
	if r.userBlocked("admin", t0.Add(2*time.Minute)) {
		t.Error("user block did not lift")
	}
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

func TestPlainRule(t *testing.T) {
	r := testRules(func(c *Config) { c.Trusted = []string{"127.0.0.1/32", "192.168.0.0/16"} })
	cases := []struct {
		remote, tls string
		alert       bool
	}{
		{"127.0.0.1:5", "none", false},
		{"192.168.1.1:5", "none", false},
		{"127.0.0.2:5", "none", true},
		{"127.0.0.2:6", "none", false}, // same address within the cooldown
		{"203.0.113.7:5", "1.3", false},
		{"203.0.113.7:5", "", false}, // unknown TLS state: no claim
		{"[2001:db8::1]:5", "none", true},
	}
	for _, c := range cases {
		alerts, _ := r.connect(Event{Kind: KindConnect, Remote: c.remote, TLS: c.tls, Protocol: "mqtt"}, t0)
		if (len(alerts) == 1) != c.alert {
			t.Errorf("%s tls=%q: alerts %+v, want alert=%v", c.remote, c.tls, alerts, c.alert)
		}
	}
	// After the cooldown the address alerts again, counting what was suppressed.
	alerts, _ := r.connect(Event{Kind: KindConnect, Remote: "127.0.0.2:7", TLS: "none"}, t0.Add(16*time.Minute))
	if len(alerts) != 1 || alerts[0].Count != 2 {
		t.Errorf("after cooldown: %+v, want one alert with count 2", alerts)
	}
}

func TestOldVersionRule(t *testing.T) {
	r := testRules(func(c *Config) { c.MinVersions = []string{"go:1.50.0", "edge:0.4.0"} })
	if a, _ := r.connect(Event{Kind: KindConnect, Lang: "go", Version: "1.49.9", ClientID: "c"}, t0); len(a) != 1 || a[0].Rule != RuleOldVersion {
		t.Errorf("old go client: %+v", a)
	}
	if a, _ := r.connect(Event{Kind: KindConnect, Lang: "go", Version: "1.55.0", ClientID: "c"}, t0); len(a) != 0 {
		t.Errorf("new go client: %+v", a)
	}
	if a, _ := r.connect(Event{Kind: KindConnect, Lang: "python3", Version: "0.1", ClientID: "c"}, t0); len(a) != 0 {
		t.Errorf("language without minimum: %+v", a)
	}
	if _, ok := r.oldVersion(Event{Kind: KindVersion, Lang: "edge", Edge: "e1", Version: "0.3.9"}, "edge", t0); !ok {
		t.Error("old edge not alerted")
	}
	if _, ok := r.oldVersion(Event{Kind: KindVersion, Lang: "edge", Edge: "e1", Version: "dev"}, "edge", t0); ok {
		t.Error("unparsable edge version alerted")
	}
}

func TestRoomBounded(t *testing.T) {
	r := testRules(func(c *Config) { c.MaxTracked = 50 })
	for i := 0; i < 5000; i++ {
		r.authFailure(Event{Kind: KindAuthFail, Remote: "10.2." + itoa(i/250) + "." + itoa(i%250), User: "u" + itoa(i)}, t0)
	}
	if len(r.addrFails) > 50 || len(r.userFails) > 50 {
		t.Errorf("tables grew to %d / %d entries, bound 50", len(r.addrFails), len(r.userFails))
	}
}

type memSink struct {
	mu  sync.Mutex
	evs []Event
}

func (s *memSink) Emit(_ context.Context, ev Event) error {
	s.mu.Lock()
	s.evs = append(s.evs, ev)
	s.mu.Unlock()
	return nil
}

func (s *memSink) all() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.evs...)
}

func (s *memSink) count(f func(Event) bool) int {
	n := 0
	for _, e := range s.all() {
		if f(e) {
			n++
		}
	}
	return n
}

// TestAuditorBlockLifts runs the auditor's own timers in a synctest bubble:
// a block lifts itself, announces it with an unblock event and calls the
// OnBlock hook both times.
func TestAuditorBlockLifts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.AddrBruteForce = BruteForce{Threshold: 3, Window: time.Minute, Block: 30 * time.Second}
		sink := &memSink{}
		a, err := New(cfg, Options{Sink: sink, Observer: "e1"})
		if err != nil {
			t.Fatal(err)
		}
		var hookMu sync.Mutex
		var hooked []Block
		a.OnBlock(func(b Block) { hookMu.Lock(); hooked = append(hooked, b); hookMu.Unlock() })
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		for i := 0; i < 5; i++ {
			a.Report(Event{Kind: KindAuthFail, Remote: "198.51.100.9:1234", User: "bob"})
		}
		synctest.Wait()
		if !a.Blocked("198.51.100.9") || !a.Blocked("198.51.100.9:5555") {
			t.Fatal("not blocked after 3 failures")
		}
		time.Sleep(31 * time.Second)
		synctest.Wait()
		if a.Blocked("198.51.100.9") {
			t.Fatal("block did not lift")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindAlert && e.Rule == RuleBruteAddr }); n != 1 {
			t.Errorf("%d alerts, want 1", n)
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindAuthFail }); n != 3 {
			t.Errorf("%d auth_failure events, want 3", n)
		}
		un := sink.count(func(e Event) bool { return e.Kind == KindUnblock && e.Key == "198.51.100.9" && e.Count == 2 })
		if un != 1 {
			t.Errorf("unblock events: %+v", sink.all())
		}
		hookMu.Lock()
		defer hookMu.Unlock()
		if len(hooked) != 2 || hooked[0].Lifted || !hooked[1].Lifted {
			t.Errorf("hook saw %+v, want a block then its lifting", hooked)
		}
		for _, e := range sink.all() {
			if e.Observer != "e1" {
				t.Errorf("event without observer: %+v", e)
			}
		}
	})
}

// TestAuditorOwnerReports: unknown edges and unsigned datagrams give one
// event and one alert per key and cooldown, whatever their rate.
func TestAuditorOwnerReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MinVersions = []string{"edge:0.4.0"}
		sink := &memSink{}
		a, err := New(cfg, Options{Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		for i := 0; i < 500; i++ {
			a.UnsignedDatagram("192.0.2.10:40000")
		}
		a.UnsignedDatagram("192.0.2.11:40000")
		for i := 0; i < 50; i++ {
			a.UnknownEdge("rogue", "192.0.2.20:5000", "unlisted-edge")
		}
		for i := 0; i < 20; i++ {
			a.EdgeVersion("e1", "0.3.0", "192.0.2.30:1")
		}
		a.EdgeVersion("e1", "0.5.0", "192.0.2.30:1")
		synctest.Wait()
		time.Sleep(16 * time.Minute)
		a.UnsignedDatagram("192.0.2.10:40000")
		synctest.Wait()
		cancel()
		<-done
		alerts := map[Rule]int{}
		for _, e := range sink.all() {
			if e.Kind == KindAlert {
				alerts[e.Rule]++
			}
		}
		if alerts[RuleUnsigned] != 3 || alerts[RuleUnknown] != 1 || alerts[RuleOldVersion] != 1 {
			t.Errorf("alerts %v, want unsigned 3 (two sources, then again after the cooldown), unknown 1, old_version 1", alerts)
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindAlert && e.Rule == RuleUnsigned && e.Count == 500 }); n != 1 {
			t.Error("the alert after the cooldown does not count the 499 suppressed datagrams")
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindVersion }); n != 2 {
			t.Errorf("%d version events, want 2 (one per distinct version)", n)
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindUnsigned }); n != 3 {
			t.Errorf("%d unsigned events, want 3", n)
		}
	})
}

// TestAuditorEdgeStoreFull: an edge's growing store-full count gives one
// store_full event per growth and one critical alert per edge and
// cooldown; zero, an unchanged count and a restarted edge give none.
func TestAuditorEdgeStoreFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &memSink{}
		a, err := New(DefaultConfig(), Options{Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		a.EdgeStoreFull("e1", 0) // nothing refused
		a.EdgeStoreFull("e1", 5)
		a.EdgeStoreFull("e1", 5) // heartbeat again, nothing new
		a.EdgeStoreFull("e1", 9) // more refused, within the cooldown
		a.EdgeStoreFull("e2", 1)
		a.EdgeStoreFull("e1", 2) // e1 restarted: counts again from 0
		synctest.Wait()
		time.Sleep(16 * time.Minute)
		a.EdgeStoreFull("e1", 3)
		synctest.Wait()
		cancel()
		<-done
		alerts := map[string]int{}
		for _, e := range sink.all() {
			if e.Kind == KindAlert && e.Rule == RuleStoreFull {
				if e.Severity != SeverityCritical {
					t.Errorf("alert severity %q", e.Severity)
				}
				alerts[e.Key]++
			}
		}
		if alerts["e1"] != 2 || alerts["e2"] != 1 {
			t.Errorf("store-full alerts %v, want e1 2 (then again after the cooldown), e2 1", alerts)
		}
		if n := sink.count(func(e Event) bool { return e.Kind == KindStoreFull }); n != 4 {
			t.Errorf("%d store_full events, want 4 (e1 5, e1 9, e2 1, e1 3)", n)
		}
	})
}
