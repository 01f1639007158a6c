package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// runner delivers one target's outbox: its own durable consumer and
// workers, so a slow or failing target never holds up another.
type runner struct {
	e       *Engine
	name    string
	tc      TargetConfig
	cons    jetstream.Consumer
	ackWait time.Duration
	limiter *limiter

	// pausedUntil (unix nanos) holds all workers of the target after a
	// Retry-After or a run of consecutive failures.
	pausedUntil atomic.Int64
	consecFail  atomic.Int32

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// consumerName is the durable consumer of a target's outbox queue.
func consumerName(target string) string { return "notify-" + target }

// ackWaitFor gives a worker room for one attempt plus the refresh period
// of the messages it holds.
func ackWaitFor(tc TargetConfig, d DeliveryConfig) time.Duration {
	return max(d.AckWait, 3*tc.Timeout)
}

// prepareRunner creates (or updates) the target's consumer.
func (e *Engine) prepareRunner(ctx context.Context, name string, tc TargetConfig) (*runner, error) {
	r := &runner{e: e, name: name, tc: tc, ackWait: ackWaitFor(tc, e.delivery), limiter: newLimiter(tc.RateLimit.Count, tc.RateLimit.Interval)}
	if old, ok := e.runners[name]; ok && old.limiter.same(tc.RateLimit.Count, tc.RateLimit.Interval) {
		r.limiter = old.limiter // keep the bucket across a reload
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := e.js.CreateOrUpdateConsumer(cctx, e.delivery.Outbox, jetstream.ConsumerConfig{
		Durable:       consumerName(name),
		Description:   "warren notifier target " + name,
		FilterSubject: e.delivery.OutboxPrefix + "." + name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: max(1000, 2*e.delivery.Batch*tc.Workers),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("outbox consumer: %w", err)
	}
	r.cons = cons
	return r, nil
}

func (r *runner) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	for range r.tc.Workers {
		r.wg.Go(func() { r.work(ctx) })
	}
}

// stop ends the workers after their current attempt.
func (r *runner) stop() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

// item is one outbox message in a worker's hands.
type item struct {
	msg   jetstream.Msg
	rec   *outboxRecord
	meta  *jetstream.MsgMetadata
	key   string // idempotency key in the sent bucket
	sent  bool   // the record says it was delivered
	kvErr error
	done  bool
}

func sentKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:20])
}

func (r *runner) work(ctx context.Context) {
	for ctx.Err() == nil {
		if err := r.waitPause(ctx, nil); err != nil {
			return
		}
		msgs, err := r.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.e.log.Warn("outbox fetch", "target", r.name, "err", err)
			if waitUntil(ctx, time.Now().Add(time.Second), 0, nil) != nil {
				return
			}
			continue
		}
		if len(msgs) > 0 {
			r.process(ctx, msgs)
		}
	}
}

