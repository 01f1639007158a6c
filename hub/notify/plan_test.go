package notify

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/hub/notify/target"
)

func TestBuiltins(t *testing.T) {
	c := compileYAML(t, `
time_zone: Europe/Berlin
targets: {j: {type: log}}
routes:
  - targets: [j]
    title: "{topic}|{_edge}|{_source}|{_id}"
    format: "{_dtepoch} {_dtiso} {_ltiso} {_dthhmm} {_dthhmmss} {user} {payload}"
`)
	ev := NewEvent("e1", "logging/hare", "site-1", "udp", []byte(`{"user":"jjolie"}`), nowForTest)
	plans := c.plan(ev, planOpts{now: nowForTest})
	if len(plans) != 1 {
		t.Fatalf("plans = %d", len(plans))
	}
	m := plans[0].msg
	if m.Title != "logging/hare|site-1|udp|e1" {
		t.Errorf("title = %q", m.Title)
	}
	want := `1795511287 2026-11-24T09:08:07.654321Z 2026-11-24T10:08:07.654321 10:08 10:08:07 jjolie {"user":"jjolie"}`
	if m.Body != want {
		t.Errorf("body\n got %q\nwant %q", m.Body, want)
	}
	if m.ID != "e1/routes[0]/j" || m.Edge != "site-1" || m.Topic != "logging/hare" || string(m.Payload) != `{"user":"jjolie"}` || !m.Time.Equal(nowForTest) {
		t.Errorf("message = %+v", m)
	}
	if m.Fields["user"] != "jjolie" || m.Fields["_dthhmm"] != "10:08" {
		t.Errorf("fields = %v", m.Fields)
	}
}

// TestPayloadKeysWin: as in mqttwarn, a payload key shadows a built-in.
func TestPayloadKeysWin(t *testing.T) {
	c := compileYAML(t, "targets: {j: {type: log}}\nroutes: [{targets: [j], format: '{topic}'}]\n")
	ev := NewEvent("e1", "a/b", "e", "mqtt", []byte(`{"topic":"mine"}`), nowForTest)
	if got := c.plan(ev, planOpts{now: nowForTest})[0].msg.Body; got != "mine" {
		t.Errorf("body = %q", got)
	}
}

func TestMissingKeyPolicies(t *testing.T) {
	const tmpl = `
targets: {j: {type: log}}
routes:
  - targets: [j]
    on_missing: %s
    title: "login {user}"
    format: "{user} from {rhost}"
    priority: "{prio}"
`
	ev := NewEvent("e1", "logging/hare", "site-1", "udp", []byte(`{"user":"jjolie"}`), nowForTest)
	cases := []struct {
		policy, title, body string
		dropped             bool
	}{
		{policy: "raw", title: "login jjolie", body: `{"user":"jjolie"}`},
		{policy: "placeholder", title: "login jjolie", body: "jjolie from {rhost}"},
		{policy: "drop", dropped: true},
	}
	for _, tc := range cases {
		t.Run(tc.policy, func(t *testing.T) {
			c := compileYAML(t, strings.Replace(tmpl, "%s", tc.policy, 1))
			met, _ := newMetrics(nil)
			rep := &Report{}
			plans := c.plan(ev, planOpts{now: nowForTest, report: rep, met: met})
			if tc.dropped {
				if len(plans) != 0 || len(rep.Deliveries) != 1 || !rep.Deliveries[0].Dropped || rep.Deliveries[0].Stage != StageRender {
					t.Fatalf("not dropped at render: %+v", rep.Deliveries)
				}
				if !strings.Contains(rep.Deliveries[0].Reason, `missing key "prio"`) {
					t.Errorf("reason = %q", rep.Deliveries[0].Reason)
				}
				return
			}
			if len(plans) != 1 {
				t.Fatalf("plans = %d", len(plans))
			}
			m := plans[0].msg
			if m.Title != tc.title || m.Body != tc.body || m.Priority != 0 {
				t.Errorf("got %q / %q / %d", m.Title, m.Body, m.Priority)
			}
			// Two misses (priority, format) are reported and counted.
			if n := len(rep.Deliveries[0].Warnings); n != 2 {
				t.Errorf("warnings = %q", rep.Deliveries[0].Warnings)
			}
			if got := counterValue(t, met.missing.WithLabelValues("routes[0]")); got != 2 {
				t.Errorf("missing_keys_total = %v", got)
			}
		})
	}
}

