// Package audit is warren's security audit, shared by the edge and the hub.
// An Auditor watches an embedded nats-server (system events through a
// system-account connection, the connection list, and the server's log
// lines through a log hook), optionally a mosquitto log file, and reports
// from its owner (unknown edge identities, unsigned hare datagrams, edge
// versions). It turns them into typed audit events, applies the alert
// rules (plain connections from untrusted addresses, old versions, brute
// force per address and per user with a temporary block, unknown edges,
// unsigned datagrams), keeps Prometheus metrics, and hands every event and
// alert to a Sink: the edge stores them in its EDGE stream under
// warren/audit/<kind>, the hub in its HUB stream.
//
// The rules are a pure core (rules.go, natslog.go, version.go) guarded by
// one mutex; everything else is a thin shell of goroutines around it.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sink receives audit events. The edge implements it by storing each event
// in its EDGE stream (topic Event.Topic(), source "audit", payload
// Encode(ev)); the hub by storing it in its HUB stream. Emit is called
// from one goroutine, one event at a time, with a context bounded by
// Config.EmitTimeout; an error is counted and logged, and the event is not
// retried.
type Sink interface {
	Emit(ctx context.Context, ev Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, ev Event) error

// Emit calls f.
func (f SinkFunc) Emit(ctx context.Context, ev Event) error { return f(ctx, ev) }

// Options are the auditor's collaborators.
type Options struct {
	// Sink receives the events; nil keeps them in metrics and logs only.
	Sink Sink
	// Logger; nil discards.
	Logger *slog.Logger
	// Registry receives the warren_audit_* metrics; nil makes a private one.
	Registry prometheus.Registerer
	// Observer names who observes (the edge id or the hub's server name);
	// it is set in every event that has none.
	Observer string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Auditor produces audit events and alerts. Make it with New, run it with
// Run, attach it to a server with Attach, and give it the server's log
// lines with NATSLogHook.
type Auditor struct {
	cfg      Config
	sink     Sink
	log      *slog.Logger
	now      func() time.Time
	observer string
	m        *metrics
	quiet    map[Kind]bool

	in      chan input
	out     chan Event
	running atomic.Bool

	mu    sync.Mutex
	rules *rules
	conns map[string]*conn // by connKey
	// closed are nats-server connections whose disconnect event was
	// handled (by cid; cids are never reused), with the time: nats-server
	// sends that event before it drops the connection from its list, so a
	// poll in between would list it again, and count its messages twice.
	closed map[uint64]time.Time
	// vanished are connections a poll no longer listed before their
	// disconnect event came (by cid), kept so the late event still finds
	// them.
	vanished   map[uint64]*conn
	lineRemote map[uint64]string
	versions   map[string]string // last version per reporter, so repeated reports are not re-emitted
	storeFull  map[string]uint64 // last store-full count per edge (EdgeStoreFull)
	hooks      []func(Block)
	att        *attachment
	traffic    *trafficAcc
}

// inputKind tells what an input carries.
type inputKind int

const (
	inObserve    inputKind = iota // ev: an observation (owner report, log line, mosquitto)
	inConnect                     // data: $SYS.ACCOUNT.*.CONNECT
	inDisconnect                  // data: $SYS.ACCOUNT.*.DISCONNECT
	inAuthErr                     // data: $SYS.SERVER.*.CLIENT.AUTH.ERR
	inLogLine                     // ev: classified nats-server log line
)

type input struct {
	kind inputKind
	ev   Event
	data []byte
}

// New checks cfg and makes an auditor. It starts nothing.
func New(cfg Config, o Options) (*Auditor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &Auditor{
		cfg:        cfg,
		sink:       o.Sink,
		log:        o.Logger,
		now:        o.Now,
		observer:   o.Observer,
		quiet:      map[Kind]bool{},
		in:         make(chan input, cfg.QueueSize),
		out:        make(chan Event, cfg.EmitQueue),
		rules:      newRules(cfg),
		conns:      map[string]*conn{},
		closed:     map[uint64]time.Time{},
		vanished:   map[uint64]*conn{},
		lineRemote: map[uint64]string{},
		versions:   map[string]string{},
		storeFull:  map[string]uint64{},
		traffic:    newTrafficAcc(),
	}
	for _, q := range cfg.Quiet {
		a.quiet[Kind(q)] = true
	}
	a.m = newMetrics(cfg, o.Now)
	if err := a.m.register(o.Registry); err != nil {
		return nil, fmt.Errorf("audit metrics: %w", err)
	}
	if err := o.Registry.Register(&connCollector{a: a}); err != nil {
		return nil, fmt.Errorf("audit metrics: %w", err)
	}
	return a, nil
}

// Run processes observations, polls the attached server, lifts blocks and
// emits events until ctx ends; then it detaches from the server and gives
// the sink up to EmitTimeout to take what is queued. It may be called once.
func (a *Auditor) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("audit: Run called twice")
	}
	emitCtx, emitCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer emitCancel()
	emitDone := make(chan struct{})
	go a.emitLoop(emitCtx, emitDone)

	poll := time.NewTicker(a.cfg.PollInterval)
	defer poll.Stop()
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	var trafficC <-chan time.Time
	if a.cfg.TrafficInterval > 0 {
		t := time.NewTicker(a.cfg.TrafficInterval)
		defer t.Stop()
		trafficC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			a.detach()
			a.drainInputs()
			close(a.out)
			select {
			case <-emitDone:
			case <-time.After(a.cfg.EmitTimeout):
				emitCancel()
				<-emitDone
			}
			return nil
		case in := <-a.in:
			a.handle(in)
		case <-poll.C:
			a.poll()
		case <-sweep.C:
			a.sweep()
		case <-trafficC:
			a.emitTraffic()
		}
	}
}

