package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/version"
)

// errGap reports that the edge consumer skipped a stored event (a delivery
// went to a pull request that no longer exists); forwarding rewinds to it.
var errGap = errors.New("edge consumer skipped a stored event")

// hubConn is one TCP connection to the hub. The bridge never lets nats.go
// reconnect a connection in place: a new connection is a new hubConn, made
// only after everything sent on the old one is settled (see ARCHITECTURE.md).
type hubConn struct {
	nc     *nats.Conn
	addr   string
	since  time.Time
	closed chan struct{} // closed once nc is closed

	mu  sync.Mutex
	err error // why the connection was lost, if known
}

func (c *hubConn) setErr(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *hubConn) lost() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return errors.New("connection to the hub closed")
}

// connect dials the hub (hook addresses first, then hub.url), does the TLS
// handshake against the fixed server name, and the NATS handshake.
func (b *Bridge) connect(ctx context.Context) (*hubConn, error) {
	tlsCfg, err := loadTLS(b.cfg)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(tlsCfg, b.edgeID); err != nil {
		return nil, err
	}
	d := &dialer{ctx: ctx, hook: b.hook, static: b.static, timeout: b.cfg.DialTimeout}
	conn := &hubConn{closed: make(chan struct{})}
	var once sync.Once
	placeholder := b.static
	if placeholder == "" {
		placeholder = net.JoinHostPort(b.cfg.ServerName, DefaultPort)
	}
	nc, err := nats.Connect("tls://"+placeholder,
		nats.Name("warren-edge "+b.edgeID+" "+version.Version),
		nats.Secure(tlsCfg),
		nats.CustomInboxPrefix("_INBOX_"+b.edgeID),
		nats.SetCustomDialer(d),
		nats.SkipHostLookup(),
		nats.NoReconnect(),
		nats.ReconnectBufSize(-1),
		nats.Timeout(b.cfg.DialTimeout),
		nats.PingInterval(b.cfg.Heartbeat),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { conn.setErr(err) }),
		nats.ClosedHandler(func(_ *nats.Conn) { once.Do(func() { close(conn.closed) }) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			// A permissions violation reaches the operator here (the publish
			// it concerns times out and is resent); write errors on a dying
			// connection come once per flush and are only traced.
			if errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrAuthorization) {
				b.fail(failPublish, fmt.Errorf("hub: %w", err))
				return
			}
			b.log.Debug("hub connection error", "err", err)
		}),
	)
	if err != nil {
		if derr := d.lastErr(); derr != nil && errors.Is(err, nats.ErrNoServers) {
			return nil, fmt.Errorf("connect to hub: %w", derr)
		}
		if a := d.addr(); a != "" {
			return nil, fmt.Errorf("connect to hub at %s: %w", a, err)
		}
		return nil, fmt.Errorf("connect to hub: %w", err)
	}
	conn.nc = nc
	conn.addr = d.addr()
	conn.since = time.Now().UTC()
	return conn, nil
}

func (b *Bridge) linkUp(conn *hubConn) {
	tlsv := ""
	if cs, err := conn.nc.TLSConnectionState(); err == nil {
		tlsv = tlsVersionName(cs.Version)
	}
	b.mu.Lock()
	b.st.state = StateConnected
	b.st.url = "tls://" + conn.addr
	b.st.tlsVersion = tlsv
	b.st.since = conn.since
	b.mu.Unlock()
	b.m.setState(StateConnected)
	b.m.connects.Inc()
	b.log.Info("hub link up", "url", "tls://"+conn.addr, "server_name", b.cfg.ServerName, "tls", tlsv)
}

func (b *Bridge) linkDown(err error) {
	b.mu.Lock()
	b.st.state = StateDisconnected
	b.st.tlsVersion = ""
	b.st.since = time.Time{}
	b.mu.Unlock()
	b.m.setState(StateDisconnected)
	if err == nil {
		err = errors.New("connection to the hub closed")
	}
	b.fail(failLink, fmt.Errorf("hub link down: %w", err))
}