// fetch takes what is queued (up to a batch) without waiting, or waits a
// few seconds for the next message when nothing is.
func (r *runner) fetch(ctx context.Context) ([]jetstream.Msg, error) {
	b, err := r.cons.FetchNoWait(r.e.delivery.Batch)
	if err != nil {
		return nil, err
	}
	msgs := drain(b)
	if len(msgs) > 0 {
		return msgs, nil
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err = r.cons.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		if fctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	return drain(b), nil
}

func drain(b jetstream.MessageBatch) []jetstream.Msg {
	var out []jetstream.Msg
	for m := range b.Messages() {
		out = append(out, m)
	}
	return out
}

// process delivers a batch: check the idempotency records (in parallel),
// send in order, record each success, then ack.
func (r *runner) process(ctx context.Context, msgs []jetstream.Msg) {
	e := r.e
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		it := &item{msg: m}
		meta, err := m.Metadata()
		if err == nil {
			it.meta = meta
			it.rec, err = decodeRecord(m.Data())
		}
		if err != nil {
			e.log.Error("undecodable outbox message; dead-lettering it", "target", r.name, "err", err)
			r.deadLetter(ctx, it, "undecodable: "+err.Error())
			continue
		}
		it.key = sentKey(it.rec.ID)
		items = append(items, it)
	}
	r.checkSent(ctx, items)

	held := func() {
		for _, it := range items {
			if !it.done {
				_ = it.msg.InProgress()
			}
		}
	}
	refreshEvery := r.ackWait / 3
	lastRefresh := time.Now()
	var recorded []recordedItem
	flushRecords := func() {
		r.ackRecorded(recorded)
		recorded = recorded[:0]
	}
	defer flushRecords()

	handBack := func() {
		// Stopping: hand the rest back at once.
		for _, rest := range items {
			if !rest.done {
				_ = rest.msg.Nak()
				rest.done = true
			}
		}
	}
	for _, it := range items {
		if it.done {
			continue
		}
		if ctx.Err() != nil {
			handBack()
			return
		}
		if time.Since(lastRefresh) > refreshEvery {
			held()
			lastRefresh = time.Now()
		}
		switch {
		case it.kvErr != nil:
			e.log.Warn("idempotency check failed; retrying later", "target", r.name, "id", it.rec.ID, "err", it.kvErr)
			_ = it.msg.NakWithDelay(time.Second)
			it.done = true
			continue
		case it.sent:
			e.met.skipped.WithLabelValues(r.name).Inc()
			_ = it.msg.Ack()
			it.done = true
			continue
		}
		tc := r.tc
		age := time.Since(it.meta.Timestamp)
		if age > tc.Retry.MaxAge {
			r.deadLetter(ctx, it, fmt.Sprintf("expired: not delivered within retry.max_age %s", tc.Retry.MaxAge))
			continue
		}
		// Waits: a paused target and the rate limit.
		if until := r.pausedUntil.Load(); until > time.Now().UnixNano() {
			flushRecords()
		}
		if err := r.waitPause(ctx, held); err != nil {
			handBack()
			return
		}
		if d := r.limiter.reserve(time.Now()); d > 0 {
			flushRecords()
			if waitUntil(ctx, time.Now().Add(d), refreshEvery, held) != nil {
				handBack()
				return
			}
		}
		rt := e.cur.Load()
		n := rt.notifiers[r.name]
		if n == nil {
			_ = it.msg.NakWithDelay(5 * time.Second)
			it.done = true
			continue
		}
		// The attempt outlives a stop of the worker: cutting a send short
		// would leave it unknown whether it arrived.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tc.Timeout)
		start := time.Now()
		retry, err := n.Notify(sctx, it.rec.message())
		cancel()
		e.met.sendSeconds.WithLabelValues(r.name).Observe(time.Since(start).Seconds())
		if err == nil {
			r.consecFail.Store(0)
			e.met.sent.WithLabelValues(r.name).Inc()
			if e.hookAfterSend != nil {
				e.hookAfterSend(it.rec.ID)
			}
			recorded = append(recorded, r.record(it))
			it.done = true
			if len(recorded) >= 256 {
				flushRecords()
			}
			continue
		}
		r.failed(ctx, it, retry, err)
	}
}

// failed handles a failed attempt: retry later or dead-letter.
func (r *runner) failed(ctx context.Context, it *item, retry bool, err error) {
	e, tc := r.e, r.tc
	e.met.failed.WithLabelValues(r.name).Inc()
	if errors.Is(err, context.DeadlineExceeded) {
		retry = true // a timeout says nothing about the message itself
	}
	attempts := int(it.meta.NumDelivered)
	ra, hasRA := target.RetryAfter(err)
	now := time.Now()
	if hasRA {
		r.pauseUntil(now.Add(ra))
	}
	if retry {
		if n := r.consecFail.Add(1); n >= 3 {
			// The target looks down: hold its queue instead of burning
			// every message's attempts; the next message probes it.
			r.pauseUntil(now.Add(backoff(int(n)-2, tc.Retry.InitialBackoff, tc.Retry.MaxBackoff)))
		}
	}
	switch {
	case !retry:
		r.deadLetter(ctx, it, "not retryable: "+err.Error())
		return
	case attempts >= tc.Retry.MaxAttempts:
		r.deadLetter(ctx, it, fmt.Sprintf("gave up after %d attempts: %v", attempts, err))
		return
	}
	delay := backoff(attempts, tc.Retry.InitialBackoff, tc.Retry.MaxBackoff)
	if hasRA && ra > delay {
		delay = ra
	}
	if it.meta.Timestamp.Add(tc.Retry.MaxAge).Before(now.Add(delay)) {
		r.deadLetter(ctx, it, fmt.Sprintf("retry.max_age %s would pass before the next attempt: %v", tc.Retry.MaxAge, err))
		return
	}
	e.log.Warn("delivery failed; will retry", "target", r.name, "id", it.rec.ID, "attempt", attempts, "retry_in", delay.Round(time.Millisecond), "err", err)
	e.met.retried.WithLabelValues(r.name).Inc()
	_ = it.msg.NakWithDelay(delay)
	it.done = true
}

