package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/warren-mesh/warren/internal/wire"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"hare": func() { os.Exit(hareMain()) },
	})
}

// TestScripts runs testdata/script/*.txtar: hare, run as a separate process
// with PAM variables, against real UDP listeners on loopback.
//
// Custom commands:
//
//	udplisten [-skipbusy] NAME [ADDR]
//	                             listen on ADDR (default 127.0.0.1:0); sets $NAME_PORT;
//	                             -skipbusy skips the script if ADDR is taken
//	udplisten -dual NAME         listen on 127.0.0.1:P and [::1]:P; sets $NAME_PORT
//	udprecv [-key FILE] NAME OUT  wait (≤10 s) for one datagram on NAME; without
//	                              -key it must be v0, with -key a v1 envelope that
//	                              verifies with FILE's keys and carries a fresh
//	                              timestamp; checks the payload has no raw newline
//	                              and writes it plus "\n" to OUT, with "tst":<now>
//	                              replaced by "tst":TST
//	udpnone NAME                 fail if a datagram arrives on NAME within 300 ms
//	ip6name VAR                  set $VAR to a host name that resolves to ::1 only
//	setenvq VAR 'QUOTED'         set $VAR to the Go-quoted string QUOTED (for bytes
//	                             a script line cannot hold)
//
// Conditions: [defaultkey] (a key file exists at hare's default path),
// [ip6name] (some name resolves to ::1 only, see ip6name).
//
// $HOSTJSON holds os.Hostname() as a JSON string, for cmpenv.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			host, err := os.Hostname()
			if err != nil {
				host = "?"
			}
			env.Setenv("HOSTJSON", string(wire.AppendString(nil, host)))
			// Under -race every hare process would sleep 1 s at exit.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			ls := &listeners{m: map[string]*listener{}}
			env.Values[listenersKey{}] = ls
			env.Values[testingKey{}] = env.T()
			env.Defer(ls.closeAll)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"udplisten": cmdUDPListen,
			"udprecv":   cmdUDPRecv,
			"udpnone":   cmdUDPNone,
			"ip6name":   cmdIP6Name,
			"setenvq":   cmdSetenvQ,
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "defaultkey":
				_, err := os.Stat(defaultKeyFile())
				return err == nil, nil
			case "ip6name":
				return findIP6Name() != "", nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

type (
	listenersKey struct{}
	testingKey   struct{}
)

// listener is one or two UDP sockets (udplisten -dual binds 127.0.0.1 and
// ::1 on the same port) whose datagrams arrive on one channel.
type listener struct {
	conns []*net.UDPConn
	ch    chan []byte
}

type listeners struct {
	mu sync.Mutex
	m  map[string]*listener
}

func (l *listeners) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ln := range l.m {
		for _, c := range ln.conns {
			c.Close()
		}
	}
}

func getListener(ts *testscript.TestScript, name string) *listener {
	ls := ts.Value(listenersKey{}).(*listeners)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ln, ok := ls.m[name]
	if !ok {
		ts.Fatalf("no udplisten %s", name)
	}
	return ln
}

func cmdUDPListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! udplisten")
	}
	var dual, skipBusy bool
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-dual":
			dual = true
		case "-skipbusy":
			skipBusy = true
		default:
			ts.Fatalf("udplisten: unknown flag %s", args[0])
		}
		args = args[1:]
	}
	if len(args) < 1 || len(args) > 2 || dual && len(args) != 1 {
		ts.Fatalf("usage: udplisten [-skipbusy] NAME [ADDR] | udplisten -dual NAME")
	}
	addr := "127.0.0.1:0"
	if len(args) == 2 {
		addr = args[1]
	}
	var conns []*net.UDPConn
	if dual {
		conns = listenDual(ts)
	} else {
		ap, err := netip.ParseAddrPort(addr)
		ts.Check(err)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil && skipBusy {
			// Someone else holds the port (an edge on 8035, say): skip
			// rather than fail, as the builtin skip command does.
			ts.Value(testingKey{}).(testscript.T).Skip("udplisten: " + err.Error())
		}
		ts.Check(err)
		conns = []*net.UDPConn{c}
	}
	ln := &listener{conns: conns, ch: make(chan []byte, 64)}
	for _, c := range conns {
		go func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					return // closed at the end of the script
				}
				select {
				case ln.ch <- bytes.Clone(buf[:n]):
				default: // 64 unread datagrams: a script bug; udpnone still sees the queue
				}
			}
		}()
	}
	ls := ts.Value(listenersKey{}).(*listeners)
	ls.mu.Lock()
	ls.m[args[0]] = ln
	ls.mu.Unlock()
	ts.Setenv(args[0]+"_PORT", strconv.Itoa(conns[0].LocalAddr().(*net.UDPAddr).Port))
}