// session forwards over one hub connection until it is lost or ctx ends.
// Between failures that leave the connection up it rewinds the edge
// consumer to the first unconfirmed event and forwards again.
func (b *Bridge) session(ctx context.Context, conn *hubConn, edge jetstream.JetStream, cons jetstream.Consumer) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// Closing before waiting ends a heartbeat blocked on a dead link at once.
	defer conn.nc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		select {
		case <-conn.closed:
			cancel()
		case <-sctx.Done():
		}
	})
	hub, err := jetstream.New(conn.nc,
		jetstream.WithPublishAsyncMaxPending(2*b.cfg.Inflight+b.cfg.Batch),
		jetstream.WithPublishAsyncTimeout(b.cfg.PublishTimeout))
	if err != nil {
		return fmt.Errorf("hub jetstream context: %w", err)
	}
	defer hub.CleanupPublisher()
	b.linkUp(conn)
	wg.Go(func() { b.heartbeatLoop(sctx, conn) })

	stream, err := edge.Stream(sctx, event.EdgeStream)
	if err != nil {
		b.fail(failEdge, fmt.Errorf("edge stream: %w", err))
	}
	var from uint64 // 0: the consumer's ack floor
	failures := 0
	for {
		if stream == nil {
			if stream, err = edge.Stream(sctx, event.EdgeStream); err != nil {
				stream = nil
			}
		}
		res := b.forward(sctx, hub, edge, stream, cons, from)
		if ctx.Err() != nil {
			return nil
		}
		if sctx.Err() != nil {
			return conn.lost()
		}
		if res.progress {
			failures = 0
		}
		if res.err != nil {
			b.fail(res.kind, res.err)
		}
		if res.checkLink {
			if err := conn.nc.FlushTimeout(b.cfg.PublishTimeout); err != nil {
				return fmt.Errorf("hub stopped answering: %w", err)
			}
		}
		b.m.rewinds.Inc()
		from = res.resume
		b.log.Debug("rewinding edge consumer", "from_seq", from)
		if !sleep(sctx, b.backoff(failures)) {
			continue // the loop head sees the closed connection or ctx
		}
		failures++
	}
}

// forwardResult tells session how one pass ended.
type forwardResult struct {
	resume    uint64 // stream sequence to rewind to; 0 means the ack floor
	err       error
	kind      string
	progress  bool // at least one event was confirmed
	checkLink bool // a publish timed out: make sure the hub still answers
}

// flight is one event published to the hub and not yet settled.
type flight struct {
	msg jetstream.Msg
	seq uint64
	fut jetstream.PubAckFuture
}

// settled is what the confirmer reports when its window is drained.
type settled struct {
	failed    bool
	first     uint64 // first unconfirmed sequence when failed
	err       error
	confirmed int
	timeout   bool
	lost      bool // the connection or the session ended with publishes unanswered
}

// forward is one pass: rewind the consumer to from, then pull, publish and
// confirm in order until something fails, the connection is lost or ctx
// ends. It returns only after every publish of the pass is settled (answered
// or timed out) or the connection is closed, so nothing of this pass can
// reach the hub after the next pass starts.
func (b *Bridge) forward(ctx context.Context, hub jetstream.JetStream, edge jetstream.JetStream, stream jetstream.Stream, cons jetstream.Consumer, from uint64) forwardResult {
	rctx, stop := context.WithCancel(ctx)
	defer stop()

	b.settleWaiting(rctx, cons)
	reset, err := b.rewind(rctx, edge, from)
	if err != nil {
		return forwardResult{resume: from, err: fmt.Errorf("rewind edge consumer to %d: %w", from, err), kind: failEdge}
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(b.cfg.Batch))
	if err != nil {
		return forwardResult{resume: reset, err: fmt.Errorf("pull from edge consumer: %w", err), kind: failEdge}
	}
	defer iter.Stop()

	window := make(chan *flight, b.cfg.Inflight)
	done := make(chan settled, 1)
	var wd stallWatch
	go b.confirm(ctx, window, stop, done, &wd.held)
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		wd.run(rctx, cons, b.stallCheck, stop)
	}()
	defer func() { stop(); <-wdDone }()

	epoch := b.src.Epoch()
	last := reset - 1 // highest sequence of this pass handed to the hub
	var (
		pubErr  error
		pubSeq  uint64
		pubKind = failPublish
	)