// drainInputs processes what is queued without waiting for more.
func (a *Auditor) drainInputs() {
	for {
		select {
		case in := <-a.in:
			a.handle(in)
		default:
			return
		}
	}
}

func (a *Auditor) emitLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for ev := range a.out {
		if ctx.Err() != nil {
			a.m.dropped.WithLabelValues("emit").Inc()
			continue
		}
		ectx, cancel := context.WithTimeout(ctx, a.cfg.EmitTimeout)
		err := a.sink.Emit(ectx, ev)
		cancel()
		if err != nil {
			a.m.emitErrors.Inc()
			a.log.Warn("audit event not stored", "kind", ev.Kind, "rule", ev.Rule, "err", err)
		}
	}
}

func (a *Auditor) enqueue(in input) {
	select {
	case a.in <- in:
	default:
		a.m.dropped.WithLabelValues("queue").Inc()
	}
}

// Report hands the auditor an event its owner observed (or an
// auth_failure seen by a custom authenticator). Kind must be set; Time,
// Observer and Source default to now, the auditor's observer and
// SourceOwner. It never blocks: when the queue is full the event is
// dropped and counted.
func (a *Auditor) Report(ev Event) {
	if !knownKind(ev.Kind) || ev.Kind == KindAlert || ev.Kind == KindTraffic || ev.Kind == KindUnblock {
		a.log.Warn("audit report of an unsupported kind ignored", "kind", ev.Kind)
		return
	}
	if ev.Source == "" {
		ev.Source = SourceOwner
	}
	a.enqueue(input{kind: inObserve, ev: ev})
}

// UnknownEdge reports a connection by an edge identity the hub does not
// know (no certificate issued, or a superseded one). reason is the
// refusal reason.
func (a *Auditor) UnknownEdge(id, remote, reason string) {
	a.Report(Event{Kind: KindUnknown, Edge: id, Remote: remote, Reason: reason, Protocol: "nats"})
}

// UnsignedDatagram reports an unsigned hare datagram from remote where
// signed ones are required. Call it for every such datagram: the auditor
// emits one event and one alert per source address and AlertCooldown, and
// counts the rest.
func (a *Auditor) UnsignedDatagram(remote string) {
	a.Report(Event{Kind: KindUnsigned, Remote: remote, Protocol: "udp", Listener: "udp"})
}

