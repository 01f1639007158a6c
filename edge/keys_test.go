package edge

import (
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/event"
)

// TestReloadKeys: a host added to udp.keys_file is accepted after
// ReloadKeys without a restart; a broken file keeps the keys in use; a
// removed key is refused from then on.
func TestReloadKeys(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	e, _ := startEdge(t, cfg)
	s := sender(t, "127.0.0.1")
	key2 := make([]byte, 32)
	for i := range key2 {
		key2[i] = byte(200 - i)
	}
	sendSigned := func(id string, key []byte, user string) {
		send(t, s, e.UDPAddr(), seal(t, id, key, time.Now(), randNonce(), v0(1, user)))
	}
	st := func() (accepted, unknown uint64) {
		x := e.Status()
		return x.Accepted[event.SourceUDP], x.Rejected[ReasonUnknownKey]
	}

	sendSigned("host2", key2, "before")
	waitFor(t, "host2 refused as unknown", 5*time.Second, func() bool { _, u := st(); return u == 1 })

	both := "host1 " + hex.EncodeToString(testKey) + "\nhost2 " + hex.EncodeToString(key2) + "\n"
	if err := os.WriteFile(cfg.UDP.KeysFile, []byte(both), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ReloadKeys(); err != nil || n != 2 {
		t.Fatalf("ReloadKeys = %d, %v; want 2 keys", n, err)
	}
	sendSigned("host2", key2, "after")
	waitFor(t, "host2 accepted after the reload", 5*time.Second, func() bool { a, _ := st(); return a == 1 })

	// A broken file is refused and the keys in use stay.
	if err := os.WriteFile(cfg.UDP.KeysFile, []byte("host3 not-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ReloadKeys(); err == nil || n != 2 {
		t.Fatalf("ReloadKeys of a broken file = %d, %v; want an error and 2 keys kept", n, err)
	}
	sendSigned("host1", testKey, "kept")
	waitFor(t, "host1 still accepted", 5*time.Second, func() bool { a, _ := st(); return a == 2 })

	// Removing host2 refuses it from the next datagram on.
	only1 := "host1 " + hex.EncodeToString(testKey) + "\n"
	if err := os.WriteFile(cfg.UDP.KeysFile, []byte(only1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	sendSigned("host2", key2, "removed")
	waitFor(t, "host2 refused again", 5*time.Second, func() bool { _, u := st(); return u == 2 })
}
