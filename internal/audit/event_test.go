package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeDecode(t *testing.T) {
	until := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cases := []Event{
		{Kind: KindConnect, Time: until, Observer: "edge1", Source: SourceNATS, Protocol: "mqtt", Listener: "mqtt", Port: 1883,
			Remote: "127.0.0.1:5000", ClientID: "dev1", User: "alice", TLS: "none", CID: 7},
		{Kind: KindAlert, Time: until, Rule: RuleBruteAddr, Severity: SeverityCritical, Key: "127.0.0.2", Count: 10, Until: &until,
			Message: "10 failed logins"},
		{Kind: KindTraffic, Time: until, Clients: []Traffic{{Name: "dev1", In: 3, Out: 4}}, Topics: []Traffic{{Name: "a/b", In: 3}}},
	}
	for _, ev := range cases {
		t.Run(string(ev.Kind), func(t *testing.T) {
			b, err := Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(ev, got); d != "" {
				t.Errorf("round trip (-want +got):\n%s", d)
			}
		})
	}
}

func TestEncodeOmitsEmpty(t *testing.T) {
	b, err := Encode(Event{Kind: KindUnsigned, Time: time.Unix(0, 0).UTC(), Remote: "10.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"unsigned_datagram","time":"1970-01-01T00:00:00Z","remote":"10.0.0.1:9"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	if _, err := Encode(Event{}); err == nil {
		t.Error("Encode accepted an event without kind")
	}
}

func TestDecodeErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"not json":  "hello",
		"no kind":   `{"time":"2026-01-01T00:00:00Z"}`,
		"bad time":  `{"kind":"connect","time":"yesterday"}`,
		"bad count": `{"kind":"alert","count":"ten"}`,
		"too big":   `{"kind":"connect","message":"` + strings.Repeat("x", maxPayload) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(in)); err == nil {
				t.Errorf("Decode(%.40q) succeeded", in)
			}
		})
	}
}

func TestStoreTopic(t *testing.T) {
	cases := map[string]Event{
		"warren/audit/connect":                 {Kind: KindConnect},
		"warren/audit/auth_failure":            {Kind: KindAuthFail},
		"warren/audit/alert/brute_force_addr":  {Kind: KindAlert, Rule: RuleBruteAddr},
		"warren/audit/alert/unsigned_datagram": {Kind: KindAlert, Rule: RuleUnsigned},
		"warren/audit/alert":                   {Kind: KindAlert},
		"warren/audit/permission_violation":    {Kind: KindPermission},
	}
	for want, ev := range cases {
		if got := ev.StoreTopic(); got != want {
			t.Errorf("%+v: StoreTopic = %q, want %q", ev, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"kind":"connect","time":"2026-01-01T00:00:00Z","remote":"1.2.3.4:5"}`))
	f.Add([]byte(`{"kind":"alert","rule":"brute_force_addr","until":"2026-01-01T00:00:00Z","clients":[{"name":"x","in":1}]}`))
	f.Add([]byte(`{"kind":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		if ev.Kind == "" {
			t.Fatal("decoded an event without kind")
		}
		out, err := Encode(ev)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("decode of re-encoded event: %v", err)
		}
	})
}