// EdgeVersion reports an edge's version (the edge at start, the hub from
// heartbeats). A version event is emitted when it changes; the minimum
// "edge:" version is checked every time (alerts are limited by
// AlertCooldown).
func (a *Auditor) EdgeVersion(id, version, remote string) {
	a.Report(Event{Kind: KindVersion, Edge: id, Lang: "edge", Version: version, Remote: remote})
}

// EdgeStoreFull reports an edge's count of events refused because its
// store was full (cumulative since the edge started, from its heartbeat).
// A count that grew gives a store_full event and an edge_store_full alert
// (critical: the site is losing new events), at most one alert per edge
// and cooldown; an unchanged count or zero gives nothing. The edge cannot
// store this event itself, so the hub reports it.
func (a *Auditor) EdgeStoreFull(id string, refused uint64) {
	a.mu.Lock()
	last, seen := a.storeFull[id]
	if refused == last || (!seen && refused == 0) {
		a.mu.Unlock()
		return
	}
	if !seen {
		room(a.storeFull, a.cfg.MaxTracked, func(uint64) bool { return false })
	}
	a.storeFull[id] = refused
	a.mu.Unlock()
	if refused < last || refused == 0 {
		return // the edge restarted: its counter starts again
	}
	a.Report(Event{Kind: KindStoreFull, Edge: id, Count: int(min(refused-last, uint64(math.MaxInt32))),
		Reason: fmt.Sprintf("%d events refused since the edge started", refused)})
}

