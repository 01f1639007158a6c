package integration

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestEdgeSIGHUPReloadsHareKeys: a host whose key is added to the edge's
// udp.keys_file is accepted after a SIGHUP to the running edge process,
// which keeps running (a SIGHUP from a service manager must never stop it).
func TestEdgeSIGHUPReloadsHareKeys(t *testing.T) {
	root := testDir(t)
	k1, k2 := newHareKey(t, "web1"), newHareKey(t, "web2")
	keys := filepath.Join(root, "edge.keys")
	writeFile(t, keys, k1.line(), 0o600)
	e := newEdge(t, root, edgeOptions{id: "site-r", keysFile: keys})
	e.StartReady()
	conn := dialUDP(t, e.udpAddr)

	if _, err := conn.Write(signedLogin(t, k2, "before-reload")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "web2 refused as unknown", func() (bool, string) {
		st := e.status(t)
		return st.Rejected["unknown_key"] == 1, fmt.Sprintf("rejected %v", nonZero(st.Rejected))
	})

	writeFile(t, keys, k1.line()+k2.line(), 0o600)
	if err := syscall.Kill(e.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is asynchronous: resend until one is accepted (each try is
	// a fresh signed datagram, so no replay).
	waitFor(t, 10*time.Second, "web2 accepted after SIGHUP", func() (bool, string) {
		if _, err := conn.Write(signedLogin(t, k2, "after-reload")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		st := e.status(t)
		return st.Accepted["udp"] >= 1, fmt.Sprintf("accepted %v, rejected %v", nonZero(st.Accepted), nonZero(st.Rejected))
	})
	if !e.Running() {
		t.Fatal("the edge stopped on SIGHUP")
	}
}
