package hub

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warren-mesh/warren/internal/event"
)

// Ingest results: label values of hub_ingest_events_total and the keys of
// Status().Ingest.
const (
	resStored           = "stored"             // written to the stream
	resDuplicate        = "duplicate"          // Msg-Id already in the stream: answered "duplicate", nothing written
	resStoreError       = "store_error"        // the stream refused it (limits, storage)
	resTimeout          = "timeout"            // no answer from the stream within ingest.store_timeout
	resOutOfOrder       = "out_of_order"       // refused until an earlier failed event of the same edge is retried
	resForgedMsgID      = "forged_msg_id"      // Msg-Id names another edge than the subject
	resForgedEdgeHeader = "forged_edge_header" // Warren-Edge names another edge than the subject
	resMissingMsgID     = "missing_msg_id"     // no Nats-Msg-Id
	resBadMsgID         = "bad_msg_id"         // Nats-Msg-Id not <edge>:<epoch>:<seq>
	resBadHeartbeat     = "bad_heartbeat"      // heartbeat not JSON or naming another edge
	resHeartbeat        = "heartbeat"          // heartbeat accepted
)

// ingestResults lists every result, for zero-valued counters.
var ingestResults = []string{resStored, resDuplicate, resStoreError, resTimeout, resOutOfOrder,
	resForgedMsgID, resForgedEdgeHeader, resMissingMsgID, resBadMsgID, resBadHeartbeat, resHeartbeat}

// apiError is a JetStream-style error answer, so an edge parses the
// ingest's refusals exactly as it parses the stream's own.
type apiError struct {
	Error struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code,omitempty"`
		Description string `json:"description"`
	} `json:"error"`
}

func apiErrorJSON(code int, desc string) []byte {
	var e apiError
	e.Error.Code, e.Error.Description = code, desc
	b, _ := json.Marshal(e)
	return b
}

