package discovery

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// trafficCounters counts gossip bytes and packets on the wire, after
// encryption and labelling: UDP datagrams plus TCP stream bytes.
type trafficCounters struct {
	bytesSent, bytesReceived     atomic.Uint64
	packetsSent, packetsReceived atomic.Uint64
	emptyStreams                 atomic.Uint64 // connections closed before their first byte
	// Of the bytes above, those carried by TCP streams (joins, push/pull,
	// TCP pings).
	streamBytesSent, streamBytesReceived atomic.Uint64
}

// countingTransport wraps memberlist's NetTransport to count traffic and to
// abort in-flight dials when the node shuts down.
type countingTransport struct {
	inner    *memberlist.NetTransport
	counters *trafficCounters
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	ctx      context.Context // cancelled when Shutdown starts: aborts dials, drops traffic
	cancel   context.CancelFunc
	done     chan struct{} // closed when the inner transport is down
	// peekTimeout bounds the wait for an accepted stream's first byte.
	peekTimeout time.Duration
	once        sync.Once
	wg          sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

// newCountingTransport binds UDP and TCP on addr:port. Port 0 picks a free
// port that is free for both protocols (retried a few times, like memberlist).
func newCountingTransport(addr string, port int, peekTimeout time.Duration, logger *log.Logger, counters *trafficCounters) (*countingTransport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var inner *memberlist.NetTransport
	var err error
	for range tries {
		inner, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{addr},
			BindPort:  port,
			Logger:    logger,
		})
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bind gossip on %s: %w", net.JoinHostPort(addr, fmt.Sprint(port)), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &countingTransport{
		inner:       inner,
		counters:    counters,
		packetCh:    make(chan *memberlist.Packet),
		streamCh:    make(chan net.Conn),
		ctx:         ctx,
		cancel:      cancel,
		done:        make(chan struct{}),
		peekTimeout: peekTimeout,
	}
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

// port is the bound port.
func (t *countingTransport) port() int { return t.inner.GetAutoBindPort() }

func (t *countingTransport) forwardPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case p := <-in:
			t.counters.packetsReceived.Add(1)
			t.counters.bytesReceived.Add(uint64(len(p.Buf)))
			select {
			case t.packetCh <- p:
			case <-t.ctx.Done(): // shutting down: drop, keep draining
			}
		case <-t.done:
			return
		}
	}
}

func (t *countingTransport) forwardStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case c := <-in:
			t.wg.Add(1)
			go t.handOff(c)
		case <-t.done:
			return
		}
	}
}

// handOff passes an accepted stream to memberlist once its first byte has
// arrived. A connection closed before sending anything (a port scan, a
// health check, a peer's TCP ping that gave up while connecting) is closed
// quietly: memberlist would log it as a stream with the wrong (empty) label,
// which would count as a refusal.
func (t *countingTransport) handOff(c net.Conn) {
	defer t.wg.Done()
	stop := context.AfterFunc(t.ctx, func() { _ = c.Close() })
	defer stop()
	cc := &countingConn{Conn: c, counters: t.counters}
	_ = c.SetReadDeadline(time.Now().Add(t.peekTimeout))
	var first [1]byte
	if _, err := io.ReadFull(cc, first[:]); err != nil {
		t.counters.emptyStreams.Add(1)
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	select {
	case t.streamCh <- &prefixedConn{countingConn: cc, prefix: first[:]}:
	case <-t.ctx.Done(): // shutting down: refuse
		_ = c.Close()
	}
}

func (t *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	ts, err := t.inner.WriteToAddress(b, a)
	if err == nil {
		t.counters.packetsSent.Add(1)
		t.counters.bytesSent.Add(uint64(len(b)))
	}
	return ts, err
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(t.ctx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, counters: t.counters}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown aborts dials, closes the listeners and stops forwarding. The
// forwarders keep draining the inner transport until its listeners are gone,
// so none of them can block on a channel nobody reads. Safe to call twice.
func (t *countingTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		t.cancel()
		err = t.inner.Shutdown()
		close(t.done)
		t.wg.Wait()
	})
	return err
}

// prefixedConn replays bytes already read from the stream.
type prefixedConn struct {
	*countingConn
	prefix []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.countingConn.Read(p)
}

// countingConn counts the bytes of one gossip stream.
type countingConn struct {
	net.Conn
	counters *trafficCounters
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.counters.bytesReceived.Add(uint64(n))
	c.counters.streamBytesReceived.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.counters.bytesSent.Add(uint64(n))
	c.counters.streamBytesSent.Add(uint64(n))
	return n, err
}