// listenDual binds 127.0.0.1:P and [::1]:P for one port P, so that a name
// resolving to either loopback reaches it.
func listenDual(ts *testscript.TestScript) []*net.UDPConn {
	for range 20 {
		c4, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		ts.Check(err)
		c6, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback, Port: c4.LocalAddr().(*net.UDPAddr).Port})
		if err == nil {
			return []*net.UDPConn{c4, c6}
		}
		c4.Close()
	}
	ts.Fatalf("udplisten -dual: no port free on both 127.0.0.1 and ::1")
	return nil
}

var tstRE = regexp.MustCompile(`^\{"tst":(-?[0-9]+),`)

func cmdUDPRecv(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! udprecv (use udpnone)")
	}
	keyFile := ""
	if len(args) > 0 && args[0] == "-key" {
		if len(args) < 2 {
			ts.Fatalf("usage: udprecv [-key FILE] NAME OUT")
		}
		keyFile, args = args[1], args[2:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: udprecv [-key FILE] NAME OUT")
	}
	var d []byte
	select {
	case d = <-getListener(ts, args[0]).ch:
	case <-time.After(10 * time.Second):
		ts.Fatalf("udprecv %s: nothing received in 10s", args[0])
	}
	now := time.Now()

	payload := d
	if keyFile != "" {
		keys, err := wire.LoadKeys(ts.MkAbs(keyFile))
		ts.Check(err)
		env, err := wire.Open(d, wire.NewKeyring(keys).Lookup)
		if err != nil {
			ts.Fatalf("udprecv: not a v1 datagram verifiable with %s: %v (%q)", keyFile, err, d)
		}
		if skew := now.Sub(env.Time()); skew < -time.Minute || skew > time.Minute {
			ts.Fatalf("udprecv: v1 timestamp %v is %v away from now", env.Time(), skew)
		}
		ts.Logf("udprecv: v1 key %q nonce %s", env.KeyID, env.NonceHex())
		payload = env.Payload
		m := tstRE.FindSubmatch(payload)
		if m == nil {
			ts.Fatalf("udprecv: payload without leading tst: %q", payload)
		}
		if tst, _ := strconv.ParseInt(string(m[1]), 10, 64); tst != env.Time().Unix() {
			ts.Fatalf("udprecv: payload tst %d differs from envelope time %v", tst, env.Time())
		}
	} else if wire.KindOf(d) != wire.KindV0 {
		ts.Fatalf("udprecv: want a v0 datagram, got %q", d)
	}
	m := tstRE.FindSubmatchIndex(payload)
	if m == nil {
		ts.Fatalf("udprecv: payload without leading tst: %q", payload)
	}
	tst, err := strconv.ParseInt(string(payload[m[2]:m[3]]), 10, 64)
	ts.Check(err)
	if off := now.Unix() - tst; off < -60 || off > 60 {
		ts.Fatalf("udprecv: tst %d is %d s away from now", tst, off)
	}
	if bytes.IndexByte(payload, '\n') >= 0 {
		ts.Fatalf("udprecv: payload holds a raw newline: %q", payload)
	}
	// The newline makes OUT comparable with a txtar file section.
	out := append([]byte(`{"tst":TST,`), payload[m[1]:]...)
	out = append(out, '\n')
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), out, 0o644))
}

func cmdUDPNone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: udpnone NAME")
	}
	select {
	case d := <-getListener(ts, args[0]).ch:
		ts.Fatalf("udpnone %s: received %q", args[0], d)
	case <-time.After(300 * time.Millisecond):
	}
}

func cmdSetenvQ(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: setenvq VAR GO-QUOTED-STRING")
	}
	v, err := strconv.Unquote(args[1])
	ts.Check(err)
	ts.Setenv(args[0], v)
}

func cmdIP6Name(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: ip6name VAR")
	}
	name := findIP6Name()
	if name == "" {
		ts.Fatalf("no host name resolves to ::1 only; guard with [ip6name]")
	}
	ts.Setenv(args[0], name)
}

// findIP6Name returns a conventional name for the IPv6 loopback that
// resolves to ::1 and nothing else here, or "".
func findIP6Name() string {
	for _, name := range []string{"ip6-localhost", "ip6-loopback", "localhost6", "localhost6.localdomain6"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		cancel()
		if err == nil && len(addrs) > 0 && allIP6Loopback(addrs) {
			return name
		}
	}
	return ""
}

func allIP6Loopback(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if a != netip.IPv6Loopback() {
			return false
		}
	}
	return true
}
