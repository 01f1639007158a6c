package edge

import (
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/warren-mesh/warren/internal/event"
	"github.com/warren-mesh/warren/internal/wire"
)

// record is one decoded event waiting in the ingest queue.
type record struct {
	subject  string
	payload  []byte
	source   string
	remote   string // ip:port, "" when unknown
	auth     string
	topic    string
	received time.Time

	signed   bool // v1: a nonce record is stored first
	keyID    string
	nonce    [wire.NonceSize]byte
	tsMillis int64
	tstFixed bool
	unsigned bool // an accepted v0 datagram
}

// errAckWait is reported when neither an ack nor an error arrived in time.
var errAckWait = errors.New("no acknowledgement from JetStream in time")

func (e *Edge) queueLen() int { return len(e.queue) }

// publishLoop drains the queue in batches until finish is closed and the
// queue is empty.
func (e *Edge) publishLoop() {
	defer close(e.pubDone)
	n := e.cfg.Ingest.BatchSize
	batch := make([]record, 0, n)
	p := &publisher{e: e}
	for {
		select {
		case r := <-e.queue:
			batch = append(batch, r)
		case <-e.finish:
			for {
				batch = e.fill(batch, n)
				if len(batch) == 0 {
					return
				}
				p.publish(batch)
				clear(batch)
				batch = batch[:0]
			}
		}
		batch = e.fill(batch, n)
		p.publish(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// fill adds queued records to batch without waiting, up to n.
func (e *Edge) fill(batch []record, n int) []record {
	for len(batch) < n {
		select {
		case r := <-e.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// publisher stores batches: nonce records of signed events first (a
// duplicate there means replay), then the events, each with async publishes
// whose acknowledgements are awaited before anything is counted.
type publisher struct {
	e    *Edge
	futs []jetstream.PubAckFuture
	ok   []bool
}

func (p *publisher) publish(batch []record) {
	e := p.e
	if e.publishHook != nil {
		e.publishHook()
	}
	p.futs = append(p.futs[:0], make([]jetstream.PubAckFuture, len(batch))...)
	p.ok = append(p.ok[:0], make([]bool, len(batch))...)
	deadline := time.NewTimer(2*e.cfg.Ingest.PublishTimeout + time.Second)
	defer deadline.Stop()

	signed := false
	for i := range batch {
		p.ok[i] = true
		signed = signed || batch[i].signed
	}
	if signed {
		for i := range batch {
			r := &batch[i]
			if !r.signed {
				continue
			}
			m := &nats.Msg{Subject: nonceSubject, Data: nonceRecord(r.keyID, r.nonce, r.tsMillis), Header: nats.Header{}}
			m.Header[event.HdrMsgID] = []string{nonceMsgID(r.keyID, r.nonce)}
			f, err := e.pubJS.PublishMsgAsync(m)
			if err != nil {
				p.ok[i] = false
				e.refuse(err)
				continue
			}
			p.futs[i] = f
		}
		for i, f := range p.futs {
			if f == nil {
				continue
			}
			p.futs[i] = nil
			ack, err := awaitAck(f, deadline.C)
			switch {
			case err != nil:
				p.ok[i] = false
				e.refuse(err)
			case ack.Duplicate:
				p.ok[i] = false
				e.counters.reject(ReasonReplay, 1)
			}
		}
	}

	epoch := e.epoch
	for i := range batch {
		if !p.ok[i] {
			continue
		}
		r := &batch[i]
		h := nats.Header{
			event.HdrEdge:     {e.cfg.ID},
			event.HdrSource:   {r.source},
			event.HdrReceived: {r.received.UTC().Format(time.RFC3339Nano)},
			event.HdrAuth:     {r.auth},
			event.HdrTopic:    {r.topic},
			event.HdrEpoch:    {epoch},
		}
		if r.remote != "" {
			h[event.HdrRemote] = []string{r.remote}
		}
		f, err := e.pubJS.PublishMsgAsync(&nats.Msg{Subject: r.subject, Data: r.payload, Header: h})
		if err != nil {
			p.ok[i] = false
			e.refuse(err)
			continue
		}
		p.futs[i] = f
	}
	var udp, mqtt, unsigned, fixed uint64
	for i, f := range p.futs {
		if f == nil {
			continue
		}
		if _, err := awaitAck(f, deadline.C); err != nil {
			e.refuse(err)
			continue
		}
		r := &batch[i]
		switch r.source {
		case event.SourceUDP:
			udp++
		case event.SourceMQTT:
			mqtt++
		}
		if r.unsigned {
			unsigned++
		}
		if r.tstFixed {
			fixed++
		}
	}
	e.counters.accept(event.SourceUDP, udp)
	e.counters.accept(event.SourceMQTT, mqtt)
	e.counters.unsigned.Add(unsigned)
	e.counters.tstFixed.Add(fixed)
	clear(p.futs)
}

// awaitAck waits for one future. deadline is a backstop: the JetStream
// context's publish-async timeout normally fires first.
func awaitAck(f jetstream.PubAckFuture, deadline <-chan time.Time) (*jetstream.PubAck, error) {
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-deadline:
		return nil, errAckWait
	}
}

// refuse counts a failed store under store_full or store_error, and logs at
// most one line per 10 s.
func (e *Edge) refuse(err error) {
	reason := storeReason(err)
	e.counters.reject(reason, 1)
	if ok, suppressed := e.storeFull.allow(time.Now()); ok {
		if reason == ReasonStoreFull {
			e.log.Error("edge store full: refusing new events (stored ones are kept); raise store.max_bytes/max_msgs or restore the hub link",
				"err", err, "refused_since_last_log", suppressed)
		} else {
			e.log.Error("storing event failed", "err", err, "failures_since_last_log", suppressed)
		}
	}
}

// storeReason classifies a publish error: a stream at its limits or a full
// disk is store_full, anything else store_error.
func storeReason(err error) string {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10023, 10047: // insufficient resources; storage resources exceeded
			return ReasonStoreFull
		}
		d := strings.ToLower(api.Description)
		if strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes") ||
			strings.Contains(d, "resources exceeded") || strings.Contains(d, "insufficient") {
			return ReasonStoreFull
		}
	}
	return ReasonStoreError
}
