package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/version"
)

// Durable is the name of the bridge's durable pull consumer on the edge
// stream.
const Durable = "bridge"

// StatusSubject is the subject token of the status heartbeat
// (event.StatusSubject).
const StatusSubject = event.StatusSubject

// Source is what the bridge needs from the edge runtime.
type Source interface {
	// JetStream is a JetStream context on the edge's own server, where the
	// EDGE stream (WorkQueue retention, subjects ev.>) lives.
	JetStream() jetstream.JetStream
	// EdgeID is this edge's id (internal/event.ValidID).
	EdgeID() string
	// Epoch is the random id made when the edge's store was created; it is
	// part of every Msg-Id so a wiped store never collides with old ids.
	Epoch() string
}

// StoreFullSource is what a Source may also implement to report, in the
// heartbeat, how many events it refused because its store was full (the
// edge cannot store an event about that, so the hub raises the alert).
type StoreFullSource interface {
	// StoreFullRefused is the number of events refused as store_full since
	// the edge started.
	StoreFullRefused() uint64
}

// Option changes how New builds a Bridge.
type Option func(*Bridge)

// WithHubAddrs sets the dial hook: it is called on every (re)connect and
// returns the hub's current addresses ("tls://host:port", "nats://host:port"
// or "host:port"), tried in order before the static hub.url. Discovery's
// HubURLs fits. The TLS server name stays Config.ServerName whatever the
// address.
func WithHubAddrs(f func() []string) Option {
	return func(b *Bridge) { b.hook = f }
}

// Bridge forwards the edge stream to the hub. Make one with New and run it
// with Run; Status may be called at any time from any goroutine.
type Bridge struct {
	cfg        Config
	src        Source
	log        *slog.Logger
	m          *metrics
	hook       func() []string
	static     string // host:port of Config.URL, or ""
	configured bool
	started    time.Time
	edgeID     string
	running    atomic.Bool
	stallCheck time.Duration // see defaultStallCheck; tests shorten it

	forwarded  atomic.Uint64
	duplicates atomic.Uint64
	failures   atomic.Uint64

	stream atomic.Pointer[streamRef] // the edge stream, once looked up

	mu       sync.Mutex
	st       linkState
	warned   string    // the failure last logged at warn level
	warnedAt time.Time // and when
}

// streamRef holds the edge stream handle for atomic.Pointer.
type streamRef struct{ s jetstream.Stream }

// backlogFresh is how old the backlog figures may be when Status is called;
// older ones are read again from the edge stream.
const backlogFresh = 100 * time.Millisecond

// linkState is the mutable part of Status, guarded by Bridge.mu.
type linkState struct {
	state        string
	url          string
	tlsVersion   string
	since        time.Time
	rtt          time.Duration
	lastErr      string
	lastErrAt    time.Time
	backlogMsgs  uint64
	backlogBytes uint64
	oldest       time.Time // first stored time of the oldest unconfirmed event
	backlogAt    time.Time // when the backlog figures were read
}

