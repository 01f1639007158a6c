package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/internal/wire"
)

func TestParseArgs(t *testing.T) {
	def := defaultConfig()
	tests := []struct {
		name    string
		args    []string
		want    config
		wantPos []string
		wantErr string
	}{
		{name: "host only", args: []string{"edge"}, want: def, wantPos: []string{"edge"}},
		{name: "no args", args: nil, want: def},
		{
			name:    "all flags before host",
			args:    []string{"-port", "9000", "-key", "/k", "-close", "-timeout", "250ms", "-v", "edge"},
			want:    config{Port: 9000, KeyFile: "/k", Close: true, Timeout: 250 * time.Millisecond, Verbose: true},
			wantPos: []string{"edge"},
		},
		{
			name:    "flags after host",
			args:    []string{"edge", "--port=9000", "-key", "none"},
			want:    config{Port: 9000, KeyFile: "none", Timeout: def.Timeout},
			wantPos: []string{"edge"},
		},
		{name: "two hosts", args: []string{"a", "-v", "b"}, want: config{Port: def.Port, Timeout: def.Timeout, Verbose: true}, wantPos: []string{"a", "b"}},
		{name: "double dash", args: []string{"--", "-edge"}, want: def, wantPos: []string{"-edge"}},
		{name: "unknown flag", args: []string{"-x", "edge"}, wantErr: "flag provided but not defined: -x"},
		{name: "bad port", args: []string{"-port", "http", "edge"}, wantErr: "invalid value"},
		{name: "port 0", args: []string{"-port", "0", "edge"}, wantErr: "-port: 0 is not a UDP port"},
		{name: "port too big", args: []string{"-port", "65536", "edge"}, wantErr: "-port: 65536 is not a UDP port"},
		{name: "negative timeout", args: []string{"-timeout", "-1s", "edge"}, wantErr: "-timeout: -1s must be positive"},
		{name: "help", args: []string{"-h"}, wantErr: flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pos, err := parseArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseArgs error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPos, pos); diff != "" {
				t.Errorf("positional mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSplitTarget(t *testing.T) {
	tests := []struct {
		in       string
		host     string
		port     int
		wantErr  string
		wantHost bool
	}{
		{in: "edge", host: "edge", port: 8035},
		{in: "edge.example.org", host: "edge.example.org", port: 8035},
		{in: "192.0.2.1", host: "192.0.2.1", port: 8035},
		{in: "192.0.2.1:9000", host: "192.0.2.1", port: 9000},
		{in: "edge:1", host: "edge", port: 1},
		{in: "::1", host: "::1", port: 8035},
		{in: "2001:db8::1", host: "2001:db8::1", port: 8035},
		{in: "fe80::1%eth0", host: "fe80::1%eth0", port: 8035},
		{in: "[::1]", host: "::1", port: 8035},
		{in: "[::1]:65535", host: "::1", port: 65535},
		{in: "[edge6]:9", host: "edge6", port: 9},
		{in: "", wantErr: "HOST is empty"},
		{in: "edge:", wantErr: "port must be 1..65535"},
		{in: "edge:0", wantErr: "port must be 1..65535"},
		{in: "edge:65536", wantErr: "port must be 1..65535"},
		{in: "edge:http", wantErr: "port must be 1..65535"},
		{in: ":9000", wantErr: "no host"},
		{in: "[::1", wantErr: "missing ]"},
		{in: "[]", wantErr: "no host"},
		{in: "[::1]x", wantErr: "unexpected text after ]"},
		{in: "[::1]:", wantErr: "port must be 1..65535"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			host, port, err := splitTarget(tt.in, 8035)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("splitTarget(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || host != tt.host || port != tt.port {
				t.Fatalf("splitTarget(%q) = %q, %d, %v; want %q, %d", tt.in, host, port, err, tt.host, tt.port)
			}
		})
	}
}

func mapEnv(m map[string]string) envFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestPamEvent(t *testing.T) {
	tests := []struct {
		env       map[string]string
		withClose bool
		event     string
		send      bool
	}{
		{env: map[string]string{"PAM_TYPE": "open_session"}, event: wire.EventOpen, send: true},
		{env: map[string]string{"PAM_SM_FUNC": "pam_sm_open_session"}, event: wire.EventOpen, send: true},
		{env: map[string]string{"PAM_TYPE": "auth", "PAM_SM_FUNC": "pam_sm_open_session"}, event: wire.EventOpen, send: true},
		{env: map[string]string{"PAM_TYPE": "close_session"}},
		{env: map[string]string{"PAM_TYPE": "close_session"}, withClose: true, event: wire.EventClose, send: true},
		{env: map[string]string{"PAM_SM_FUNC": "pam_sm_close_session"}, withClose: true, event: wire.EventClose, send: true},
		{env: map[string]string{"PAM_TYPE": "open_session"}, withClose: true, event: wire.EventOpen, send: true},
		{env: map[string]string{"PAM_TYPE": "account"}, withClose: true},
		{env: map[string]string{"PAM_TYPE": "open_session "}},
		{env: map[string]string{}, withClose: true},
	}
	for i, tt := range tests {
		event, send := pamEvent(mapEnv(tt.env), tt.withClose)
		if event != tt.event || send != tt.send {
			t.Errorf("%d: pamEvent(%v, %v) = %q, %v; want %q, %v", i, tt.env, tt.withClose, event, send, tt.event, tt.send)
		}
	}
}

func TestBuildLogin(t *testing.T) {
	now := time.Unix(1795384588, 999_000_000)
	got := buildLogin(mapEnv(map[string]string{"PAM_USER": "u", "PAM_TTY": "", "PAM_RUSER": "x"}), now, wire.EventClose)
	host, err := os.Hostname()
	if err != nil {
		host = "?"
	}
	want := wire.Login{Tst: 1795384588, Hostname: host, User: wire.Some("u"), TTY: wire.Some(""), Event: wire.EventClose}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("buildLogin mismatch (-want +got):\n%s", diff)
	}
}

func TestFitPayload(t *testing.T) {
	small := wire.Login{Tst: 1, Hostname: "vm", User: wire.Some("jjolie")}
	p, cut := fitPayload(small, wire.MaxPayload)
	if cut || !bytes.Equal(p, wire.AppendV0(nil, small)) {
		t.Fatalf("small login changed: %s (cut=%v)", p, cut)
	}
	huge := wire.Login{
		Tst:      1,
		Hostname: strings.Repeat("h", 5000),
		User:     wire.Some(strings.Repeat("\x01", 3000)), // 6 bytes each once escaped
		Service:  wire.Some(strings.Repeat("é", 2000)),
		RHost:    wire.Some(strings.Repeat("🐇", 1000)),
		TTY:      wire.Some("pts/0"),
		Event:    wire.EventClose,
	}
	p, cut = fitPayload(huge, wire.MaxPayload)
	if !cut || len(p) > wire.MaxPayload {
		t.Fatalf("fitPayload: %d bytes, cut=%v", len(p), cut)
	}
	if !json.Valid(p) || !utf8.Valid(p) {
		t.Fatalf("fitPayload produced invalid JSON or UTF-8: %q", p)
	}
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatal(err)
	}
	if m["tty"] != "pts/0" || m["event"] != "close" || strings.ContainsRune(m["service"].(string), utf8.RuneError) {
		t.Fatalf("fitPayload lost or broke fields: %v", m)
	}
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"}, {"abc", 2, "ab"}, {"abc", 0, ""}, {"éé", 3, "é"}, {"🐇", 3, ""}, {"a🐇", 4, "a"},
	} {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// listenUDP returns a loopback UDP socket on a random port.
func listenUDP(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recvUDP(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return buf[:n]
}

// listenSamePort binds [::1]:P and 127.0.0.1:P for one port P.
func listenSamePort(t *testing.T) (c6, c4 *net.UDPConn) {
	t.Helper()
	for range 20 {
		c6 = listenUDP(t, "[::1]:0")
		var err error
		c4, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port(c6)})
		if err == nil {
			t.Cleanup(func() { c4.Close() })
			return c6, c4
		}
	}
	t.Fatal("no port free on both ::1 and 127.0.0.1")
	return nil, nil
}

