package mosqlog

import (
	"bufio"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func bp(b bool) *bool { return &b }

func TestParse(t *testing.T) {
	utc := time.UTC
	cases := []struct {
		line string
		want Record
	}{
		{"2026-11-22T21:57:31: New connection from 127.0.0.1:33730 on port 36519.",
			Record{Time: time.Date(2026, 11, 22, 21, 57, 31, 0, utc), Kind: KindNewConnection, Addr: "127.0.0.1", SrcPort: 33730, Port: 36519}},
		{"2026-11-22T21:57:31: Client <unknown> disconnected, not authorised.",
			Record{Time: time.Date(2026, 11, 22, 21, 57, 31, 0, utc), Kind: KindAuthFailed, Reason: "not authorised"}},
		{"2026-11-22T21:57:31: New client connected from 127.0.0.1:33758 as hub-1 (p2, c1, k60, u'hub').",
			Record{Time: time.Date(2026, 11, 22, 21, 57, 31, 0, utc), Kind: KindConnected, Addr: "127.0.0.1", SrcPort: 33758, ClientID: "hub-1", Username: "hub", Protocol: 4, Clean: bp(true), KeepAlive: 60}},
		{"2026-11-22T22:06:01: New client connected from 127.0.0.1:46148 as v5hub (p5, c1, k60, u'hub').",
			Record{Time: time.Date(2026, 11, 22, 22, 6, 1, 0, utc), Kind: KindConnected, Addr: "127.0.0.1", SrcPort: 46148, ClientID: "v5hub", Username: "hub", Protocol: 5, Clean: bp(true), KeepAlive: 60}},
		{"2026-11-22T22:06:01: New client connected from 127.0.0.1:46158 as v31hub (p1, c1, k60, u'hub').",
			Record{Time: time.Date(2026, 11, 22, 22, 6, 1, 0, utc), Kind: KindConnected, Addr: "127.0.0.1", SrcPort: 46158, ClientID: "v31hub", Username: "hub", Protocol: 3, Clean: bp(true), KeepAlive: 60}},
		{"2026-11-22T21:57:31: Client edge1 disconnected.",
			Record{Time: time.Date(2026, 11, 22, 21, 57, 31, 0, utc), Kind: KindDisconnected, ClientID: "edge1"}},
		{"2026-11-22T21:57:31: Client <unknown> disconnected: Protocol error.",
			Record{Time: time.Date(2026, 11, 22, 21, 57, 31, 0, utc), Kind: KindDisconnected, Reason: "Protocol error"}},
		{"2026-11-22T21:57:31: Client connection from 127.0.0.1 failed: error:0A000102:SSL routines::unsupported protocol.",
			Record{Time: time.Date(2026, 11, 22, 21, 57, 31, 0, utc), Kind: KindTLSFailed, Addr: "127.0.0.1", Reason: "error:0A000102:SSL routines::unsupported protocol"}},
		{"2026-11-22T22:05:03: Connection Refused: unacceptable protocol version",
			Record{Time: time.Date(2026, 11, 22, 22, 5, 3, 0, utc), Kind: KindRefused, Reason: "unacceptable protocol version"}},
		{"2026-11-22T22:07:30: mosquitto version 2.0.11 terminating",
			Record{Time: time.Date(2026, 11, 22, 22, 7, 30, 0, utc), Kind: KindServer, Version: "2.0.11", Reason: "terminating"}},
		{"1515309375: New connection from 172.17.0.1 on port 1883.",
			Record{Time: time.Unix(1515309375, 0), Kind: KindNewConnection, Addr: "172.17.0.1", Port: 1883}},
		{"1515309375: New client connected from 172.17.0.1 as mqtt-client-NWq09wrg (c0, k60).",
			Record{Time: time.Unix(1515309375, 0), Kind: KindConnected, Addr: "172.17.0.1", ClientID: "mqtt-client-NWq09wrg", Clean: bp(false), KeepAlive: 60}},
		{"1403334375: New client connected from 121.201.8.163 as zhoujing (c0, k60, ujoyo).",
			Record{Time: time.Unix(1403334375, 0), Kind: KindConnected, Addr: "121.201.8.163", ClientID: "zhoujing", Username: "joyo", Clean: bp(false), KeepAlive: 60}},
		{"1515309400: Socket error on client x y, disconnecting.",
			Record{Time: time.Unix(1515309400, 0), Kind: KindDisconnected, ClientID: "x y", Reason: "socket error"}},
		{"1515309402: Client sensor-4 already connected, closing old connection.",
			Record{Time: time.Unix(1515309402, 0), Kind: KindTakeover, ClientID: "sensor-4"}},
		{"1569000002: New connection from 2001:db8::7 on port 8883.",
			Record{Time: time.Unix(1569000002, 0), Kind: KindNewConnection, Addr: "2001:db8::7", Port: 8883}},
		{"1569000002: New connection from ::1:40000 on port 8883.",
			Record{Time: time.Unix(1569000002, 0), Kind: KindNewConnection, Addr: "::1", SrcPort: 40000, Port: 8883}},
	}
	for _, c := range cases {
		t.Run(c.line, func(t *testing.T) {
			got, ok := Parse(c.line, utc)
			if !ok {
				t.Fatal("not parsed")
			}
			if d := cmp.Diff(c.want, got, cmpopts.IgnoreFields(Record{}, "Line")); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestParseIgnores(t *testing.T) {
	for _, l := range []string{"", "garbage", "1515309375: Sending CONNACK to x (0, 0)", "2026-11-22T21:57:30: Opening ipv4 listen socket on port 36519.", ": : :", "123: New connection from"} {
		if r, ok := Parse(l, time.UTC); ok {
			t.Errorf("Parse(%q) = %+v, want not ok", l, r)
		}
	}
}

// TestFixtures parses every captured line: the connection lines must all be
// recognised and the counts per kind match what the captures contain.
func TestFixtures(t *testing.T) {
	counts := map[Kind]int{}
	for _, name := range []string{"testdata/mosquitto-2.0.11-connection-lines.log", "testdata/mosquitto-1.4-1.6.log"} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if r, ok := Parse(sc.Text(), time.UTC); ok {
				counts[r.Kind]++
				if r.Time.IsZero() {
					t.Errorf("%s: no time in %q", name, sc.Text())
				}
			}
		}
		f.Close()
	}
	want := map[Kind]int{
		KindServer: 4, KindNewConnection: 13, KindConnected: 11, KindDisconnected: 13,
		KindAuthFailed: 2, KindTLSFailed: 2, KindRefused: 1, KindTakeover: 1,
	}
	if d := cmp.Diff(want, counts); d != "" {
		t.Errorf("kinds (-want +got):\n%s", d)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("2026-11-22T21:57:31: New client connected from 127.0.0.1:33758 as hub-1 (p2, c1, k60, u'hub').")
	f.Add("1515309375: New connection from 172.17.0.1 on port 1883.")
	f.Add("1: Client a disconnected: x.")
	f.Fuzz(func(t *testing.T, line string) {
		Parse(line, time.UTC)
	})
}
