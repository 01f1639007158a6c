// Package mosqtest runs Debian's mosquitto for tests: one broker per test,
// with a password user, writing its log (connection messages, ISO
// timestamps) to a file the test follows. It is imported by tests only.
package mosqtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"
	"time"
)

// Broker is a configured mosquitto; Start runs it.
type Broker struct {
	Host    string // listener address
	Port    int    // listener port, free when New ran
	LogPath string // the broker's log file

	bin, conf, stderr string
}

// New finds mosquitto and mosquitto_passwd, skipping the test when they are
// missing (failing it when WARREN_REQUIRE_ALL=1, as in CI), and writes the
// configuration of a broker listening on host with one user.
func New(t testing.TB, host, username, password string) *Broker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto" // Debian's, outside a user's PATH
	}
	passwd, perr := exec.LookPath("mosquitto_passwd")
	if _, err := os.Stat(bin); err != nil || perr != nil {
		if os.Getenv("WARREN_REQUIRE_ALL") == "1" {
			t.Fatal("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
		}
		t.Skip("mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")
	}
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pwPath := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-b", "-c", pwPath, username, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{Host: host, Port: port, LogPath: filepath.Join(dir, "mosquitto.log"), bin: bin,
		conf: filepath.Join(dir, "mosquitto.conf"), stderr: filepath.Join(dir, "stderr.log")}
	// "user <me>": Debian's broker would otherwise drop to user mosquitto.
	conf := fmt.Sprintf("user %s\nlistener %d %s\nallow_anonymous false\npassword_file %s\nlog_dest file %s\nlog_type all\nconnection_messages true\nlog_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S\n",
		me.Username, port, host, pwPath, b.LogPath)
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// Start runs the broker until the test ends and waits (10 s at most) until
// it accepts connections on 127.0.0.1. If the test fails, its stderr and
// log are shown.
func (b *Broker) Start(t testing.TB) {
	t.Helper()
	errf, err := os.Create(b.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	cmd := exec.Command(b.bin, "-c", b.conf)
	cmd.Stderr = errf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			se, _ := os.ReadFile(b.stderr)
			lg, _ := os.ReadFile(b.LogPath)
			t.Logf("mosquitto stderr:\n%s\nmosquitto log:\n%s", se, lg)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(b.Port))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %s after 10 s: %v", addr, err)
		}
	}
}
