package notify

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMatchTopic(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"logging/hare", "logging/hare", true},
		{"logging/hare", "logging/hare/x", false},
		{"logging/hare", "logging", false},
		{"logging/+", "logging/hare", true},
		{"logging/+", "logging/hare/x", false},
		{"logging/+", "logging/", true}, // empty level
		{"+/hare", "logging/hare", true},
		{"+/+", "a/b", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"#", "a/b/c", true},
		{"#", "a", true},
		{"a/#", "a", true}, // parent level, as MQTT says
		{"a/#", "a/b/c", true},
		{"a/#", "ab/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"/a", "/a", true},
		{"+/a", "/a", true},
		{"a/b", "a.b", false},
		{"a.b/c", "a.b/c", true},
	}
	for _, c := range cases {
		if err := ValidFilter(c.filter); err != nil {
			t.Errorf("ValidFilter(%q) = %v", c.filter, err)
		}
		if got := MatchTopic(c.filter, c.topic); got != c.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
	for _, bad := range []string{"", "a/#/b", "a#", "a/b+", "#a", "+a/b"} {
		if ValidFilter(bad) == nil {
			t.Errorf("ValidFilter(%q) accepted", bad)
		}
	}
}

func FuzzMatchTopic(f *testing.F) {
	f.Add("a/+/#", "a/b/c")
	f.Add("#", "$x")
	f.Add("+/+", "/")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if ValidFilter(filter) != nil {
			return
		}
		got := MatchTopic(filter, topic)
		// A filter without wildcards matches exactly itself.
		if !strings.ContainsAny(filter, "+#") && got != (filter == topic) {
			t.Fatalf("MatchTopic(%q, %q) = %v", filter, topic, got)
		}
		// "#" matches every topic that does not start with '$'.
		if filter == "#" && got == strings.HasPrefix(topic, "$") {
			t.Fatalf("MatchTopic(#, %q) = %v", topic, got)
		}
	})
}

func TestFieldPath(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "user", want: []string{"user"}},
		{in: "a.b.c", want: []string{"a", "b", "c"}},
		{in: "a[b.c]", want: []string{"a", "b.c"}},
		{in: "a[b][c]", want: []string{"a", "b", "c"}},
		{in: "a[b].c", want: []string{"a", "b", "c"}},
		{in: "list.0", want: []string{"list", "0"}},
		{in: "[x]", want: []string{"x"}},
		{in: "", bad: true},
		{in: "a..b", bad: true},
		{in: "a.", bad: true},
		{in: ".a", bad: true},
		{in: "a[]", bad: true},
		{in: "a[b", bad: true},
		{in: "a]b", bad: true},
		{in: "a[b]c", bad: true},
	}
	for _, c := range cases {
		got, err := parseFieldPath(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("parseFieldPath(%q) = %q, want error", c.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseFieldPath(%q): %v", c.in, err)
			continue
		}
		if d := cmp.Diff(c.want, []string(got)); d != "" {
			t.Errorf("parseFieldPath(%q) (-want +got):\n%s", c.in, d)
		}
	}
}

func FuzzFieldPath(f *testing.F) {
	for _, s := range []string{"a.b", "a[b.c]", "a[0].b", "]["} {
		f.Add(s)
	}
	doc := decodeObject([]byte(`{"a":{"b":[1,{"c":2}]},"x.y":3}`))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseFieldPath(s)
		if err != nil {
			return
		}
		if len(p) == 0 {
			t.Fatalf("%q: empty path without error", s)
		}
		p.lookup(doc)
	})
}

