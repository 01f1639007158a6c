// Package notify is the hub's notifier, warren's replacement for mqttwarn.
// It takes events from the hub's JetStream stream, routes them through an
// ordered route tree (topic filters, edge, source, JSON fields), renders
// titles and messages (mqttwarn {placeholder} format strings or Go
// templates), applies quiet hours and dedup, and queues one notification
// per route and target in a durable per-target outbox. Target workers
// deliver with timeouts, rate limits, retries with backoff and jitter, a
// dead-letter stream and failover, and record every delivery in a KV
// bucket so a crash between "sent" and "acked" does not send twice. It
// also watches for silence (no events on a topic for a while) and for
// edges whose hub link stays down ("site offline").
//
// The configuration reloads atomically (Reload); a dry run (DryRun, Test)
// shows what an event would do. The targets live in hub/notify/target/...;
// builder.go is the one place they are wired in.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Deps are what the engine uses from the hub.
type Deps struct {
	// JS is the hub's JetStream (domain hub). Required by Run; DryRun and
	// Test work without it. When nil and NC is set, one is made from NC.
	JS jetstream.JetStream
	// NC is the hub's own connection, for the nats and mqtt republish
	// targets.
	NC *nats.Conn
	// Logger receives the notifier's logs. Default: discard.
	Logger *slog.Logger
	// Registry registers the notifier's metrics. Nil: not registered.
	Registry prometheus.Registerer
	// HTTPClient is shared by the HTTP targets. Default: a new client.
	HTTPClient *http.Client
	// TargetTypes adds target types or replaces built-in ones (tests and
	// extensions). Nil: the built-in types.
	TargetTypes map[string]TargetType
	// Standalone says the engine runs outside a running hub (`hub notify
	// test`, `hub check-config`): targets that need the hub's connection
	// (type nats) are built as stand-ins whose sends fail, instead of
	// failing New.
	Standalone bool
	// StartTime, when set, is where a consumer created with deliver_policy
	// "new" starts: the events stored since then (the hub's start), so
	// events stored between the hub being ready and the notifier creating
	// its consumer (the first edge's connect, an early login) are not
	// missed. Zero: JetStream's "new" (from the consumer's creation on).
	StartTime time.Time
	// HubMQTT is the URL of the hub's own loopback MQTT listener
	// (tcp://127.0.0.1:1883), where mqtt targets without a url publish.
	// Empty: the hub runs no MQTT listener.
	HubMQTT string
}

// Engine is the running notifier.
type Engine struct {
	log      *slog.Logger
	deps     Deps
	js       jetstream.JetStream
	met      *metrics
	dedup    *dedupState
	watch    *watcher
	delivery DeliveryConfig // fixed at New
	env      TargetEnv

	cur atomic.Pointer[runtimeCfg]

	mu      sync.Mutex // serialises Reload and runner changes
	runCtx  context.Context
	runners map[string]*runner
	started atomic.Bool
	alerts  chan alert // link alerts waiting for the ticker
	kv      jetstream.KeyValue

	// eventFloor and outboxFloor are the last sequences of the event
	// stream and of the outbox when this engine set up its consumers. A
	// message at or below its floor may have been delivered by an earlier
	// hub process: after a SIGKILL the server's consumer state (delivery
	// counts, acks) can lag what was really delivered, so a NumDelivered
	// of 1 proves "never sent" only for messages stored after the floor.
	eventFloor  atomic.Uint64
	outboxFloor atomic.Uint64

	// emit sends synthetic alerts (sendAlerts; tests replace it).
	emit func(ctx context.Context, alerts []alert)

	// test hooks
	hookAfterSend func(id string) // after a successful send, before the record
	hookBeforeAck func(id string) // after the record, before the ack
}

// runtimeCfg is one generation of configuration with its targets.
type runtimeCfg struct {
	c         *compiled
	notifiers map[string]target.Notifier
}