func (r *runner) pauseUntil(t time.Time) {
	for {
		cur := r.pausedUntil.Load()
		if t.UnixNano() <= cur || r.pausedUntil.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

// waitPause waits while the target is paused, keeping held messages alive.
func (r *runner) waitPause(ctx context.Context, held func()) error {
	until := r.pausedUntil.Load()
	if until <= time.Now().UnixNano() {
		return ctx.Err()
	}
	return waitUntil(ctx, time.Unix(0, until), r.ackWait/3, held)
}

// checkSent looks up the idempotency record of every item, in parallel.
func (r *runner) checkSent(ctx context.Context, items []*item) {
	kv := r.e.kv
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, it := range items {
		if it.rec.First && it.rec.FailoverFrom == "" && it.meta != nil && it.meta.NumDelivered == 1 && it.meta.Sequence.Stream > r.e.outboxFloor.Load() {
			continue // never sent: see outboxRecord.First
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := kv.Get(gctx, it.key)
			switch {
			case err == nil:
				it.sent = true
			case errors.Is(err, jetstream.ErrKeyNotFound):
			default:
				it.kvErr = err
			}
		})
	}
	wg.Wait()
}

type recordedItem struct {
	it *item
	f  jetstream.PubAckFuture
}

// record writes the idempotency record of a delivered item (async).
func (r *runner) record(it *item) recordedItem {
	m := nats.NewMsg("$KV." + r.e.delivery.SentBucket + "." + it.key)
	m.Data = []byte(it.rec.ID)
	f, err := r.e.js.PublishMsgAsync(m)
	if err != nil {
		r.e.log.Warn("idempotency record", "target", r.name, "id", it.rec.ID, "err", err)
		return recordedItem{it: it}
	}
	return recordedItem{it: it, f: f}
}

// ackRecorded waits for the records, then acks their messages. A record
// that failed is logged and the message acked anyway: it was delivered,
// and redelivering it would send it twice for sure.
func (r *runner) ackRecorded(items []recordedItem) {
	if len(items) == 0 {
		return
	}
	// One deadline for the whole batch; once it has passed, the remaining
	// futures are not waited for (a closed connection never settles them).
	timer := time.NewTimer(pubTimeout)
	defer timer.Stop()
	expired := false
	for _, ri := range items {
		if ri.f != nil && !expired {
			select {
			case <-ri.f.Ok():
			case err := <-ri.f.Err():
				r.e.log.Warn("idempotency record", "target", r.name, "id", ri.it.rec.ID, "err", err)
			case <-timer.C:
				expired = true
				r.e.log.Warn("idempotency record timed out", "target", r.name, "id", ri.it.rec.ID)
			}
		}
		if r.e.hookBeforeAck != nil {
			r.e.hookBeforeAck(ri.it.rec.ID)
		}
		_ = ri.it.msg.Ack()
	}
}

// deadLetter moves an item to the dead-letter stream, queues it for the
// failover target if there is one, then acks it. If the dead-letter write
// fails the item is retried later.
func (r *runner) deadLetter(ctx context.Context, it *item, reason string) {
	e := r.e
	it.done = true
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	m := nats.NewMsg(e.delivery.DLQPrefix + "." + r.name)
	m.Data = it.msg.Data()
	m.Header.Set(hdrNotifyTarget, r.name)
	m.Header.Set(hdrNotifyReason, reason)
	attempts := uint64(0)
	if it.meta != nil {
		attempts = it.meta.NumDelivered
	}
	m.Header.Set(hdrNotifyAttempts, strconv.FormatUint(attempts, 10))
	if it.rec != nil {
		m.Header.Set(jetstream.MsgIDHeader, it.rec.ID)
	}
	if _, err := e.js.PublishMsg(pctx, m); err != nil {
		e.log.Error("dead-letter write failed; retrying later", "target", r.name, "err", err)
		_ = it.msg.NakWithDelay(5 * time.Second)
		return
	}
	if it.rec != nil {
		if fo := r.tc.Failover; fo != "" {
			rec := *it.rec
			rec.ID = msgID(rec.EventID, rec.Route, fo)
			rec.Target = fo
			rec.FailoverFrom = r.name
			rec.First = false
			b, err := encodeRecord(&rec)
			if err == nil {
				fm := nats.NewMsg(e.delivery.OutboxPrefix + "." + fo)
				fm.Data = b
				fm.Header.Set(jetstream.MsgIDHeader, rec.ID)
				fm.Header.Set(hdrNotifyTarget, fo)
				_, err = e.js.PublishMsg(pctx, fm)
			}
			if err != nil {
				e.log.Error("failover write failed; retrying later", "target", r.name, "failover", fo, "err", err)
				_ = it.msg.NakWithDelay(5 * time.Second)
				return
			}
			e.met.queued.WithLabelValues(fo).Inc()
		}
	}
	e.met.deadlettered.WithLabelValues(r.name).Inc()
	id := ""
	if it.rec != nil {
		id = it.rec.ID
	}
	e.log.Error("notification dead-lettered", "target", r.name, "id", id, "attempts", attempts, "reason", reason, "failover", r.tc.Failover)
	_ = it.msg.Ack()
}