// LinkStatus is the hub link as `edge status` shows it. It encodes to JSON.
type LinkStatus struct {
	// State is "connected", "connecting" (never connected since start),
	// "disconnected" (lost, retrying) or "not configured".
	State string `json:"state"`
	// URL is the address last dialled successfully, as tls://host:port.
	URL string `json:"url,omitempty"`
	// ServerName is the TLS server name the hub is verified against.
	ServerName string `json:"server_name,omitempty"`
	// TLSVersion is the negotiated TLS version ("1.3") while connected.
	TLSVersion string `json:"tls_version,omitempty"`
	// ConnectedSince is when the current connection was made.
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	// RTTMillis is the last measured round trip to the hub.
	RTTMillis float64 `json:"rtt_ms,omitempty"`
	// BacklogMsgs and BacklogBytes count events stored at the edge and not
	// yet confirmed by the hub.
	BacklogMsgs  uint64 `json:"backlog_msgs"`
	BacklogBytes uint64 `json:"backlog_bytes"`
	// OldestAgeMillis is the age of the oldest such event (0 when none).
	OldestAgeMillis int64 `json:"oldest_age_ms"`
	// Forwarded counts events the hub confirmed since start; Duplicates
	// those of them it already had.
	Forwarded  uint64 `json:"forwarded"`
	Duplicates uint64 `json:"duplicates"`
	// Failures counts connect, link, publish and edge failures since start.
	Failures uint64 `json:"failures"`
	// LastError is the most recent failure and LastErrorAt its time.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Heartbeat is the status heartbeat's body (event.Heartbeat).
type Heartbeat = event.Heartbeat

// New checks cfg and the edge identity and returns a Bridge. When the link
// is configured (Config.URL set or a WithHubAddrs hook given) it also loads
// the certificate files once, so a bad file is reported at start. reg may
// be nil (no metrics registered); logger may be nil (discard).
func New(cfg Config, src Source, logger *slog.Logger, reg prometheus.Registerer, opts ...Option) (*Bridge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("bridge: no edge source")
	}
	id := src.EdgeID()
	if err := event.ValidID(id); err != nil {
		return nil, fmt.Errorf("bridge: edge id %q: %w", truncate(id), err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{
		cfg:        cfg,
		src:        src,
		log:        logger.With("component", "bridge"),
		started:    time.Now().UTC(),
		edgeID:     id,
		stallCheck: defaultStallCheck,
	}
	for _, o := range opts {
		o(b)
	}
	if cfg.URL != "" {
		a, err := parseAddr(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("%s.url: %w", KeyPrefix, err)
		}
		b.static = a
	}
	b.configured = b.static != "" || b.hook != nil
	if b.configured {
		tc, err := loadTLS(cfg)
		if err != nil {
			return nil, err
		}
		if err := checkIdentity(tc, id); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("bridge metrics: %w", err)
	}
	b.m = m
	b.st.state = StateConnecting
	if !b.configured {
		b.st.state = StateNotConfigured
	}
	b.m.setState(b.st.state)
	return b, nil
}

// Run forwards until ctx ends, then returns nil. Every failure (hub away,
// refused publish, edge stream trouble) is retried forever with backoff;
// none ends Run. With the link not configured it only waits for ctx.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("bridge: already running")
	}
	defer b.running.Store(false)
	js := b.src.JetStream()
	if js == nil {
		return errors.New("bridge: edge source has no JetStream context")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { b.backlogLoop(ctx, js) })
	if !b.configured {
		b.log.Info("hub link not configured (hub.url empty, no discovery); events stay at the edge")
		<-ctx.Done()
		return nil
	}

	var cons jetstream.Consumer
	for attempt := 0; ; attempt++ {
		c, err := b.ensureConsumer(ctx, js)
		if err == nil {
			cons = c
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		b.fail(failEdge, fmt.Errorf("edge consumer: %w", err))
		if !sleep(ctx, b.backoff(attempt)) {
			return nil
		}
	}

	attempt := 0
	for ctx.Err() == nil {
		conn, err := b.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			b.fail(failConnect, err)
			if !sleep(ctx, b.backoff(attempt)) {
				break
			}
			attempt++
			continue
		}
		start := time.Now()
		err = b.session(ctx, conn, js, cons)
		conn.nc.Close()
		if ctx.Err() != nil {
			break
		}
		b.linkDown(err)
		if time.Since(start) > b.cfg.BackoffMax {
			attempt = 0
		}
		if !sleep(ctx, b.backoff(attempt)) {
			break
		}
		attempt++
	}
	b.mu.Lock()
	if b.st.state == StateConnected {
		b.st.state = StateDisconnected
		b.st.tlsVersion = ""
		b.st.since = time.Time{}
	}
	st := b.st.state
	b.mu.Unlock()
	b.m.setState(st)
	return nil
}

// Status returns the hub link's current state. The backlog figures are at
// most backlogFresh old (read from the edge stream when older).
func (b *Bridge) Status() LinkStatus {
	b.mu.Lock()
	stale := time.Since(b.st.backlogAt) > backlogFresh
	b.mu.Unlock()
	if ref := b.stream.Load(); stale && ref != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		b.refreshBacklog(ctx, ref.s)
		cancel()
	}
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	ls := LinkStatus{
		State:          st.state,
		TLSVersion:     st.tlsVersion,
		ConnectedSince: st.since,
		RTTMillis:      float64(st.rtt) / float64(time.Millisecond),
		BacklogMsgs:    st.backlogMsgs,
		BacklogBytes:   st.backlogBytes,
		Forwarded:      b.forwarded.Load(),
		Duplicates:     b.duplicates.Load(),
		Failures:       b.failures.Load(),
		LastError:      st.lastErr,
		LastErrorAt:    st.lastErrAt,
	}
	if b.configured {
		ls.ServerName = b.cfg.ServerName
		ls.URL = st.url
		if ls.URL == "" && b.static != "" {
			ls.URL = "tls://" + b.static
		}
	}
	if st.backlogMsgs > 0 && !st.oldest.IsZero() {
		ls.OldestAgeMillis = max(time.Since(st.oldest).Milliseconds(), 0)
	}
	return ls
}