func TestRawTitleFallsBackToTopic(t *testing.T) {
	c := compileYAML(t, "targets: {j: {type: log}}\nroutes: [{targets: [j], title: '{nope}'}]\n")
	m := c.plan(NewEvent("e", "a/b", "e", "mqtt", []byte("plain text"), nowForTest), planOpts{now: nowForTest})[0].msg
	if m.Title != "a/b" || m.Body != "plain text" {
		t.Errorf("got %q / %q", m.Title, m.Body)
	}
}

func TestTemplateStyle(t *testing.T) {
	c := compileYAML(t, `
targets: {j: {type: log}}
routes:
  - targets: [j]
    style: template
    title: '{{ upper .user }} on {{ .hostname }}'
    format: '{{ .user }}{{ if .rhost }} from {{ .rhost }}{{ end }} {{ get . "a.b" "none" }}'
    priority: '{{ if eq .user "root" }}2{{ else }}0{{ end }}'
`)
	m := c.plan(hareEvent("e", "root", nowForTest), planOpts{now: nowForTest})[0].msg
	if m.Title != "ROOT on vm" || m.Body != "root from 198.51.100.7 none" || m.Priority != 2 {
		t.Errorf("got %q / %q / %d", m.Title, m.Body, m.Priority)
	}
	// A missing key with the template style follows on_missing too.
	m = c.plan(NewEvent("e", "x", "e", "mqtt", []byte(`{"user":"x"}`), nowForTest), planOpts{now: nowForTest})[0].msg
	if m.Title != "x" { // raw: title falls back to the topic
		t.Errorf("title = %q", m.Title)
	}
}

func TestNewlineEscape(t *testing.T) {
	c := compileYAML(t, "targets: {j: {type: log}}\nroutes: [{targets: [j], format: 'a\\nb {user}'}]\n")
	m := c.plan(hareEvent("e", "u", nowForTest), planOpts{now: nowForTest})[0].msg
	if m.Body != "a\nb u" {
		t.Errorf("body = %q", m.Body)
	}
}

func TestBadPriority(t *testing.T) {
	c := compileYAML(t, "targets: {j: {type: log}}\nroutes: [{targets: [j], priority: '{user}'}]\n")
	rep := &Report{}
	m := c.plan(hareEvent("e", "root", nowForTest), planOpts{now: nowForTest, report: rep})[0].msg
	if m.Priority != 0 || len(rep.Deliveries[0].Warnings) != 1 {
		t.Errorf("priority = %d, warnings %q", m.Priority, rep.Deliveries[0].Warnings)
	}
}

