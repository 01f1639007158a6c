package event

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTopicToSubject(t *testing.T) {
	cases := []struct {
		topic, subject string
	}{
		{"logging/hare", "logging.hare"},
		{"a", "a"},
		{"a.b/c", "a//b.c"},
		{"/a", "/.a"},
		{"a/", "a./"},
		{"a//b", "a./.b"},
		{"résumé/ü", "résumé.ü"},
	}
	for _, c := range cases {
		t.Run(c.topic, func(t *testing.T) {
			got, err := TopicToSubject(c.topic)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.subject {
				t.Errorf("TopicToSubject(%q) = %q, want %q", c.topic, got, c.subject)
			}
			if back := SubjectToTopic(got); back != c.topic {
				t.Errorf("SubjectToTopic(%q) = %q, want %q", got, back, c.topic)
			}
		})
	}
}

func TestTopicErrors(t *testing.T) {
	for _, bad := range []string{"", "a b", "a/+", "a/#", "x\x7f", "a*b", "a>"} {
		if _, err := TopicToSubject(bad); !errors.Is(err, ErrTopic) {
			t.Errorf("TopicToSubject(%q) err = %v, want ErrTopic", bad, err)
		}
	}
}

func TestFilterToSubjects(t *testing.T) {
	cases := []struct {
		filter string
		want   []string
		bad    bool
	}{
		{filter: "hare/#", want: []string{"hare", "hare.>"}},
		{filter: "#", want: []string{">"}},
		{filter: "logging/+", want: []string{"logging.*"}},
		{filter: "a/+/c", want: []string{"a.*.c"}},
		{filter: "a/b#", bad: true},
		{filter: "a/#/c", bad: true},
		{filter: "a+/b", bad: true},
	}
	for _, c := range cases {
		t.Run(c.filter, func(t *testing.T) {
			got, err := FilterToSubjects(c.filter)
			if c.bad {
				if err == nil {
					t.Fatalf("FilterToSubjects(%q) = %v, want error", c.filter, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("FilterToSubjects(%q) (-want +got):\n%s", c.filter, d)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	es, err := EdgeSubject(HareTopic)
	if err != nil {
		t.Fatal(err)
	}
	if es != "ev.logging.hare" {
		t.Errorf("EdgeSubject = %q", es)
	}
	in := IngestSubject("site-1", es)
	if in != "edge.site-1.logging.hare" {
		t.Errorf("IngestSubject = %q", in)
	}
	id, rest, err := SplitIngest(in)
	if err != nil || id != "site-1" || rest != "logging.hare" {
		t.Errorf("SplitIngest = %q %q %v", id, rest, err)
	}
	hs := HubSubject(id, rest)
	if hs != "hub.ev.site-1.logging.hare" {
		t.Errorf("HubSubject = %q", hs)
	}
	if id2, rest2, err := SplitHub(hs); err != nil || id2 != id || rest2 != rest {
		t.Errorf("SplitHub = %q %q %v", id2, rest2, err)
	}
	for _, bad := range []string{"edge.", "edge.x", "hub.ev.x", "other.x.y"} {
		if _, _, err := SplitIngest(bad); err == nil {
			t.Errorf("SplitIngest(%q) accepted", bad)
		}
	}
}

func TestMsgID(t *testing.T) {
	id := MsgID("site-1", "k3j2", 42)
	e, ep, seq, err := ParseMsgID(id)
	if err != nil || e != "site-1" || ep != "k3j2" || seq != 42 {
		t.Fatalf("ParseMsgID(%q) = %q %q %d %v", id, e, ep, seq, err)
	}
	for _, bad := range []string{"", "a:b", "a:b:c", ":b:1", "a::1", "a:b:1:2"} {
		if _, _, _, err := ParseMsgID(bad); err == nil {
			t.Errorf("ParseMsgID(%q) accepted", bad)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, ok := range []string{"a", "site-1", "0x", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123"} {
		if err := ValidID(ok); err != nil {
			t.Errorf("ValidID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "A", "a.b", "a b", "a*", "a>", "é", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234"} {
		if err := ValidID(bad); err == nil {
			t.Errorf("ValidID(%q) accepted", bad)
		}
	}
}

func FuzzTopic(f *testing.F) {
	for _, s := range []string{"logging/hare", "/a", "a/", "a//b", "a.b", "..", "//", "/./"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		s, err := TopicToSubject(topic)
		if err != nil {
			return
		}
		if back := SubjectToTopic(s); back != topic {
			t.Fatalf("round trip %q -> %q -> %q", topic, s, back)
		}
	})
}

func TestWithoutControl(t *testing.T) {
	in := map[string][]string{"Nats-Msg-Id": {"x"}, "nats-expected-stream": {"EDGE"}, "NATS-Rollup": {"all"}, "Warren-Edge": {"e"}, "Nat": {"short"}}
	out := WithoutControl(in, 1)
	if len(out) != 2 || out["Warren-Edge"][0] != "e" || out["Nat"][0] != "short" {
		t.Errorf("WithoutControl = %v, want only Warren-Edge and Nat", out)
	}
	if len(in) != 5 {
		t.Error("the input was changed")
	}
}

func TestHubOrigin(t *testing.T) {
	h := map[string][]string{HdrTopic: {"warren/audit/alert/x"}, HdrReceived: {"2026-12-06T01:02:03.5Z"}}
	edge, topic, at, err := HubOrigin("hub.ev.site-1.logging.hare", h)
	if err != nil || edge != "site-1" || topic != "logging/hare" || !at.Equal(time.Date(2026, 12, 6, 1, 2, 3, 5e8, time.UTC)) {
		t.Errorf("HubOrigin = %q, %q, %v, %v; want the subject's edge and topic whatever the header says", edge, topic, at, err)
	}
	if _, _, at, err := HubOrigin("hub.ev.e.t", map[string][]string{HdrReceived: {"yesterday"}}); err != nil || !at.IsZero() {
		t.Errorf("bad Warren-Received: %v, %v", at, err)
	}
	if _, _, _, err := HubOrigin("edge.e.t", nil); err == nil {
		t.Error("a subject outside hub.ev. accepted")
	}
}