// Blocked reports whether addr ("ip", "ip:port" or "[v6]:port") is
// blocked by the brute-force rule. A custom authenticator can refuse such
// connections before checking credentials.
func (a *Auditor) Blocked(addr string) bool {
	ip := hostOf(addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rules.addrBlocked(ip, a.now())
}

// BlockedUser reports whether user is blocked (only when
// UserBruteForce.Block is set).
func (a *Auditor) BlockedUser(user string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rules.userBlocked(user, a.now())
}

// Blocks lists the blocks in force.
func (a *Auditor) Blocks() []Block {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rules.blocks(a.now())
}

// OnBlock registers f to be called when a block starts or is lifted
// (Block.Lifted). f runs on the auditor's goroutine and must not block;
// it may call Blocked.
func (a *Auditor) OnBlock(f func(Block)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hooks = append(a.hooks, f)
}

func (a *Auditor) runHooks(blocks []Block) {
	if len(blocks) == 0 {
		return
	}
	a.mu.Lock()
	hooks := append([]func(Block){}, a.hooks...)
	a.mu.Unlock()
	for _, b := range blocks {
		for _, f := range hooks {
			f(b)
		}
	}
}

func (a *Auditor) handle(in input) {
	switch in.kind {
	case inObserve:
		a.observe(in.ev)
	case inLogLine:
		a.logLine(in.ev)
	case inConnect:
		a.sysConnect(in.data)
	case inDisconnect:
		a.sysDisconnect(in.data)
	case inAuthErr:
		a.sysAuthErr(in.data)
	}
}

// observe applies the rules to one observation and emits it and its alerts.
func (a *Auditor) observe(ev Event) {
	now := a.now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC()
	if ev.Observer == "" {
		ev.Observer = a.observer
	}
	a.m.events.WithLabelValues(string(ev.Kind)).Inc()

	var (
		alerts   []Event
		blocks   []Block
		suppress bool
		refuse   bool
	)
	a.mu.Lock()
	switch ev.Kind {
	case KindAuthFail:
		alerts, blocks, suppress = a.rules.authFailure(ev, now)
	case KindConnect:
		alerts, refuse = a.rules.connect(ev, now)
		a.trackConnect(ev)
	case KindDisconnect:
		a.trackDisconnect(ev)
	case KindVersion:
		who := ev.Lang + "|" + ev.Edge + "|" + ev.ClientID + "|" + ev.Observer
		if a.versions[who] == ev.Version {
			suppress = true
		} else {
			room(a.versions, a.cfg.MaxTracked, func(string) bool { return false })
			a.versions[who] = ev.Version
		}
		if al, ok := a.rules.oldVersion(ev, ev.Lang, now); ok {
			alerts = append(alerts, al)
		}
	case KindUnknown:
		key := ev.Edge
		if key == "" {
			key = hostOf(ev.Remote)
		}
		msg := fmt.Sprintf("unknown edge identity %q from %s (%s)", ev.Edge, orDash(ev.Remote), orDash(ev.Reason))
		al, ok := a.rules.once(RuleUnknown, SeverityCritical, key, ev, now, msg)
		if ok {
			alerts = append(alerts, al)
		} else {
			suppress = true
		}
	case KindStoreFull:
		msg := fmt.Sprintf("edge %s store full: refusing new events (%s)", ev.Edge, ev.Reason)
		al, ok := a.rules.once(RuleStoreFull, SeverityCritical, ev.Edge, ev, now, msg)
		if ok {
			alerts = append(alerts, al)
		}
	case KindUnsigned:
		ip := hostOf(ev.Remote)
		msg := fmt.Sprintf("unsigned hare datagram from %s where signed ones are required", orDash(ev.Remote))
		al, ok := a.rules.once(RuleUnsigned, SeverityWarning, ip, ev, now, msg)
		if ok {
			if al.Count > 1 {
				al.Message += fmt.Sprintf(" (%d since the last alert)", al.Count)
			}
			alerts = append(alerts, al)
		} else {
			suppress = true
		}
	}
	a.mu.Unlock()

	if ev.Kind == KindAuthFail {
		a.m.authFail.WithLabelValues(listenerLabel(ev)).Inc()
	}
	if ev.Kind == KindConnect {
		a.m.connsTotal.WithLabelValues(listenerLabel(ev), tlsLabel(ev.TLS)).Inc()
	}
	if refuse {
		a.refuseBlocked(ev, now)
	}
	if !suppress {
		a.emit(ev)
	}
	for _, al := range alerts {
		al.Observer = ev.Observer
		a.m.alerts.WithLabelValues(string(al.Rule)).Inc()
		a.log.Warn("audit alert", "rule", al.Rule, "key", al.Key, "count", al.Count, "message", al.Message)
		a.emit(al)
	}
	for _, b := range blocks {
		a.m.blocksTotal.WithLabelValues(b.Scope).Inc()
		a.m.blocked.WithLabelValues(b.Scope).Inc()
	}
	a.runHooks(blocks)
}

// refuseBlocked closes a connection that logged in from a blocked address
// and emits one disconnect event per address and cooldown.
func (a *Auditor) refuseBlocked(ev Event, now time.Time) {
	a.m.blockedConns.Inc()
	closed := false
	if a.cfg.DisconnectBlocked && ev.CID != 0 && ev.Source == SourceNATS {
		a.mu.Lock()
		att := a.att
		a.mu.Unlock()
		if att != nil {
			if err := att.srv.DisconnectClientByID(ev.CID); err == nil {
				closed = true
			} else {
				a.log.Debug("closing blocked connection", "cid", ev.CID, "err", err)
			}
		}
	}
	a.mu.Lock()
	_, ok := a.rules.fire(Rule("blocked_login"), hostOf(ev.Remote)+"|"+ev.User, now)
	a.mu.Unlock()
	a.log.Warn("login from a blocked address or user", "remote", ev.Remote, "user", ev.User, "client_id", ev.ClientID, "closed", closed)
	if !ok {
		return
	}
	d := ev
	d.Kind = KindDisconnect
	d.Reason = "blocked by the audit (brute force)"
	if !closed {
		d.Reason = "login from a blocked address or user (not closed)"
	}
	a.emit(d)
}

func (a *Auditor) emit(ev Event) {
	if a.quiet[ev.Kind] || a.sink == nil {
		a.log.Debug("audit event", "kind", ev.Kind, "remote", ev.Remote, "client_id", ev.ClientID, "user", ev.User, "reason", ev.Reason)
		return
	}
	select {
	case a.out <- ev:
	default:
		a.m.dropped.WithLabelValues("emit").Inc()
	}
}

// sweep lifts expired blocks.
func (a *Auditor) sweep() {
	now := a.now()
	a.mu.Lock()
	lifted := a.rules.sweep(now)
	a.pruneClosed(now)
	a.mu.Unlock()
	for _, b := range lifted {
		a.m.blocked.WithLabelValues(b.Scope).Dec()
		until := b.Until
		a.log.Info("audit block lifted", "scope", b.Scope, "key", b.Key, "suppressed", b.Suppressed)
		a.m.events.WithLabelValues(string(KindUnblock)).Inc()
		a.emit(Event{
			Kind: KindUnblock, Time: now.UTC(), Observer: a.observer, Source: SourceRules, Key: b.Key,
			Count: b.Suppressed, Until: &until,
			Message: fmt.Sprintf("%s %s unblocked after %s; %d attempts refused or ignored meanwhile",
				b.Scope, b.Key, b.Until.Sub(b.Since).Round(time.Second), b.Suppressed),
		})
	}
	a.runHooks(lifted)
}

// closedKeep is how long a closed or vanished connection is remembered:
// several polls, so a stale connection list cannot bring it back.
func (a *Auditor) closedKeep() time.Duration {
	return 3*a.cfg.PollInterval + 10*time.Second
}

// pruneClosed forgets closed and vanished connections older than
// closedKeep; callers hold a.mu.
func (a *Auditor) pruneClosed(now time.Time) {
	keep := a.closedKeep()
	for cid, at := range a.closed {
		if now.Sub(at) > keep {
			delete(a.closed, cid)
		}
	}
	for cid, c := range a.vanished {
		if now.Sub(c.gone) > keep {
			delete(a.vanished, cid)
		}
	}
}

func listenerLabel(ev Event) string {
	switch {
	case ev.Listener != "":
		return ev.Listener
	case ev.Protocol != "":
		return ev.Protocol
	}
	return "unknown"
}

func tlsLabel(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// conn is an open client connection the auditor knows of.
type conn struct {
	key     string
	ev      Event // its connect event
	device  string
	lastIn  int64
	lastOut int64
	subs    map[string]subCount // by sid
	missing int                 // polls that did not list it
	gone    time.Time           // when a poll gave it up (vanished)
}

type subCount struct {
	filter string
	msgs   int64
}

func connKey(ev Event) string {
	if ev.Source == SourceNATS && ev.CID != 0 {
		return "nats|" + strconv.FormatUint(ev.CID, 10)
	}
	return ev.Source + "|" + ev.Listener + "|" + ev.ClientID
}

// deviceName is the client label of a connection: its MQTT client id, or
// its NATS connection name, or "nats:<user>".
func deviceName(ev Event) string {
	switch {
	case ev.ClientID != "":
		return ev.ClientID
	case ev.User != "":
		return ev.Protocol + ":" + ev.User
	}
	return ev.Protocol + ":anonymous"
}

// trackConnect and trackDisconnect keep the connection table; callers
// hold a.mu.
func (a *Auditor) trackConnect(ev Event) {
	k := connKey(ev)
	if c := a.conns[k]; c != nil && ev.Source == SourceNATS {
		// already listed by a poll: keep its counters
		c.ev, c.device = ev, deviceName(ev)
		return
	}
	a.conns[k] = &conn{key: k, ev: ev, device: deviceName(ev), subs: map[string]subCount{}}
}

func (a *Auditor) trackDisconnect(ev Event) {
	delete(a.conns, connKey(ev))
}

// connCollector exposes warren_audit_connections from the table at scrape
// time.
type connCollector struct{ a *Auditor }

var connDesc = prometheus.NewDesc("warren_audit_connections",
	"Client connections open now, by listener and TLS version (\"none\" for plain).", []string{"listener", "tls"}, nil)

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- connDesc }

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ l, t string }
	counts := map[key]int{}
	c.a.mu.Lock()
	for _, cn := range c.a.conns {
		counts[key{listenerLabel(cn.ev), tlsLabel(cn.ev.TLS)}]++
	}
	c.a.mu.Unlock()
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(connDesc, prometheus.GaugeValue, float64(n), k.l, k.t)
	}
}
