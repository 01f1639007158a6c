package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeBlock finds ten consecutive free loopback TCP and UDP ports for the
// demo script (which takes its ports as a base plus offsets).
func freeBlock(tb testing.TB) int {
	tb.Helper()
	for try := 0; try < 50; try++ {
		base := freePort(tb, "tcp")
		if base > 65000 {
			continue
		}
		ok := true
		var closers []func() error
		for p := base; p < base+10 && ok; p++ {
			l, err := net.Listen("tcp", loopback(p))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, l.Close)
			u, err := net.ListenPacket("udp", loopback(p))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u.Close)
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return base
		}
	}
	tb.Fatal("no block of ten free loopback ports")
	return 0
}

// TestDemoScript runs the README's first command (scripts/demo, which
// `make demo` runs after building) with the binaries under test, and
// expects the sample login to reach the hub's notifier and its MQTT
// republish.
func TestDemoScript(t *testing.T) {
	hub := binary(t, "hub")
	binary(t, "edge")
	binary(t, "hare")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(testDir(t), "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "demo"), "--once")
	cmd.Dir = root
	cmd.Env = append(daemonEnv(),
		"BIN="+filepath.Dir(hub),
		"WARREN_DEMO_DIR="+dir,
		fmt.Sprintf("WARREN_DEMO_PORT=%d", freeBlock(t)),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/demo --once: %v\n%s\nhub log:\n%s\nedge log:\n%s", err, out,
			tail(filepath.Join(dir, "hub.log"), 4000), tail(filepath.Join(dir, "edge.log"), 4000))
	}
	host, _ := os.Hostname()
	want := fmt.Sprintf("login jjolie on %s from 198.51.100.7", host)
	if !strings.Contains(string(out), want) {
		t.Errorf("the demo's output does not show the notification %q:\n%s", want, out)
	}
	if _, err := exec.LookPath("mosquitto_sub"); err == nil {
		if !strings.Contains(string(out), `"user":"jjolie"`) {
			t.Errorf("the demo's output does not show the logging/hare republish:\n%s", out)
		}
	}
}
