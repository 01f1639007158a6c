package audit

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLogLine(t *testing.T) {
	cases := []struct {
		name string
		line string
		want LogLine
		ok   bool
	}{
		{"mqtt violation", `127.0.0.1:50844 - mid:8 - "dev1" - Publish Violation - Subject "secret.x"`,
			LogLine{Remote: "127.0.0.1:50844", Conn: "mid", CID: 8, Names: []string{"dev1"}, Text: `Publish Violation - Subject "secret.x"`}, true},
		{"nats two names", `127.0.0.1:4 - cid:12 - "v1.55.0:go:natsy" - "APP/alice" - Subscription Violation - Subject "x", SID 1`,
			LogLine{Remote: "127.0.0.1:4", Conn: "cid", CID: 12, Names: []string{"v1.55.0:go:natsy", "APP/alice"}, Text: `Subscription Violation - Subject "x", SID 1`}, true},
		{"tls no names", `127.0.0.1:46016 - mid:25 - TLS handshake error: tls: client didn't provide a certificate`,
			LogLine{Remote: "127.0.0.1:46016", Conn: "mid", CID: 25, Text: "TLS handshake error: tls: client didn't provide a certificate"}, true},
		{"v6", `[::1]:1234 - cid:3 - authentication error`,
			LogLine{Remote: "[::1]:1234", Conn: "cid", CID: 3, Text: "authentication error"}, true},
		{"escaped name", `127.0.0.1:1 - mid:2 - "a\"b" - Publish Violation - Subject "q"`,
			LogLine{Remote: "127.0.0.1:1", Conn: "mid", CID: 2, Names: []string{`a"b`}, Text: `Publish Violation - Subject "q"`}, true},
		{"with logger prefix", `2026/11/22 22:11:15.906152 [ERR] 127.0.0.1:58076 - mid:5 - "brute1" - authentication error - User "hub"`,
			LogLine{Remote: "127.0.0.1:58076", Conn: "mid", CID: 5, Names: []string{"brute1"}, Text: `authentication error - User "hub"`}, true},
		{"server line", "Server is ready", LogLine{}, false},
		{"plaintext warning", "Plaintext passwords detected, use nkeys or bcrypt", LogLine{}, false},
		{"no text", `127.0.0.1:1 - cid:1`, LogLine{}, false},
		{"only name", `127.0.0.1:1 - cid:1 - "x"`, LogLine{}, false},
		{"bad kind", `127.0.0.1:1 - xid:1 - y`, LogLine{}, false},
		{"bad cid", `127.0.0.1:1 - cid:z - y`, LogLine{}, false},
		{"bad host", `host:1 - cid:1 - y`, LogLine{}, false},
		{"bad port", `1.2.3.4:99999 - cid:1 - y`, LogLine{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ParseLogLine(c.line)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, c.ok, got)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestClassifyLogLine(t *testing.T) {
	cases := []struct {
		line string
		want Event
	}{
		{`127.0.0.1:50844 - mid:8 - "dev1" - Publish Violation - Subject "secret.x"`,
			Event{Kind: KindPermission, Reason: "publish", Subject: "secret.x", Remote: "127.0.0.1:50844", CID: 8, ClientID: "dev1", Protocol: "mqtt", Source: SourceNATS}},
		{`127.0.0.1:9 - cid:4 - "v1:go" - Publish Violation - Reply "_INBOX.x"`,
			Event{Kind: KindPermission, Reason: "publish_reply", Subject: "_INBOX.x", Remote: "127.0.0.1:9", CID: 4, Protocol: "nats", Source: SourceNATS}},
		{`127.0.0.1:60910 - mid:22 - "edge1s" - Subscription Violation - Subject "cmd.edge1", SID cmd.edge1 fwc`,
			Event{Kind: KindPermission, Reason: "subscribe", Subject: "cmd.edge1", Remote: "127.0.0.1:60910", CID: 22, ClientID: "edge1s", Protocol: "mqtt", Source: SourceNATS}},
		{`127.0.0.1:58076 - mid:5 - "brute1" - authentication error - User "hub"`,
			Event{Kind: KindAuthFail, Reason: "authentication error", User: "hub", Remote: "127.0.0.1:58076", CID: 5, ClientID: "brute1", Protocol: "mqtt", Source: SourceNATS}},
		{`127.0.0.1:58092 - mid:6 - "anon1" - authentication error`,
			Event{Kind: KindAuthFail, Reason: "authentication error", Remote: "127.0.0.1:58092", CID: 6, ClientID: "anon1", Protocol: "mqtt", Source: SourceNATS}},
		{`127.0.0.1:46018 - mid:26 - TLS handshake error: tls: client offered only unsupported versions: [302 301]`,
			Event{Kind: KindTLSFailure, Reason: "tls: client offered only unsupported versions: [302 301]", Remote: "127.0.0.1:46018", CID: 26, Protocol: "mqtt", Source: SourceNATS}},
		{`127.0.0.1:57758 - mid:147 - "myclientid2" - Replacing old client "127.0.0.1:46672 - mid:131 - \"myclientid2\"" since both have the same client ID "myclientid2"`,
			Event{Kind: KindTakeover, Reason: "replaced 127.0.0.1:46672 (mid:131)", Remote: "127.0.0.1:57758", CID: 147, ClientID: "myclientid2", Protocol: "mqtt", Source: SourceNATS}},
	}
	for _, c := range cases {
		l, ok := ParseLogLine(c.line)
		if !ok {
			t.Fatalf("ParseLogLine(%q) failed", c.line)
		}
		got, ok := ClassifyLogLine(l)
		if !ok {
			t.Fatalf("ClassifyLogLine(%q) failed", c.line)
		}
		if d := cmp.Diff(c.want, got); d != "" {
			t.Errorf("%s\n(-want +got)\n%s", c.line, d)
		}
	}
}

// TestLogFixture runs every line nats-server 2.15.2 wrote in a captured
// session through the parser: the audit-relevant ones are classified,
// the others are not.
func TestLogFixture(t *testing.T) {
	f, err := os.Open("testdata/nats-2.15.2-mqtt-error-lines.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[Kind]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		l, ok := ParseLogLine(line)
		if !ok {
			continue
		}
		if ev, ok := ClassifyLogLine(l); ok {
			counts[ev.Kind]++
			if ev.Remote == "" || ev.CID == 0 {
				t.Errorf("%q: no remote or cid: %+v", line, ev)
			}
		}
		if interestingLog(line) {
			if _, ok := ClassifyLogLine(l); !ok && !strings.Contains(line, "unable to connect") {
				t.Errorf("interesting line not classified: %q", line)
			}
		}
	}
	want := map[Kind]int{KindPermission: 2, KindTLSFailure: 2, KindTakeover: 2, KindAuthFail: 2}
	if d := cmp.Diff(want, counts); d != "" {
		t.Errorf("kinds (-want +got)\n%s", d)
	}
}

func FuzzParseLogLine(f *testing.F) {
	f.Add(`127.0.0.1:50844 - mid:8 - "dev1" - Publish Violation - Subject "secret.x"`)
	f.Add(`127.0.0.1:57758 - mid:147 - "c" - Replacing old client "127.0.0.1:46672 - mid:131 - \"c\"" since both have the same client ID "c"`)
	f.Add(`[::1]:1 - cid:1 - "v" - "A/u" - authentication error - User "x"`)
	f.Add(`2026/11/22 22:05:43.662373 [ERR] 127.0.0.1:46016 - mid:25 - TLS handshake error: EOF`)
	f.Fuzz(func(t *testing.T, line string) {
		l, ok := ParseLogLine(line)
		if !ok {
			return
		}
		if hostOf(l.Remote) == "" {
			t.Fatalf("remote %q has no address", l.Remote)
		}
		if !validConnKind(l.Conn) || l.Text == "" {
			t.Fatalf("bad parse %+v", l)
		}
		ClassifyLogLine(l)
	})
}