func port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

func TestDeliverIPv6Name(t *testing.T) {
	c := listenUDP(t, "[::1]:0")
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "edge6.example" {
			return nil, errors.New("unexpected host " + host)
		}
		return []netip.Addr{netip.IPv6Loopback()}, nil
	}
	if err := deliver(context.Background(), "edge6.example", port(c), []byte("{}"), lookup, t.Logf); err != nil {
		t.Fatal(err)
	}
	if got := recvUDP(t, c); string(got) != "{}" {
		t.Fatalf("got %q", got)
	}
}

func TestDeliverFallsBackAndSendsOnce(t *testing.T) {
	c, c4 := listenSamePort(t)
	// The broadcast address refuses a plain socket (EACCES); then ::1 takes
	// the datagram, and 127.0.0.1 must not get a second copy.
	lookup := func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("255.255.255.255"), netip.IPv6Loopback(), netip.MustParseAddr("::ffff:127.0.0.1")}, nil
	}
	var log []string
	debugf := func(f string, a ...any) { log = append(log, f) }
	if err := deliver(context.Background(), "edge", port(c), []byte("x"), lookup, debugf); err != nil {
		t.Fatalf("deliver: %v (log %v)", err, log)
	}
	if got := recvUDP(t, c); string(got) != "x" {
		t.Fatalf("got %q", got)
	}
	if err := c4.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, _, err := c4.ReadFromUDP(make([]byte, 10)); err == nil {
		t.Fatalf("second address also got %d bytes", n)
	}
}

