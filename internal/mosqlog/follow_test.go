package mosqlog

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/mosqtest"
)

type collector struct {
	mu   sync.Mutex
	recs []Record
}

func (c *collector) add(r Record) { c.mu.Lock(); c.recs = append(c.recs, r); c.mu.Unlock() }

func (c *collector) snapshot() []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Record(nil), c.recs...)
}

// waitFor polls until cond holds for the records, or fails after 10 s.
func (c *collector) waitFor(t *testing.T, what string, cond func([]Record) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond(c.snapshot()) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; have %d records: %+v", what, len(c.snapshot()), c.snapshot())
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(line); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func clientsSeen(recs []Record) map[string]bool {
	m := map[string]bool{}
	for _, r := range recs {
		if r.Kind == KindConnected {
			m[r.ClientID] = true
		}
	}
	return m
}

func TestFollowRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mosquitto.log")
	appendLine(t, path, "1: New client connected from 10.0.0.1 as old (p2, c1, k60).\n")
	ctx, cancel := context.WithCancel(context.Background())
	var c collector
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, FollowOptions{Poll: 10 * time.Millisecond}, c.add) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Follow: %v", err)
		}
	}()
	line := func(id string) string {
		return fmt.Sprintf("2: New client connected from 10.0.0.1 as %s (p2, c1, k60).\n", id)
	}

	// Only new lines: write one, in two parts to exercise partial lines.
	c.waitFor(t, "start", func([]Record) bool { return true })
	time.Sleep(50 * time.Millisecond) // let Follow seek to the end before appending
	appendLine(t, path, line("a")[:20])
	appendLine(t, path, line("a")[20:])
	c.waitFor(t, "a", func(r []Record) bool { return clientsSeen(r)["a"] })

	// logrotate "create": rename and make a new file.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLine(t, path, line("b"))
	c.waitFor(t, "b after rename", func(r []Record) bool { return clientsSeen(r)["b"] })

	// logrotate "copytruncate": truncate in place.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLine(t, path, line("c"))
	c.waitFor(t, "c after truncate", func(r []Record) bool { return clientsSeen(r)["c"] })

	if clientsSeen(c.snapshot())["old"] {
		t.Error("a line written before Follow started was reported without FromStart")
	}
	if n := len(c.snapshot()); n != 3 {
		t.Errorf("got %d records, want 3: %+v", n, c.snapshot())
	}
}

// TestRealMosquitto runs Debian's mosquitto writing its log while real
// clients connect, one with a wrong password, and follows that log.
func TestRealMosquitto(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real broker")
	}
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto_pub is not installed (apt-get install mosquitto-clients)")
	}
	mq := mosqtest.New(t, "127.0.0.1", "alice", "right")
	port, logPath := mq.Port, mq.LogPath
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var c collector
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, logPath, FollowOptions{FromStart: true, Poll: 20 * time.Millisecond, Location: time.Local}, c.add)
	}()
	defer func() { cancel(); <-done }()
	mq.Start(t)
	c.waitFor(t, "broker start", func(r []Record) bool {
		for _, x := range r {
			if x.Kind == KindServer && x.Reason == "running" {
				return true
			}
		}
		return false
	})
	p := fmt.Sprint(port)
	exec.Command(pub, "-h", "127.0.0.1", "-p", p, "-i", "good-1", "-u", "alice", "-P", "right", "-t", "x", "-m", "1").Run()
	exec.Command(pub, "-h", "127.0.0.1", "-p", p, "-i", "bad-1", "-u", "alice", "-P", "wrong", "-t", "x", "-m", "1").Run()
	c.waitFor(t, "connected and auth failure", func(r []Record) bool {
		var ok, bad bool
		for _, x := range r {
			if x.Kind == KindConnected && x.ClientID == "good-1" && x.Username == "alice" && x.Protocol == 4 && x.SrcPort > 0 {
				ok = true
			}
			if x.Kind == KindAuthFailed {
				bad = true
			}
		}
		return ok && bad
	})
}