loop:
	for {
		wd.waiting.Store(true)
		m, err := iter.Next(jetstream.NextContext(rctx))
		wd.waiting.Store(false)
		wd.received.Add(1)
		if err != nil {
			if rctx.Err() == nil {
				pubErr, pubSeq, pubKind = fmt.Errorf("pull from edge consumer: %w", err), last+1, failEdge
			}
			break
		}
		md, err := m.Metadata()
		if err != nil {
			pubErr, pubSeq, pubKind = fmt.Errorf("edge message metadata: %w", err), last+1, failEdge
			break
		}
		seq := md.Sequence.Stream
		if seq <= last {
			// Delivered again after ack_wait while its first delivery is
			// still in this pass: that one settles it.
			continue
		}
		if seq > last+1 && stream != nil {
			if first, gap := b.gap(rctx, stream, last+1, seq); gap {
				pubErr, pubSeq, pubKind = fmt.Errorf("%w: got %d, %d is stored", errGap, seq, first), first, failEdge
				break
			}
		}
		last = seq
		fut, err := hub.PublishMsgAsync(hubMsg(b.edgeID, epoch, m, seq), jetstream.WithRetryAttempts(0))
		if err != nil {
			pubErr, pubSeq = fmt.Errorf("publish seq %d to hub: %w", seq, err), seq
			break
		}
		wd.held.Add(1)
		select {
		case window <- &flight{msg: m, seq: seq, fut: fut}:
		case <-rctx.Done():
			// The confirmer stopped at an earlier sequence; this one is
			// after it and is resent from there.
			break loop
		}
	}
	iter.Stop()
	close(window)
	s := <-done

	res := forwardResult{progress: s.confirmed > 0, resume: last + 1}
	switch {
	case s.failed:
		res.resume, res.err, res.kind, res.checkLink = s.first, s.err, failPublish, s.timeout
	case pubErr != nil:
		res.resume, res.err, res.kind = pubSeq, pubErr, pubKind
	case wd.stalled.Load() != nil:
		res.err, res.kind = fmt.Errorf("%w (%s); rewinding to %d", errStalled, *wd.stalled.Load(), last+1), failEdge
	}
	return res
}

// errStalled reports that the bridge's pull waited while the edge consumer
// had events for it: undelivered ones, or deliveries the bridge never got
// (sent to a pull request that is gone, with no later event to reveal the
// gap). Without this check the bridge would wait for ack_wait (30 s by
// default) or, if the consumer itself stopped, for ever.
var errStalled = errors.New("edge consumer stopped delivering")

// defaultStallCheck is how often a waiting pull is checked for a stall;
// one is declared after two checks in a row find it.
const defaultStallCheck = 2 * time.Second

// stallWatch notices a pull that waits while the edge consumer holds events
// for it.
type stallWatch struct {
	waiting  atomic.Bool            // forward is blocked in iter.Next
	received atomic.Uint64          // Next calls that returned
	held     atomic.Int64           // events handed to the confirmer, not yet settled
	stalled  atomic.Pointer[string] // why, once declared
}

func (w *stallWatch) run(ctx context.Context, cons jetstream.Consumer, every time.Duration, stop func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	suspect, seen := false, w.received.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := w.received.Load(); !w.waiting.Load() || now != seen {
			suspect, seen = false, now
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, max(every, 5*time.Second))
		info, err := cons.Info(cctx)
		cancel()
		// Deliveries awaiting an ack while the bridge holds none went
		// somewhere else.
		lostDeliveries := info != nil && info.NumAckPending > 0 && w.held.Load() == 0
		if err != nil || w.received.Load() != seen || (info.NumPending == 0 && !lostDeliveries) {
			suspect = false
			continue
		}
		if !suspect {
			suspect = true
			continue
		}
		why := fmt.Sprintf("%d undelivered, %d delivered elsewhere awaiting ack, %d pull requests waiting, nothing received for %s",
			info.NumPending, info.NumAckPending, info.NumWaiting, 2*every)
		if !lostDeliveries {
			why = fmt.Sprintf("%d undelivered, %d pull requests waiting, nothing received for %s", info.NumPending, info.NumWaiting, 2*every)
		}
		w.stalled.Store(&why)
		stop()
		return
	}
}

// rewind points the consumer at sequence from (0: its ack floor) and
// returns the sequence it will deliver first. The reset also drops every
// pending delivery, so what the last pass left unsettled is delivered again.
func (b *Bridge) rewind(ctx context.Context, edge jetstream.JetStream, from uint64) (uint64, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := edge.ResetConsumerToSequence(cctx, event.EdgeStream, Durable, from)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err = b.ensureConsumer(ctx, edge); err == nil {
			r, err = edge.ResetConsumerToSequence(cctx, event.EdgeStream, Durable, from)
		}
	}
	if err != nil {
		return 0, err
	}
	if r.ResetSeq == 0 {
		return 1, nil
	}
	return r.ResetSeq, nil
}

// settleWaiting waits, for at most two seconds, until the consumer has no
// pull request waiting. The iterator of the previous pass unsubscribes in
// the background after Stop; a request of it still queued at the server
// would receive the first rewound events and lose them until ack_wait. The
// consumer info request makes the server drop requests nobody listens to.
// If the wait runs out, the gap check in forward is the safety net.
func (b *Bridge) settleWaiting(ctx context.Context, cons jetstream.Consumer) {
	deadline := time.Now().Add(2 * time.Second)
	for d := time.Millisecond; time.Now().Before(deadline); d = min(2*d, 50*time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := cons.Info(cctx)
		cancel()
		if err != nil || info.NumWaiting == 0 {
			return
		}
		if !sleep(ctx, d) {
			return
		}
	}
}