func TestDeliverErrors(t *testing.T) {
	failing := func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("no such host") }
	err := deliver(context.Background(), "nowhere", 9, []byte("x"), failing, t.Logf)
	if err == nil || err.Error() != "resolve nowhere: no such host" {
		t.Fatalf("deliver = %v", err)
	}
	empty := func(context.Context, string) ([]netip.Addr, error) { return nil, nil }
	if err := deliver(context.Background(), "nowhere", 9, []byte("x"), empty, t.Logf); err == nil || !strings.Contains(err.Error(), "no addresses") {
		t.Fatalf("deliver = %v", err)
	}
	// A lookup that hangs is cut off by the context.
	hang := func(ctx context.Context, _ string) ([]netip.Addr, error) { <-ctx.Done(); return nil, ctx.Err() }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := deliver(ctx, "slow", 9, []byte("x"), hang, t.Logf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deliver = %v", err)
	}
	// An unusable address only.
	bcast := func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("255.255.255.255")}, nil
	}
	if err := deliver(context.Background(), "b", 9, []byte("x"), bcast, t.Logf); err == nil || !strings.Contains(err.Error(), "sendto") {
		t.Fatalf("deliver = %v", err)
	}
	// A literal never reaches the lookup.
	c := listenUDP(t, "127.0.0.1:0")
	if err := deliver(context.Background(), "127.0.0.1", port(c), []byte("lit"), failing, t.Logf); err != nil {
		t.Fatal(err)
	}
	recvUDP(t, c)
}

func TestZoneID(t *testing.T) {
	if id, err := zoneID(""); id != 0 || err != nil {
		t.Errorf("zoneID(\"\") = %d, %v", id, err)
	}
	if id, err := zoneID("7"); id != 7 || err != nil {
		t.Errorf("zoneID(7) = %d, %v", id, err)
	}
	if _, err := zoneID("no-such-interface0"); err == nil {
		t.Error("zoneID(no-such-interface0) succeeded")
	}
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Skip("no interfaces to look up")
	}
	if id, err := zoneID(ifs[0].Name); err != nil || id != uint32(ifs[0].Index) {
		t.Errorf("zoneID(%s) = %d, %v; want %d", ifs[0].Name, id, err, ifs[0].Index)
	}
}

// TestRun drives run in-process against a real listener: exit codes,
// output and the watchdog.
func TestRun(t *testing.T) {
	c := listenUDP(t, "127.0.0.1:0")
	p := strconv.Itoa(port(c))
	keyFile := filepath.Join(t.TempDir(), "hare.key")
	if err := os.WriteFile(keyFile, []byte("web1 "+strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := map[string]string{"PAM_TYPE": "open_session", "PAM_USER": "jjolie"}

	var stderr bytes.Buffer
	var armed time.Duration
	code := run([]string{"-key", "none", "-timeout", "2s", "-port", p, "127.0.0.1"}, mapEnv(open), &stderr, func(d time.Duration) { armed = d })
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("run = %d, stderr %q", code, stderr.String())
	}
	if armed != 2*time.Second+watchdogGrace {
		t.Fatalf("watchdog armed for %v", armed)
	}
	if got := recvUDP(t, c); wire.KindOf(got) != wire.KindV0 || !bytes.Contains(got, []byte(`"user":"jjolie","service":null`)) {
		t.Fatalf("got %q", got)
	}

	stderr.Reset()
	if code := run([]string{"-v", "-key", keyFile, "-port", p, "127.0.0.1"}, mapEnv(open), &stderr, nil); code != 0 {
		t.Fatalf("run = %d", code)
	}
	got := recvUDP(t, c)
	keys, err := wire.LoadKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	env, err := wire.Open(got, wire.NewKeyring(keys).Lookup)
	if err != nil || !bytes.Contains(env.Payload, []byte(`"user":"jjolie"`)) {
		t.Fatalf("v1 Open = %+v, %v", env, err)
	}
	if !strings.Contains(stderr.String(), `hare: signed with key "web1"`) || !strings.Contains(stderr.String(), "hare: sent ") {
		t.Fatalf("verbose stderr = %q", stderr.String())
	}

	for _, tt := range []struct {
		args []string
		env  map[string]string
		code int
	}{
		{args: nil, env: open, code: 2},
		{args: []string{"a", "b"}, env: open, code: 2},
		{args: []string{"-port", "0", "a"}, env: open, code: 2},
		{args: []string{"-nope", "a"}, env: nil, code: 2},
		{args: []string{"a:b"}, env: open, code: 2},
		{args: nil, env: nil, code: 0},
		{args: []string{"-h"}, env: nil, code: 0},
		{args: []string{"-key", "none", "-timeout", "50ms", "nonexistent.invalid"}, env: open, code: 0},
		{args: []string{"-key", "none", "-port", p, "255.255.255.255"}, env: open, code: 0},
	} {
		stderr.Reset()
		if code := run(tt.args, mapEnv(tt.env), &stderr, nil); code != tt.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", tt.args, code, tt.code, stderr.String())
		}
		if tt.code == 2 && !strings.Contains(stderr.String(), usageLine) {
			t.Errorf("run(%q): no usage line in %q", tt.args, stderr.String())
		}
	}
}