// repeatWarn is how often the same failure is logged again at warn level
// while it repeats (a hub away for hours would otherwise log every retry).
const repeatWarn = time.Minute

// fail counts and records a failure and logs it: at warn when it is new or
// repeatWarn has passed, else at debug.
func (b *Bridge) fail(kind string, err error) {
	if err == nil {
		return
	}
	b.failures.Add(1)
	b.m.failures.WithLabelValues(kind).Inc()
	msg := err.Error()
	now := time.Now().UTC()
	b.mu.Lock()
	repeat := msg == b.warned && now.Sub(b.warnedAt) < repeatWarn
	if !repeat {
		b.warned, b.warnedAt = msg, now
	}
	b.st.lastErr = msg
	b.st.lastErrAt = now
	b.mu.Unlock()
	if repeat {
		b.log.Debug("hub link problem (repeated)", "kind", kind, "err", err)
		return
	}
	b.log.Warn("hub link problem", "kind", kind, "err", err)
}

func (b *Bridge) backoff(attempt int) time.Duration {
	return backoff(attempt, b.cfg.BackoffMin, b.cfg.BackoffMax, jitter)
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ensureConsumer creates or updates the durable pull consumer. A consumer
// of the same name that cannot be updated (another configuration made it)
// is deleted and made again: on a WorkQueue stream that loses nothing, the
// unacknowledged events stay stored.
func (b *Bridge) ensureConsumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       Durable,
		Description:   "warren edge to hub bridge",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.AckWait,
		MaxDeliver:    -1,
		FilterSubject: event.EdgeSubjectPrefix + ">",
		MaxAckPending: 4 * maxWindow,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := js.CreateOrUpdateConsumer(cctx, event.EdgeStream, cfg)
	if err == nil {
		return c, nil
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("edge stream %s: %w", event.EdgeStream, err)
	}
	b.log.Warn("edge consumer cannot be updated; making it again", "consumer", Durable, "err", err)
	if derr := js.DeleteConsumer(cctx, event.EdgeStream, Durable); derr != nil && !errors.Is(derr, jetstream.ErrConsumerNotFound) {
		return nil, errors.Join(err, derr)
	}
	return js.CreateConsumer(cctx, event.EdgeStream, cfg)
}

// backlogLoop refreshes the backlog figures from the edge stream once a
// second. With WorkQueue retention the stream holds exactly the events the
// hub has not confirmed.
func (b *Bridge) backlogLoop(ctx context.Context, js jetstream.JetStream) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		ref := b.stream.Load()
		if ref == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := js.Stream(cctx, event.EdgeStream)
			cancel()
			if err == nil {
				ref = &streamRef{s}
				b.stream.Store(ref)
			}
		}
		if ref != nil {
			b.refreshBacklog(ctx, ref.s)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *Bridge) refreshBacklog(ctx context.Context, stream jetstream.Stream) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	info, err := stream.Info(cctx)
	cancel()
	if err != nil {
		return
	}
	s := info.State
	b.mu.Lock()
	b.st.backlogMsgs, b.st.backlogBytes = s.Msgs, s.Bytes
	b.st.oldest = time.Time{}
	if s.Msgs > 0 {
		b.st.oldest = s.FirstTime
	}
	b.st.backlogAt = time.Now()
	b.mu.Unlock()
	b.m.backlogMsgs.Set(float64(s.Msgs))
	b.m.backlogBytes.Set(float64(s.Bytes))
	age := 0.0
	if s.Msgs > 0 && !s.FirstTime.IsZero() {
		age = max(time.Since(s.FirstTime).Seconds(), 0)
	}
	b.m.oldestAge.Set(age)
}

// heartbeat builds the status heartbeat body from the current state.
func (b *Bridge) heartbeat() Heartbeat {
	ls := b.Status()
	return Heartbeat{
		ID:           b.edgeID,
		Version:      version.Version,
		Epoch:        b.src.Epoch(),
		Started:      b.started,
		BacklogMsgs:  ls.BacklogMsgs,
		BacklogBytes: ls.BacklogBytes,
		OldestAgeMS:  ls.OldestAgeMillis,
		Forwarded:    ls.Forwarded,
		LinkSince:    ls.ConnectedSince,
		StoreFull:    storeFull(b.src),
	}
}

func storeFull(src Source) uint64 {
	if s, ok := src.(StoreFullSource); ok {
		return s.StoreFullRefused()
	}
	return 0
}