// New validates cfg and builds its targets. It does not touch NATS; Run
// does.
func New(cfg Config, deps Deps) (*Engine, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{}
	}
	c, err := compile(cfg, deps.TargetTypes)
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("notify metrics: %w", err)
	}
	e := &Engine{
		log:      deps.Logger.With("component", "notify"),
		deps:     deps,
		js:       deps.JS,
		met:      met,
		dedup:    newDedupState(),
		watch:    newWatcher(),
		delivery: cfg.Delivery,
		runners:  map[string]*runner{},
		alerts:   make(chan alert, 256),
	}
	e.emit = e.sendAlerts
	e.env = TargetEnv{Logger: e.log, NC: deps.NC, HubMQTT: deps.HubMQTT, HTTPClient: deps.HTTPClient, Standalone: deps.Standalone}
	notifiers, err := buildTargets(c, deps.TargetTypes, e.env)
	if err != nil {
		return nil, err
	}
	e.cur.Store(&runtimeCfg{c: c, notifiers: notifiers})
	e.watch.sync(c, time.Now())
	return e, nil
}

// Close releases the targets' resources (e.g. MQTT connections) of an
// engine that will not Run, or after Run returned.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rt := e.cur.Load(); rt != nil {
		closeNotifiers(slices.Collect(maps.Values(rt.notifiers))...)
	}
}

// Config returns the configuration in force.
func (e *Engine) Config() Config { return e.cur.Load().c.cfg }

// Reload validates cfg, builds its targets and swaps it in atomically. On
// any error the running configuration stays and the error says why. Dedup,
// silence and link state survive. Delivery settings are fixed at New; a
// change to them is logged and ignored.
func (e *Engine) Reload(cfg Config) error {
	err := e.reload(cfg)
	if err != nil {
		e.met.reloads.WithLabelValues("error").Inc()
		e.log.Error("config reload failed; keeping the running configuration", "err", err)
		return err
	}
	e.met.reloads.WithLabelValues("ok").Inc()
	return nil
}

func (e *Engine) reload(cfg Config) error {
	c, err := compile(cfg, e.deps.TargetTypes)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur.Load()
	if !reflect.DeepEqual(cfg.Delivery, e.delivery) {
		e.log.Warn("delivery settings changed; they apply after a restart")
		c.cfg.Delivery = e.delivery
	}
	// Keep the notifiers of unchanged targets (no reconnects); build the
	// rest.
	notifiers := map[string]target.Notifier{}
	fresh := &compiled{targets: map[string]TargetConfig{}}
	for name, tc := range c.targets {
		if otc, ok := old.c.targets[name]; ok && reflect.DeepEqual(otc, tc) {
			notifiers[name] = old.notifiers[name]
			continue
		}
		fresh.targets[name] = tc
	}
	built, err := buildTargets(fresh, e.deps.TargetTypes, e.env)
	if err != nil {
		closeNotifiers(slices.Collect(maps.Values(built))...)
		return err
	}
	for name, n := range built {
		notifiers[name] = n
	}
	// Consumers of new or changed targets are made before the swap (the
	// step that can fail); their workers start after it, and the workers
	// of removed or changed targets stop.
	var prepared []*runner
	if e.runCtx != nil {
		for _, name := range sortedKeys(c.targets) {
			tc := c.targets[name]
			if r, ok := e.runners[name]; ok && reflect.DeepEqual(r.tc, tc) {
				continue
			}
			nr, err := e.prepareRunner(e.runCtx, name, tc)
			if err != nil {
				closeNotifiers(slices.Collect(maps.Values(built))...)
				return fmt.Errorf("targets.%s: %w", name, err)
			}
			prepared = append(prepared, nr)
		}
	}
	e.cur.Store(&runtimeCfg{c: c, notifiers: notifiers})
	e.watch.sync(c, time.Now())
	if e.runCtx != nil {
		for name, r := range e.runners {
			if tc, ok := c.targets[name]; !ok || !reflect.DeepEqual(r.tc, tc) {
				r.stop()
				delete(e.runners, name)
				if !ok {
					e.log.Warn("target removed; its queued notifications wait in the outbox until it is configured again", "target", name)
				}
			}
		}
		for _, r := range prepared {
			r.start(e.runCtx)
			e.runners[r.name] = r
		}
	}
	// Close replaced notifiers; no worker uses them any more.
	var retired []target.Notifier
	for name, n := range old.notifiers {
		if notifiers[name] != n {
			retired = append(retired, n)
		}
	}
	closeNotifiers(retired...)
	e.log.Info("config reloaded", "targets", len(c.targets), "routes", len(c.byName))
	return nil
}

