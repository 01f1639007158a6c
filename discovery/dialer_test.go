package discovery

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// listen starts a loopback TCP listener that reports each accepted
// connection's local address on the returned channel.
func listen(t *testing.T) (net.Listener, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan string, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c.LocalAddr().String()
			_ = c.Close()
		}
	}()
	return l, accepted
}

func expectAccept(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("accepted on %s, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection reached %s", want)
	}
}

// TestDialerFollowsDiscovery: the dialer goes where discovery sees the hub
// (an unspecified host resolved to the hub's gossip address) and falls back
// to the static address when no hub is known or the hub does not answer.
func TestDialerFollowsDiscovery(t *testing.T) {
	natsL, natsAccepted := listen(t)
	staticL, staticAccepted := listen(t)
	_, natsPort, _ := net.SplitHostPort(natsL.Addr().String())

	dir := t.TempDir()
	key := writeKeyFile(t, dir, "gossip.key", testKey(13))
	ec := testConfig("e1", key)
	edge := startNode(t, ec, edgeMeta())
	d := &Dialer{Hubs: edge, Timeout: 2 * time.Second}

	// No hub known: the static address.
	c, err := d.Dial("tcp", staticL.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	expectAccept(t, staticAccepted, staticL.Addr().String())

	hub := startNode(t, testConfig("hub", key), hubMeta("nats://0.0.0.0:"+natsPort))
	if _, err := edge.Join(hub.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "the edge to know the hub", func() bool { return len(edge.HubURLs()) > 0 })
	c, err = d.DialContext(context.Background(), "tcp", staticL.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	expectAccept(t, natsAccepted, natsL.Addr().String())

	// The discovered address stops answering: back to the static one.
	_ = natsL.Close()
	c, err = d.Dial("tcp", staticL.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	expectAccept(t, staticAccepted, staticL.Addr().String())

	// Nothing answers: one error listing the attempts.
	_ = staticL.Close()
	_, err = d.Dial("tcp", staticL.Addr().String())
	if err == nil || strings.Count(err.Error(), "connection refused") != 2 {
		t.Fatalf("err = %v, want both attempts refused", err)
	}

	// No locator at all.
	var nd Dialer
	if _, err := nd.Dial("tcp", ""); err == nil {
		t.Fatal("dial with no address succeeded")
	}
}
