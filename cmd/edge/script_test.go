package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/warren-mesh/warren/internal/admin"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"edge": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar with edge as a separate process.
//
// Environment: $UDPPORT is a UDP port that was free at setup.
//
// Custom commands:
//
//	udpsend PORT FILE         send FILE's content as one datagram to 127.0.0.1:PORT
//	waitstatus ADDR TEXT      poll ADDR's /status (compact JSON) until it contains TEXT (10 s)
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// no EDGE_* variable of the test environment leaks in
			vars := env.Vars[:0]
			for _, kv := range env.Vars {
				if !strings.HasPrefix(kv, "EDGE_") {
					vars = append(vars, kv)
				}
			}
			env.Vars = vars
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer c.Close()
			env.Setenv("UDPPORT", strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"udpsend": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: udpsend PORT FILE")
				}
				c, err := net.Dial("udp", "127.0.0.1:"+args[0])
				ts.Check(err)
				defer c.Close()
				_, err = c.Write([]byte(strings.TrimSuffix(ts.ReadFile(args[1]), "\n")))
				ts.Check(err)
			},
			"waitstatus": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: waitstatus ADDR TEXT")
				}
				addr := args[0]
				if p, ok := strings.CutPrefix(addr, "unix:"); ok {
					addr = "unix:" + ts.MkAbs(p)
				}
				deadline := time.Now().Add(10 * time.Second)
				var last []byte
				for time.Now().Before(deadline) {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					var raw []byte
					err := admin.Get(ctx, addr, "/status", &raw)
					cancel()
					if err == nil {
						var b bytes.Buffer
						if json.Compact(&b, raw) == nil {
							last = b.Bytes()
							if bytes.Contains(last, []byte(args[1])) {
								return
							}
						}
					}
					time.Sleep(20 * time.Millisecond)
				}
				ts.Fatalf("status never contained %s; last: %s", args[1], last)
			},
		},
	})
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"version", []string{"version"}, exitOK, ""},
		{"unknown command", []string{"fly"}, exitUsage, "unknown command"},
		{"unknown flag", []string{"status", "--jsn"}, exitUsage, "unknown flag"},
		{"extra argument", []string{"version", "x"}, exitUsage, ""},
		{"bad config value", []string{"check-config", "--log-level", "loud", "--data-dir", dir}, exitUsage, "log.level"},
		{"bad id flag", []string{"check-config", "--id", "Not_Valid"}, exitUsage, "id:"},
		{"missing config file", []string{"check-config", "-c", dir + "/none.yaml"}, exitUsage, "none.yaml"},
		{"status without an edge", []string{"status", "--admin", "unix:" + dir + "/none.sock"}, exitFailure, "is the daemon running"},
		{"run on a taken admin socket dir", []string{"run", "--data-dir", dir, "--udp-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--admin-listen", "unix:" + dir + "/no/such/dir/a.sock"}, exitFailure, "admin listener"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(c.args, &out, &errb); code != c.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, c.code, errb.String())
			}
			if !strings.Contains(errb.String(), c.err) {
				t.Errorf("stderr %q lacks %q", errb.String(), c.err)
			}
		})
	}
}