func TestConditions(t *testing.T) {
	doc := decodeObject([]byte(`{"user":"root","n":5,"f":2.50,"ok":true,"nil":null,"a":{"b":{"c":"deep"}},"list":["x","y"],"s5":"5","rhost":"10.1.2.3","dotted.key":"v"}`))
	tr, fa := true, false
	cases := []struct {
		name string
		fm   FieldMatch
		want bool
	}{
		{"eq string", FieldMatch{Key: "user", Eq: "root"}, true},
		{"eq string no", FieldMatch{Key: "user", Eq: "jjolie"}, false},
		{"eq int", FieldMatch{Key: "n", Eq: 5}, true},
		{"eq int as float", FieldMatch{Key: "n", Eq: 5.0}, true},
		{"eq float", FieldMatch{Key: "f", Eq: 2.5}, true},
		{"eq number text", FieldMatch{Key: "n", Eq: "5"}, true},
		{"eq string number", FieldMatch{Key: "s5", Eq: 5}, true},
		{"eq bool", FieldMatch{Key: "ok", Eq: true}, true},
		{"eq bool no", FieldMatch{Key: "ok", Eq: false}, false},
		{"eq nested", FieldMatch{Key: "a.b.c", Eq: "deep"}, true},
		{"eq list index", FieldMatch{Key: "list.1", Eq: "y"}, true},
		{"eq list bracket", FieldMatch{Key: "list[0]", Eq: "x"}, true},
		{"eq dotted key", FieldMatch{Key: "[dotted.key]", Eq: "v"}, true},
		{"eq missing", FieldMatch{Key: "nope", Eq: "x"}, false},
		{"ne differs", FieldMatch{Key: "user", Ne: "backup"}, true},
		{"ne same", FieldMatch{Key: "user", Ne: "root"}, false},
		{"ne missing", FieldMatch{Key: "nope", Ne: "x"}, true},
		{"ne number", FieldMatch{Key: "n", Ne: 6}, true},
		{"regex", FieldMatch{Key: "rhost", Regex: `^10\.`}, true},
		{"regex no", FieldMatch{Key: "rhost", Regex: `^192\.`}, false},
		{"regex number", FieldMatch{Key: "n", Regex: `^[0-9]+$`}, true},
		{"regex missing", FieldMatch{Key: "nope", Regex: `.*`}, false},
		{"regex unanchored", FieldMatch{Key: "user", Regex: `oo`}, true},
		{"exists", FieldMatch{Key: "nil", Exists: &tr}, true},
		{"exists nested", FieldMatch{Key: "a.b", Exists: &tr}, true},
		{"not exists", FieldMatch{Key: "nope", Exists: &fa}, true},
		{"not exists present", FieldMatch{Key: "user", Exists: &fa}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cond, err := compileCondition(c.fm)
			if err != nil {
				t.Fatal(err)
			}
			if got := cond.match(doc); got != c.want {
				t.Errorf("match = %v, want %v", got, c.want)
			}
		})
	}
	// A payload that is not a JSON object: only ne and exists:false hold.
	for _, c := range cases {
		cond, _ := compileCondition(c.fm)
		want := c.fm.Ne != nil || (c.fm.Exists != nil && !*c.fm.Exists)
		if got := cond.match(nil); got != want {
			t.Errorf("%s on non-JSON: %v, want %v", c.name, got, want)
		}
	}
}

func TestMatcher(t *testing.T) {
	m, err := compileMatch(MatchConfig{
		Topic:  []string{"logging/hare", "auth/+"},
		Edge:   []string{"site-*", "home"},
		Source: []string{"udp"},
		Fields: []FieldMatch{{Key: "user", Ne: "backup"}},
	}, "m")
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvent("id", "logging/hare", "site-3", "udp", []byte(`{"user":"root"}`), nowForTest)
	if ok, why := m.match(ev, true); !ok {
		t.Fatalf("no match: %s", why)
	}
	for _, mod := range []func(*Event){
		func(e *Event) { e.Topic = "logging/other" },
		func(e *Event) { e.Edge = "office" },
		func(e *Event) { e.Source = "mqtt" },
		func(e *Event) {
			*e = *NewEvent("id", e.Topic, e.Edge, e.Source, []byte(`{"user":"backup"}`), nowForTest)
		},
	} {
		e := *ev
		mod(&e)
		if ok, why := m.match(&e, true); ok || why == "" {
			t.Errorf("matched %+v (why %q)", e, why)
		}
	}
}

// TestLiveMatchBuildsNoExplanation: live routing (explain false) gets no
// text for a route it does not take, and allocates nothing for it.
func TestLiveMatchBuildsNoExplanation(t *testing.T) {
	m, err := compileMatch(MatchConfig{Topic: []string{"backup/#"}, Edge: []string{"site-*"}}, "m")
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvent("id", "logging/hare", "site-1", "udp", []byte(`{"user":"x"}`), nowForTest)
	if ok, why := m.match(ev, false); ok || why != "" {
		t.Errorf("match(explain=false) = %v, %q; want false, \"\"", ok, why)
	}
	if _, why := m.match(ev, true); !strings.Contains(why, "logging/hare") {
		t.Errorf("match(explain=true) reason %q", why)
	}
	if n := testing.AllocsPerRun(100, func() { m.match(ev, false) }); n != 0 {
		t.Errorf("a live non-match allocates %v times", n)
	}
}