func closeNotifiers(ns ...target.Notifier) {
	for _, n := range ns {
		if c, ok := n.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// EdgeLinkChanged tells the notifier that edge's link to the hub went up
// or down at the given time. The hub calls it; an edge down longer than
// offline.after fires "site offline", and its return "site online".
func (e *Engine) EdgeLinkChanged(edgeID string, up bool, at time.Time) {
	for _, a := range e.watch.link(edgeID, up, at) {
		select {
		case e.alerts <- a:
		default:
			e.log.Warn("alert queue full; dropping link alert", "edge", edgeID, "kind", a.kind)
		}
	}
}

// DryRun shows what the running configuration would do with an event,
// without changing any state (dedup is only peeked at).
func (e *Engine) DryRun(topic string, payload []byte, edge, source string) *Report {
	rep, _ := e.test(topic, payload, edge, source)
	return rep
}

// Test is DryRun that, with send, also sends each notification that is not
// dropped straight to its target (bypassing the outbox, retries and the
// idempotency record) and reports the outcome.
func (e *Engine) Test(ctx context.Context, topic string, payload []byte, edge, source string, send bool) *Report {
	rep, plans := e.test(topic, payload, edge, source)
	if !send {
		return rep
	}
	rt := e.cur.Load()
	for _, p := range plans {
		d := &rep.Deliveries[indexOfDelivery(rep, p)]
		n := rt.notifiers[p.target]
		sctx, cancel := context.WithTimeout(ctx, rt.c.targets[p.target].Timeout)
		_, err := n.Notify(sctx, p.msg)
		cancel()
		if err != nil {
			d.Error = err.Error()
		} else {
			d.Sent = true
		}
	}
	return rep
}

func indexOfDelivery(rep *Report, p planned) int {
	for i, d := range rep.Deliveries {
		if d.ID == p.msg.ID && !d.Dropped {
			return i
		}
	}
	return 0
}

func (e *Engine) test(topic string, payload []byte, edge, source string) (*Report, []planned) {
	rt := e.cur.Load()
	now := time.Now()
	ev := NewEvent("test:"+fmt.Sprint(now.UnixNano()), topic, edge, source, payload, now)
	rep := &Report{}
	plans := rt.c.plan(ev, planOpts{now: now, dedup: e.dedup, dry: true, report: rep})
	if rep.Routes == nil {
		rep.Routes = []RouteStep{}
	}
	if rep.Deliveries == nil {
		rep.Deliveries = []DeliveryReport{}
	}
	return rep, plans
}

// Run creates the notifier's streams, KV bucket and consumers, then
// processes events until ctx ends. It returns nil after a clean stop.
func (e *Engine) Run(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	if e.js == nil {
		if e.deps.NC == nil {
			return errors.New("notify: no JetStream: set Deps.JS or Deps.NC")
		}
		js, err := jetstream.New(e.deps.NC)
		if err != nil {
			return fmt.Errorf("notify: jetstream: %w", err)
		}
		e.js = js
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cons, err := e.setup(ctx)
	if err != nil {
		return err
	}

	e.mu.Lock()
	e.runCtx = ctx
	rt := e.cur.Load()
	for _, name := range sortedKeys(rt.c.targets) {
		r, err := e.prepareRunner(ctx, name, rt.c.targets[name])
		if err != nil {
			e.mu.Unlock()
			cancel()
			e.stopRunners()
			return fmt.Errorf("notify: targets.%s: %w", name, err)
		}
		r.start(ctx)
		e.runners[name] = r
	}
	e.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { e.tickLoop(ctx) })
	err = e.consume(ctx, cons)
	cancel()
	wg.Wait()
	e.stopRunners()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

func (e *Engine) stopRunners() {
	e.mu.Lock()
	rs := e.runners
	e.runners = map[string]*runner{}
	e.runCtx = nil
	e.mu.Unlock()
	for _, r := range rs {
		r.stop()
	}
}

// setup makes sure the streams, the KV bucket and the event consumer exist.
func (e *Engine) setup(ctx context.Context) (jetstream.Consumer, error) {
	d := e.delivery
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	evs, err := e.js.Stream(sctx, d.Stream)
	if err != nil {
		return nil, fmt.Errorf("notify: event stream %s: %w", d.Stream, err)
	}
	e.eventFloor.Store(evs.CachedInfo().State.LastSeq)
	outbox, err := e.js.CreateOrUpdateStream(sctx, jetstream.StreamConfig{
		Name:        d.Outbox,
		Description: "warren notifier: per-target queues of rendered notifications",
		Subjects:    []string{d.OutboxPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  d.DuplicateWindow,
		Replicas:    d.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("notify: outbox stream %s: %w", d.Outbox, err)
	}
	e.outboxFloor.Store(outbox.CachedInfo().State.LastSeq)
	_, err = e.js.CreateOrUpdateStream(sctx, jetstream.StreamConfig{
		Name:        d.DLQ,
		Description: "warren notifier: notifications that exhausted their retry budget",
		Subjects:    []string{d.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      d.DLQMaxAge,
		Duplicates:  d.DuplicateWindow,
		Replicas:    d.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("notify: dead-letter stream %s: %w", d.DLQ, err)
	}
	kv, err := e.js.CreateOrUpdateKeyValue(sctx, jetstream.KeyValueConfig{
		Bucket:      d.SentBucket,
		Description: "warren notifier: delivered notification ids",
		TTL:         d.SentTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    d.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("notify: sent bucket %s: %w", d.SentBucket, err)
	}
	e.kv = kv
	cc := jetstream.ConsumerConfig{
		Durable:       d.Consumer,
		Description:   "warren notifier",
		FilterSubject: d.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       d.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: d.MaxAckPending,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	if d.DeliverPolicy == "all" {
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	} else if t := e.deps.StartTime; !t.IsZero() {
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &t
	}
	if existing, err := e.js.Consumer(sctx, d.Stream, d.Consumer); err == nil {
		// Where it starts is fixed at creation; keep it.
		cc.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cc.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
		cc.OptStartTime = existing.CachedInfo().Config.OptStartTime
	}
	cons, err := e.js.CreateOrUpdateConsumer(sctx, d.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("notify: consumer %s on %s: %w", d.Consumer, d.Stream, err)
	}
	return cons, nil
}

// tickLoop checks silence watches and edge links, and sends link alerts.
func (e *Engine) tickLoop(ctx context.Context) {
	for {
		rt := e.cur.Load()
		timer := time.NewTimer(tickInterval(rt.c))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case a := <-e.alerts:
			timer.Stop()
			e.emit(ctx, []alert{a})
		case <-timer.C:
			if alerts := e.watch.tick(rt.c, time.Now()); len(alerts) > 0 {
				e.emit(ctx, alerts)
			}
			for k, silent := range e.watch.silentWatches() {
				v := 0.0
				if silent {
					v = 1
				}
				e.met.silent.WithLabelValues(k.name, k.edge).Set(v)
			}
			e.dedup.sweep(time.Now())
		}
	}
}

// sendAlerts plans synthetic notifications and writes them to the outbox.
func (e *Engine) sendAlerts(ctx context.Context, alerts []alert) {
	for _, a := range alerts {
		e.met.synthetic.WithLabelValues(string(a.kind)).Inc()
		e.log.Info("alert", "kind", a.kind, "watch", a.rule, "edge", a.edge, "duration", humanDuration(a.duration))
		rt := e.cur.Load()
		plans := rt.c.planAlert(a, planOpts{now: time.Now(), met: e.met})
		for _, p := range plans {
			var err error
			for try := 0; try < 5; try++ {
				if err = e.enqueueSync(ctx, p); err == nil {
					break
				}
				if waitUntil(ctx, time.Now().Add(time.Duration(try+1)*time.Second), 0, nil) != nil {
					return
				}
			}
			if err != nil {
				e.log.Error("cannot queue alert", "kind", a.kind, "target", p.target, "err", err)
			}
		}
	}
}
