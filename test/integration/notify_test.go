package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The notifier end to end, through real processes: hare → edge → bridge →
// hub → notifier → target.

// notifyFileConfig is a hub notify section with one file target that
// writes one line per login in mqttwarn's format-string style.
func notifyFileConfig(path string) string {
	return fmt.Sprintf(`notify:
  delivery: {deliver_policy: all}
  targets:
    logins:
      type: file
      config: {path: %s}
  routes:
    - name: hare
      match: {topic: [logging/hare]}
      targets: [logins]
      format: "login {user} on {hostname} from {rhost}"
`, quote(path))
}

// fileLines returns the lines of path (none when it does not exist yet).
func fileLines(tb testing.TB, path string) []string {
	tb.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// TestHareToNotificationFile runs the built hare binary as PAM would, for
// several users, and expects exactly one line per login in the hub's file
// target, rendered from the event's JSON.
func TestHareToNotificationFile(t *testing.T) {
	hare := binary(t, "hare")
	root := testDir(t)
	out := filepath.Join(root, "notifications", "logins.log")
	hub := newHub(t, root, hubOptions{extra: notifyFileConfig(out)}, "site1")
	e := newEdge(t, root, edgeOptions{id: "site1", hub: hub})
	hub.StartReady()
	e.StartReady()
	e.waitConnected(t, time.Minute)
	_, port := splitPort(t, e.udpAddr)

	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		runHare(t, hare, map[string]string{"PAM_TYPE": "open_session", "PAM_USER": u, "PAM_SERVICE": "sshd", "PAM_RHOST": "198.51.100.7", "PAM_TTY": "ssh"},
			"-port", port, "-key", "none", "127.0.0.1")
	}
	// A close_session is not a login: hare sends nothing for it.
	runHare(t, hare, map[string]string{"PAM_TYPE": "close_session", "PAM_USER": "mallory"}, "-port", port, "-key", "none", "127.0.0.1")

	host, _ := os.Hostname()
	var want []string
	for _, u := range users {
		want = append(want, fmt.Sprintf("login %s on %s from 198.51.100.7", u, host))
	}
	waitFor(t, time.Minute, "three notifications in "+out, func() (bool, string) {
		got := fileLines(t, out)
		return len(got) >= len(want), fmt.Sprintf("%d lines: %q", len(got), got)
	})
	// Settle: a duplicate would show up after the first copies.
	time.Sleep(500 * time.Millisecond)
	got := fileLines(t, out)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("notification file:\n got %q\nwant %q", got, want)
	}
}

// TestNotifierExactlyOnceAcrossHubKill delivers 200 logins to a webhook
// target that answers slowly, SIGKILLs the hub while deliveries are
// pending, restarts it and expects every notification to arrive exactly
// once as the receiver sees it: nothing lost, nothing delivered twice
// except the one send in flight at the kill, which comes again with the
// same Idempotency-Key.
func TestNotifierExactlyOnceAcrossHubKill(t *testing.T) {
	const n = 200
	var (
		mu    sync.Mutex
		count = map[string]int{}
		keys  = map[string]map[string]bool{} // user -> Idempotency-Keys seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond) // slow enough that the kill lands mid-delivery
		buf := make([]byte, 4096)
		k, _ := r.Body.Read(buf)
		user := strings.TrimSpace(string(buf[:k]))
		mu.Lock()
		count[user]++
		if keys[user] == nil {
			keys[user] = map[string]bool{}
		}
		keys[user][r.Header.Get("Idempotency-Key")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	delivered := func() (distinct, total int) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range count {
			distinct++
			total += c
		}
		return
	}

	root := testDir(t)
	notify := fmt.Sprintf(`notify:
  delivery: {deliver_policy: all, ack_wait: 2s}
  targets:
    hook:
      type: webhook
      timeout: 2s
      config: {url: %s, body: "{{.Body}}"}
  routes:
    - name: hare
      match: {topic: [logging/hare]}
      targets: [hook]
      format: "{user}"
`, quote(srv.URL))
	hub := newHub(t, root, hubOptions{extra: notify}, "site1")
	e := newEdge(t, root, edgeOptions{id: "site1", hub: hub})
	hub.StartReady()
	e.StartReady()
	e.waitConnected(t, time.Minute)

	conn := dialUDP(t, e.udpAddr)
	for _, id := range ids("user", n) {
		if _, err := conn.Write(login(id)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "some notifications delivered", func() (bool, string) {
		d, _ := delivered()
		return d >= 20, fmt.Sprintf("%d delivered", d)
	})
	hub.Kill()
	before, _ := delivered()
	if before >= n {
		t.Fatalf("all %d notifications were delivered before the kill; the test wants pending ones", n)
	}
	t.Logf("SIGKILLed the hub with %d of %d notifications delivered", before, n)
	hub.StartReady()

	waitFor(t, 2*time.Minute, "every notification delivered after the restart", func() (bool, string) {
		d, _ := delivered()
		return d == n, fmt.Sprintf("%d of %d delivered", d, n)
	})
	time.Sleep(time.Second) // let a duplicate show up if there is one
	mu.Lock()
	defer mu.Unlock()
	// The idempotency record is published right after a target reports
	// success (asynchronously; the batch waits for the records before its
	// acks), so a SIGKILL can fall between a send and its stored record for
	// the notification the worker (one here) is sending, and in theory for
	// one or two just before it whose records were still on their way
	// (microseconds, against 5 ms per send here). Those are sent again after
	// the restart with the same Idempotency-Key, which a receiver honouring
	// the header applies once. More than that is a bug.
	resent := 0
	for _, id := range ids("user", n) {
		c := count[id]
		switch {
		case c == 0:
			t.Errorf("%s never notified", id)
		case c > 1:
			resent++
			if len(keys[id]) != 1 {
				t.Errorf("%s notified %d times with different idempotency keys %v", id, c, keys[id])
			}
			if c > 2 {
				t.Errorf("%s notified %d times", id, c)
			}
		}
	}
	if resent > 3 {
		t.Errorf("%d notifications were sent twice; only the ones in flight at the kill may be", resent)
	}
	t.Logf("%d notification(s) resent after the kill, each with its original Idempotency-Key", resent)
}
