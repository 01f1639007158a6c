// Package audittest holds the helpers the daemons' audit tests share:
// polling for audit events read from a stream, and the loopback checks of
// tests that connect from other 127.0.0.0/8 addresses.
package audittest

import (
	"net"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/audit"
)

// Timeout is how long WaitUntil and Wait poll.
const Timeout = 20 * time.Second

// WaitUntil polls cond every 20 ms until it holds, or fails the test after
// Timeout.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Wait polls list until one of its events matches f and returns it.
func Wait(t testing.TB, what string, list func() []audit.Event, f func(audit.Event) bool) audit.Event {
	t.Helper()
	var found audit.Event
	WaitUntil(t, what, func() bool {
		for _, e := range list() {
			if f(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// Count is the number of events that match f.
func Count(events []audit.Event, f func(audit.Event) bool) int {
	n := 0
	for _, e := range events {
		if f(e) {
			n++
		}
	}
	return n
}

// CanBind says whether this host can listen on ip (e.g. 127.0.0.2, which
// not every loopback setup routes).
func CanBind(ip string) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