// gap reports whether the edge stream holds an event with a sequence in
// [next, got): one the consumer delivered to a pull request of an earlier
// pass that is gone. Forwarding got first would break the order.
func (b *Bridge) gap(ctx context.Context, stream jetstream.Stream, next, got uint64) (uint64, bool) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := stream.GetMsg(cctx, next, jetstream.WithGetMsgSubject(event.EdgeSubjectPrefix+">"))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, false
		}
		// Cannot tell: rewind to be safe.
		return next, true
	}
	return raw.Sequence, raw.Sequence < got
}

// confirm settles the window in publish order: an event the hub confirmed
// is acked at the edge. At the first failure it stops the publisher (stop)
// and keeps settling what is already published, each future being bounded
// by the publish timeout, so the next pass starts with nothing of this one
// outstanding. When the connection is lost or ctx ends (ctx is the session's
// context), nothing more can be answered and it gives up at once.
func (b *Bridge) confirm(ctx context.Context, window <-chan *flight, stop func(), out chan<- settled, held *atomic.Int64) {
	var s settled
	for f := range window {
		b.settle(ctx, f, stop, &s)
		held.Add(-1)
		if s.lost {
			drain(window)
			out <- s
			return
		}
	}
	out <- s
}

// settle waits for the hub's answer to one flight and acks it at the edge
// when confirmed; s.lost says the connection or ctx ended first.
func (b *Bridge) settle(ctx context.Context, f *flight, stop func(), s *settled) {
	var (
		ack *jetstream.PubAck
		err error
	)
	select {
	case ack = <-f.fut.Ok():
	case err = <-f.fut.Err():
	default:
		select {
		case ack = <-f.fut.Ok():
		case err = <-f.fut.Err():
		case <-ctx.Done():
			if !s.failed {
				s.failed, s.first, s.err = true, f.seq, errors.New("connection lost with publishes unanswered")
			}
			s.lost = true
			stop()
			return
		}
	}
	if err != nil {
		if !s.failed {
			s.failed, s.first = true, f.seq
			s.err = fmt.Errorf("seq %d not confirmed by the hub: %w", f.seq, err)
			s.timeout = errors.Is(err, jetstream.ErrAsyncPublishTimeout)
			stop()
		}
		return
	}
	// Confirmed: the hub stored it (or already had it). Acking events
	// confirmed after an earlier failure is right too: the hub holds them,
	// and the rewind only resends what is still stored.
	if aerr := f.msg.Ack(); aerr != nil {
		b.log.Debug("edge ack failed; the event will be resent and deduplicated", "seq", f.seq, "err", aerr)
	}
	s.confirmed++
	b.forwarded.Add(1)
	b.m.forwarded.Inc()
	if ack.Duplicate {
		b.duplicates.Add(1)
		b.m.duplicates.Inc()
	}
}

// drain empties a closed-on-exit window channel.
func drain(window <-chan *flight) {
	for range window {
	}
}

// hubMsg is the hub publish of edge event m (stream sequence seq): subject
// edge.<id>.<subject without ev.>, the event's headers except NATS/JetStream
// control headers (Nats-*, meant for the edge stream, not the hub's), and
// the Msg-Id and provenance headers.
func hubMsg(edgeID, epoch string, m jetstream.Msg, seq uint64) *nats.Msg {
	h := event.WithoutControl(m.Headers(), 4)
	h[event.HdrMsgID] = []string{event.MsgID(edgeID, epoch, seq)}
	h[event.HdrEpoch] = []string{epoch}
	h[event.HdrSeq] = []string{strconv.FormatUint(seq, 10)}
	h[event.HdrEdge] = []string{edgeID}
	return &nats.Msg{Subject: event.IngestSubject(edgeID, m.Subject()), Header: h, Data: m.Data()}
}

// heartbeatLoop sends the status heartbeat right away and then every
// Config.Heartbeat, measuring the RTT each time.
func (b *Bridge) heartbeatLoop(ctx context.Context, conn *hubConn) {
	subj := event.IngestSubject(b.edgeID, StatusSubject)
	t := time.NewTicker(b.cfg.Heartbeat)
	defer t.Stop()
	for {
		if rtt, err := conn.nc.RTT(); err == nil {
			b.mu.Lock()
			b.st.rtt = rtt
			b.mu.Unlock()
			b.m.rtt.Set(rtt.Seconds())
		}
		body, err := json.Marshal(b.heartbeat())
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, b.cfg.PublishTimeout)
			_, err = conn.nc.RequestWithContext(rctx, subj, body)
			cancel()
			if err != nil && ctx.Err() == nil {
				b.log.Debug("status heartbeat not answered", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