// pubAck is the part of JetStream's publish answer the ingest reads.
type pubAck struct {
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
	Stream    string `json:"stream"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// pending is an event handed to the stream, waiting for its answer.
type pending struct {
	edge, epoch, msgID string
	seq                uint64
	reply              string // the edge's reply subject
	rest               string // subject without edge.<id>.
	data               []byte
	hdr                nats.Header
	start              time.Time
}

// gate blocks an edge's events after a failed one: an edge that pipelines
// k, k+1, ... and sees k fail resends from k; while k has not been stored,
// the ingest refuses every later sequence of the same epoch with a
// retryable error, so k+1 cannot land in the stream before k.
type gate struct {
	epoch string
	seq   uint64
}

// ingest is the service that turns edge publishes into stream entries.
// It subscribes (account EDGES) to edge.*.>, checks that the Msg-Id names
// the publishing edge, stores the event on hub.ev.<id>.<rest> (account HUB)
// with the Msg-Id for deduplication, and forwards the stream's PubAck, raw,
// to the edge.
type ingest struct {
	h       *Hub
	edgeNC  *nats.Conn
	hubNC   *nats.Conn
	repNC   *nats.Conn
	prefix  string
	sem     chan struct{}
	timeout time.Duration

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pending
	gates   map[string]gate

	in, acks *nats.Subscription
	on       atomic.Bool
	done     chan struct{}
	wg       sync.WaitGroup
}

func startIngest(h *Hub, edgeNC, hubNC, repNC *nats.Conn) (*ingest, error) {
	i := &ingest{
		h:       h,
		edgeNC:  edgeNC,
		hubNC:   hubNC,
		repNC:   repNC,
		prefix:  "_WARREN.ingest." + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix) + ".",
		sem:     make(chan struct{}, h.cfg.Ingest.MaxInflight),
		timeout: h.cfg.Ingest.StoreTimeout,
		pending: map[uint64]*pending{},
		gates:   map[string]gate{},
		done:    make(chan struct{}),
	}
	var err error
	if i.acks, err = hubNC.Subscribe(i.prefix+"*", i.ack); err != nil {
		return nil, fmt.Errorf("ingest ack subscription: %w", err)
	}
	if i.in, err = edgeNC.Subscribe(event.IngestPrefix+"*.>", i.handle); err != nil {
		i.acks.Unsubscribe()
		return nil, fmt.Errorf("ingest subscription: %w", err)
	}
	for _, s := range []*nats.Subscription{i.acks, i.in} {
		if err := s.SetPendingLimits(1_000_000, 512<<20); err != nil {
			return nil, fmt.Errorf("ingest pending limits: %w", err)
		}
	}
	// Make sure the server has both subscriptions before edges are let in.
	if err := hubNC.Flush(); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	if err := edgeNC.Flush(); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	i.on.Store(true)
	i.wg.Add(1)
	go i.sweep()
	return i, nil
}

func (i *ingest) subscribed() bool { return i.on.Load() && i.in.IsValid() }

// stop unsubscribes, gives events in flight up to two seconds to be
// answered, then stops.
func (i *ingest) stop() {
	i.on.Store(false)
	i.in.Unsubscribe()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		i.mu.Lock()
		n := len(i.pending)
		i.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(i.done)
	i.acks.Unsubscribe()
	i.wg.Wait()
}

func (i *ingest) count(result string) { i.h.m.ingest.WithLabelValues(result).Inc() }

// refuse answers an edge's event with a JetStream-style error.
func (i *ingest) refuse(m *nats.Msg, code int, result, desc string) {
	i.count(result)
	if m.Reply != "" {
		i.edgeNC.Publish(m.Reply, apiErrorJSON(code, desc))
	}
}

// handle runs for every message an edge publishes, in arrival order.
func (i *ingest) handle(m *nats.Msg) {
	id, rest, err := event.SplitIngest(m.Subject)
	if err != nil {
		i.refuse(m, 400, resBadMsgID, "bad ingest subject")
		return
	}
	if rest == StatusSubjectRest {
		i.heartbeat(id, m)
		return
	}
	msgID := m.Header.Get(event.HdrMsgID)
	if msgID == "" {
		i.refuse(m, 400, resMissingMsgID, "missing "+event.HdrMsgID+" header")
		return
	}
	mid, epoch, seq, err := event.ParseMsgID(msgID)
	if err != nil {
		i.refuse(m, 400, resBadMsgID, err.Error())
		return
	}
	if mid != id {
		i.h.log.Warn("forged msg id refused", "edge", id, "msg_id", msgID, "subject", m.Subject)
		i.refuse(m, 400, resForgedMsgID, fmt.Sprintf("msg id %q names edge %q, but the event comes from edge %q", msgID, mid, id))
		return
	}
	if e := m.Header.Get(event.HdrEdge); e != "" && e != id {
		i.h.log.Warn("forged edge header refused", "edge", id, "header", e, "msg_id", msgID)
		i.refuse(m, 400, resForgedEdgeHeader, fmt.Sprintf("%s %q differs from the publishing edge %q", event.HdrEdge, e, id))
		return
	}
	if blocked, g := i.blocked(id, epoch, seq); blocked {
		i.refuse(m, 503, resOutOfOrder, fmt.Sprintf("event %s waits for the retry of %s", msgID, event.MsgID(id, g.epoch, g.seq)))
		return
	}
	select {
	case i.sem <- struct{}{}:
	case <-i.done:
		return
	}
	// Keep the edge's headers except any Nats-* one: JetStream acts on
	// those (expected sequences, rollups, TTLs...), and an edge may only
	// choose its Msg-Id, which was checked above.
	hdr := event.WithoutControl(m.Header, 2)
	hdr[event.HdrMsgID] = []string{msgID}
	hdr[event.HdrEdge] = []string{id}
	p := &pending{edge: id, epoch: epoch, msgID: msgID, seq: seq, reply: m.Reply, rest: rest, data: m.Data, hdr: hdr, start: time.Now()}
	i.mu.Lock()
	i.next++
	n := i.next
	i.pending[n] = p
	i.mu.Unlock()
	out := &nats.Msg{Subject: event.HubSubject(id, rest), Reply: i.prefix + strconv.FormatUint(n, 10), Header: hdr, Data: m.Data}
	if err := i.hubNC.PublishMsg(out); err != nil {
		if i.take(n) != nil {
			<-i.sem
			i.failed(p, resStoreError, apiErrorJSON(503, "hub store unavailable: "+err.Error()))
		}
	}
}

// take removes and returns pending event n (nil if already answered).
func (i *ingest) take(n uint64) *pending {
	i.mu.Lock()
	defer i.mu.Unlock()
	p := i.pending[n]
	delete(i.pending, n)
	return p
}

// ack runs for every answer of the stream, in order.
func (i *ingest) ack(m *nats.Msg) {
	n, err := strconv.ParseUint(strings.TrimPrefix(m.Subject, i.prefix), 10, 64)
	if err != nil {
		return
	}
	p := i.take(n)
	if p == nil {
		return // answered already (timed out)
	}
	<-i.sem
	i.h.m.storeSeconds.Observe(time.Since(p.start).Seconds())
	var a pubAck
	if len(m.Data) == 0 {
		// a status message such as 503 no responders: no stream
		desc := "hub stream unavailable"
		if st := m.Header.Get("Status"); st != "" {
			desc += " (status " + st + ")"
		}
		i.failed(p, resStoreError, apiErrorJSON(503, desc))
		return
	}
	if err := json.Unmarshal(m.Data, &a); err != nil {
		i.failed(p, resStoreError, apiErrorJSON(500, "unreadable answer from the hub stream"))
		return
	}
	if a.Error != nil {
		i.h.log.Warn("event not stored", "edge", p.edge, "msg_id", p.msgID, "code", a.Error.Code, "err_code", a.Error.ErrCode, "err", a.Error.Description)
		i.failed(p, resStoreError, m.Data)
		return
	}
	i.open(p.edge, p.epoch, p.seq)
	if p.reply != "" {
		i.edgeNC.Publish(p.reply, m.Data) // the stream's PubAck, byte for byte
	}
	if a.Duplicate {
		i.count(resDuplicate)
		i.h.edges.counted(p.edge, false)
		return
	}
	i.count(resStored)
	i.h.edges.counted(p.edge, true)
	i.republish(p)
}

// failed answers an event that was not stored and closes its edge's gate.
func (i *ingest) failed(p *pending, result string, answer []byte) {
	i.count(result)
	i.close(p.edge, p.epoch, p.seq)
	if p.reply != "" {
		i.edgeNC.Publish(p.reply, answer)
	}
}

func gateKey(id, epoch string) string { return id + ":" + epoch }

// blocked reports whether seq must wait for an earlier failed event of the
// same edge and epoch. Gates are per epoch: a wiped edge store (new epoch)
// is not held back by the old one, and the old one stays gated.
func (i *ingest) blocked(id, epoch string, seq uint64) (bool, gate) {
	i.mu.Lock()
	defer i.mu.Unlock()
	g, ok := i.gates[gateKey(id, epoch)]
	return ok && seq > g.seq, g
}

// close blocks edge id's sequences after seq (keeping the lowest failure).
func (i *ingest) close(id, epoch string, seq uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	k := gateKey(id, epoch)
	if g, ok := i.gates[k]; ok && g.seq <= seq {
		return
	}
	i.gates[k] = gate{epoch, seq}
}

// open lifts the gate when the event it waits for is stored.
func (i *ingest) open(id, epoch string, seq uint64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	k := gateKey(id, epoch)
	if g, ok := i.gates[k]; ok && g.seq == seq {
		delete(i.gates, k)
	}
}

// sweep answers events the stream did not answer in time.
func (i *ingest) sweep() {
	defer i.wg.Done()
	every := min(max(i.timeout/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-i.done:
			return
		case now := <-t.C:
			var late []*pending
			i.mu.Lock()
			for n, p := range i.pending {
				if now.Sub(p.start) > i.timeout {
					late = append(late, p)
					delete(i.pending, n)
				}
			}
			i.mu.Unlock()
			for _, p := range late {
				<-i.sem
				i.h.log.Warn("event store timed out", "edge", p.edge, "msg_id", p.msgID, "timeout", i.timeout)
				i.failed(p, resTimeout, apiErrorJSON(503, "hub store timeout; retry"))
			}
		}
	}
}

func (i *ingest) heartbeat(id string, m *nats.Msg) {
	var hb Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		i.refuse(m, 400, resBadHeartbeat, "heartbeat: "+err.Error())
		return
	}
	if hb.ID == "" {
		hb.ID = id
	}
	if hb.ID != id {
		i.h.log.Warn("forged heartbeat refused", "edge", id, "claims", hb.ID)
		i.refuse(m, 400, resBadHeartbeat, fmt.Sprintf("heartbeat of edge %q sent by edge %q", hb.ID, id))
		return
	}
	i.h.edges.heartbeat(hb, time.Now())
	for _, f := range i.h.hbHooks { // fixed once Run started
		f(hb)
	}
	i.count(resHeartbeat)
	if m.Reply != "" {
		i.edgeNC.Publish(m.Reply, []byte("ok"))
	}
}

// republish publishes a newly stored event on the subject of its MQTT
// topic (with the configured prefix), payload unchanged, for MQTT and NATS
// subscribers.
func (i *ingest) republish(p *pending) {
	rc := i.h.cfg.Republish
	if !rc.Enabled {
		return
	}
	subj, ok := republishSubject(rc.TopicPrefix, p.rest)
	if !ok {
		i.h.m.republishSkipped.Inc()
		return
	}
	hdr := make(nats.Header, len(p.hdr))
	for k, v := range p.hdr {
		if k != event.HdrMsgID {
			hdr[k] = v
		}
	}
	if err := i.repNC.PublishMsg(&nats.Msg{Subject: subj, Header: hdr, Data: p.data}); err != nil {
		i.h.log.Warn("republish", "subject", subj, "err", err)
		return
	}
	i.h.m.republished.Inc()
	i.h.m.republishedN.Add(1)
}

// republishSubject is the subject an event stored under rest (the subject
// of its MQTT topic) is republished on. Internal subjects (starting with '$'
// or '_', the hub stream's hub.ev.> and the ingest's edge.>) are never
// republished.
func republishSubject(prefix, rest string) (string, bool) {
	subj := rest
	if prefix != "" {
		s, err := event.TopicToSubject(prefix + event.SubjectToTopic(rest))
		if err != nil {
			return "", false
		}
		subj = s
	}
	if subj == "" || subj[0] == '$' || subj[0] == '_' {
		return "", false
	}
	for _, root := range []string{strings.TrimSuffix(event.HubSubjectPrefix, "."), strings.TrimSuffix(event.IngestPrefix, ".")} {
		if subj == root || strings.HasPrefix(subj, root+".") {
			return "", false
		}
	}
	return subj, true
}