// TestRouteTree follows the example configuration through the tree.
func TestRouteTree(t *testing.T) {
	t.Setenv("WARREN_TEST_PUSHOVER_TOKEN", "azGDORePK8gMaC0QOYAMyEEuzJnyUi")
	cfg, err := LoadFile("testdata/notify.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	type d struct{ Route, Target string }
	deliveries := func(ev *Event) ([]d, *Report) {
		rep := &Report{}
		var out []d
		for _, p := range c.plan(ev, planOpts{now: ev.Received, report: rep, dedup: newDedupState()}) {
			out = append(out, d{p.route, p.target})
		}
		return out, rep
	}
	// Tuesday 10:08 Berlin: no quiet hours. root goes to the child route.
	got, rep := deliveries(hareEvent("e1", "root", nowForTest))
	want := []d{{"hare", "logins"}, {"hare", "journal"}, {"hare-root", "phone"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("root (-want +got):\n%s\n%s", diff, rep)
	}
	var matched []string
	for _, s := range rep.Routes {
		if s.Matched {
			matched = append(matched, s.Route)
		}
	}
	if strings.Join(matched, ",") != "hare,hare-page,hare-root" {
		t.Errorf("matched = %v", matched)
	}
	// Another user stays on hare-page (the child does not match).
	got, _ = deliveries(hareEvent("e2", "jjolie", nowForTest))
	want = []d{{"hare", "logins"}, {"hare", "journal"}, {"hare-page", "phone"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jjolie (-want +got):\n%s", diff)
	}
	// The backup user fails hare-page's field condition.
	got, _ = deliveries(hareEvent("e3", "backup", nowForTest))
	want = []d{{"hare", "logins"}, {"hare", "journal"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backup (-want +got):\n%s", diff)
	}
	// Saturday: quiet all day; priority 1 is muted, root's priority 2 bypasses.
	sat := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	got, rep = deliveries(hareEvent("e4", "jjolie", sat))
	if len(got) != 2 {
		t.Errorf("saturday jjolie: %v", got)
	}
	if last := rep.Deliveries[len(rep.Deliveries)-1]; !last.Dropped || last.Stage != StageQuiet {
		t.Errorf("not muted: %+v", last)
	}
	rep = &Report{}
	if n := len(c.plan(hareEvent("e5", "root", sat), planOpts{now: sat, report: rep})); n != 3 {
		t.Errorf("saturday root: %d deliveries\n%s", n, rep)
	}
	// An event no route takes.
	_, rep = deliveries(NewEvent("e6", "other/topic", "site-1", "mqtt", []byte("x"), nowForTest))
	if rep.Dropped != "no route matched" || len(rep.Routes) != 3 {
		t.Errorf("unrouted report: %+v", rep)
	}
	// The template-style route matches on edge globs.
	got, _ = deliveries(NewEvent("e7", "site/a/b", "site-9", "mqtt", []byte("hello"), nowForTest))
	if len(got) != 1 || got[0].Route != "routes[2]" {
		t.Errorf("site route: %v", got)
	}
	if s := rep.String(); !strings.Contains(s, "no route matched") {
		t.Errorf("String() = %s", s)
	}
}

func TestRouteWithoutTargets(t *testing.T) {
	c := compileYAML(t, `
targets: {j: {type: log}}
routes:
  - name: parent
    match: {topic: "a/#"}
    routes:
      - {name: child, match: {topic: a/b}, targets: [j]}
`)
	rep := &Report{}
	plans := c.plan(NewEvent("e", "a/c", "e", "mqtt", nil, nowForTest), planOpts{now: nowForTest, report: rep})
	if len(plans) != 0 || len(rep.Deliveries) != 1 || rep.Deliveries[0].Stage != StageRoute {
		t.Errorf("plans %d, report %+v", len(plans), rep.Deliveries)
	}
}

// TestDedupCooldown uses a synctest bubble: the clock only moves when the
// test sleeps.
func TestDedupCooldown(t *testing.T) {
	c := compileYAML(t, `
targets: {j: {type: log}}
routes:
  - name: page
    targets: [j]
    format: "{user}@{hostname} from {rhost}"
    dedup: {key: "{user}@{hostname}@{rhost}", window: 10m}
`)
	synctest.Test(t, func(t *testing.T) {
		st := newDedupState()
		send := func(id, user string) []planned {
			return c.plan(hareEvent(id, user, time.Now()), planOpts{now: time.Now(), dedup: st})
		}
		if n := len(send("e1", "root")); n != 1 {
			t.Fatalf("first: %d", n)
		}
		time.Sleep(time.Minute)
		if n := len(send("e2", "root")); n != 0 {
			t.Fatalf("repeat not suppressed")
		}
		if n := len(send("e3", "jjolie")); n != 1 {
			t.Fatalf("other key suppressed")
		}
		// A redelivery of the event that went out is not its own repeat.
		if n := len(send("e1", "root")); n != 1 {
			t.Fatalf("redelivery suppressed")
		}
		time.Sleep(5 * time.Minute)
		send("e4", "root")
		send("e4", "root") // a redelivered suppressed event counts once
		// A dry run peeks without counting.
		c.plan(hareEvent("e5", "root", time.Now()), planOpts{now: time.Now(), dedup: st, dry: true})
		time.Sleep(4*time.Minute + time.Second) // window over
		p := send("e6", "root")
		if len(p) != 1 {
			t.Fatalf("after window: %d", len(p))
		}
		if want := "root@vm from 198.51.100.7\n(2 similar suppressed)"; p[0].msg.Body != want {
			t.Errorf("body = %q, want %q", p[0].msg.Body, want)
		}
		if p[0].msg.Fields["_suppressed"] != 2 {
			t.Errorf("_suppressed = %v", p[0].msg.Fields["_suppressed"])
		}
		// The count was reported; the next window starts from zero.
		time.Sleep(11 * time.Minute)
		if p := send("e7", "root"); len(p) != 1 || strings.Contains(p[0].msg.Body, "suppressed") {
			t.Errorf("second window: %+v", p)
		}
	})
}

// TestQuietHoursClock moves a synctest clock across a quiet interval.
func TestQuietHoursClock(t *testing.T) {
	c := compileYAML(t, `
time_zone: UTC
targets: {j: {type: log}}
quiet_hours:
  night: {time_zone: Europe/Berlin, intervals: [{start: "22:00", end: "07:00"}]}
routes:
  - {targets: [j], quiet: [night], quiet_bypass_priority: 2, priority: "{p}"}
`)
	synctest.Test(t, func(t *testing.T) {
		// The bubble starts at 2000-01-01 00:00 UTC = 01:00 Berlin: quiet.
		send := func(p int) int {
			ev := NewEvent("e", "t", "e", "mqtt", []byte(`{"p":`+string(rune('0'+p))+`}`), time.Now())
			return len(c.plan(ev, planOpts{now: time.Now()}))
		}
		if send(1) != 0 || send(2) != 1 {
			t.Fatalf("01:00: want priority 1 muted, 2 through")
		}
		time.Sleep(5*time.Hour + 59*time.Minute) // 06:59 Berlin
		if send(0) != 0 {
			t.Fatal("06:59 not quiet")
		}
		time.Sleep(time.Minute) // 07:00
		if send(0) != 1 {
			t.Fatal("07:00 still quiet")
		}
		time.Sleep(15 * time.Hour) // 22:00
		if send(0) != 0 {
			t.Fatal("22:00 not quiet")
		}
	})
}

func TestQuietIntervals(t *testing.T) {
	mk := func(start, end string, days ...string) *quietHours {
		q, err := compileQuiet("q", QuietHoursConfig{Intervals: []QuietInterval{{Start: start, End: end, Weekdays: days}}}, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	// 2026-11-23 is a Monday.
	at := func(day, h, m int) time.Time { return time.Date(2026, 11, 23+day, h, m, 0, 0, time.UTC) }
	cases := []struct {
		q    *quietHours
		t    time.Time
		want bool
	}{
		{mk("09:00", "17:00"), at(0, 8, 59), false},
		{mk("09:00", "17:00"), at(0, 9, 0), true},
		{mk("09:00", "17:00"), at(0, 17, 0), false},
		{mk("22:00", "07:00"), at(0, 23, 0), true},
		{mk("22:00", "07:00"), at(1, 6, 59), true},
		{mk("22:00", "07:00"), at(1, 7, 0), false},
		{mk("22:00", "07:00", "fri"), at(4, 23, 0), true},  // Friday night
		{mk("22:00", "07:00", "fri"), at(5, 3, 0), true},   // its Saturday morning
		{mk("22:00", "07:00", "fri"), at(5, 23, 0), false}, // Saturday night
		{mk("22:00", "07:00", "fri"), at(4, 3, 0), false},  // Friday morning belongs to Thursday
		{mk("00:00", "24:00", "sat-sun"), at(6, 12, 0), true},
		{mk("00:00", "24:00", "sat-sun"), at(0, 12, 0), false},
		{mk("00:00", "24:00", "fri-mon"), at(0, 12, 0), true}, // wrapping range
		{mk("08:00", "08:00"), at(2, 3, 0), true},             // start == end: all day
	}
	for i, c := range cases {
		if got := c.q.active(c.t); got != c.want {
			t.Errorf("case %d: %v at %s = %v", i, c.q.intervals[0].src, c.t.Format("Mon 15:04"), got)
		}
	}
}

// TestRecordCarriesThePayloadOnce: the outbox record leaves out the text
// copy of the payload in its fields and puts it back when read, so a large
// payload fits and templates still see {payload}.
func TestRecordCarriesThePayloadOnce(t *testing.T) {
	payload := []byte(`{"user":"jo","blob":"` + strings.Repeat("x", 300<<10) + `"}`)
	ev := NewEvent("e1", "logging/hare", "site-1", "udp", payload, nowForTest)
	fields := renderData(ev, time.UTC)
	p := planned{eventID: "e1", route: "r", target: "t", msg: &target.Message{ID: "e1/r/t", Topic: ev.Topic, Edge: ev.Edge, Payload: payload, Fields: fields}}
	b, err := encodeRecord(recordOf(p))
	if err != nil {
		t.Fatalf("a %d KiB payload: %v", len(payload)>>10, err)
	}
	// The payload travels as base64 (4/3) and its keys as fields (1); with
	// the text copy too it was 10/3 and this record was over maxRecord.
	if len(b) > 5*len(payload)/2 {
		t.Errorf("record %d bytes for a %d-byte payload: the payload is carried twice", len(b), len(payload))
	}
	if _, ok := fields[fieldPayload]; !ok {
		t.Error("recordOf changed the planned message's fields")
	}
	r, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	m := r.message()
	if m.Fields[fieldPayload] != string(payload) || m.Fields["user"] != "jo" || m.Fields["blob"] == nil {
		t.Errorf("fields after the round trip lack payload, user or blob")
	}
}
