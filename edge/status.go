package edge

import (
	"context"
	"time"

	"github.com/warren-mesh/warren/internal/version"
)

// Status is what `edge status` shows and /status serves.
type Status struct {
	// Version is the edge's build version.
	Version string `json:"version"`
	// ID is the edge id.
	ID string `json:"id"`
	// Epoch is the store epoch.
	Epoch string `json:"epoch"`
	// Started is when the edge started; UptimeSeconds how long ago.
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Listeners are the bound addresses; "" when off.
	Listeners Listeners `json:"listeners"`
	// Accepted counts events stored, by source (udp, mqtt).
	Accepted map[string]uint64 `json:"accepted"`
	// Rejected counts refusals by reason (every reason, zeros included).
	Rejected map[string]uint64 `json:"rejected"`
	// Datagrams counts UDP datagrams received by format (v0, v1, unknown).
	Datagrams map[string]uint64 `json:"datagrams"`
	// UnsignedAccepted counts accepted v0 (unsigned) datagrams.
	UnsignedAccepted uint64 `json:"unsigned_accepted"`
	// TstFixed counts accepted hare events whose tst was replaced by the
	// receive time.
	TstFixed uint64 `json:"tst_fixed"`
	// Expired counts events deleted unforwarded by store.max_age.
	Expired uint64 `json:"expired"`
	// Queue is the ingest queue's length and capacity.
	Queue QueueStatus `json:"queue"`
	// Stream is the edge stream (the backlog).
	Stream StreamStatus `json:"stream"`
	// Hub is the hub link as the bridge reports it, or
	// {"state": "not configured"} when no bridge is running.
	Hub any `json:"hub"`
	// Discovery is the gossip view (members, the hub chosen and why) when
	// discovery runs; absent otherwise.
	Discovery any `json:"discovery,omitempty"`
}

// SetDiscoveryStatus installs the discovery view hook (cmd/edge's
// discovery service); its value appears as "discovery" in Status. nil
// removes it.
func (e *Edge) SetDiscoveryStatus(f func() any) {
	if f == nil {
		e.discStatus.Store(nil)
		return
	}
	e.discStatus.Store(&f)
}

// Listeners are the edge's bound addresses.
type Listeners struct {
	UDP   string `json:"udp"`
	MQTT  string `json:"mqtt"`
	NATS  string `json:"nats"`
	Admin string `json:"admin"`
}

// QueueStatus is the ingest queue's fill.
type QueueStatus struct {
	Length   int `json:"length"`
	Capacity int `json:"capacity"`
}

// HubNotConfigured is Status.Hub when no link-status hook is set.
type HubNotConfigured struct {
	State string `json:"state"`
}

// StoreFullRefused is the number of events refused since start because the
// store was full (bridge.StoreFullSource: the bridge reports it in its
// heartbeat and the hub raises the audit alert the edge cannot store).
func (e *Edge) StoreFullRefused() uint64 { return e.counters.rejected[ReasonStoreFull].Load() }

// Status collects the edge's state. It reads the stream's state from
// JetStream (bounded to 2 s); a failure shows in Stream.Error.
func (e *Edge) Status() Status {
	e.refreshMQTTDrops()
	c := e.counters
	st := Status{
		Version:          version.Version,
		ID:               e.cfg.ID,
		Epoch:            e.epoch,
		Started:          e.started.UTC(),
		UptimeSeconds:    time.Since(e.started).Seconds(),
		Listeners:        Listeners{UDP: e.UDPAddr(), MQTT: e.MQTTAddr(), NATS: e.NATSURL(), Admin: e.AdminAddr()},
		Accepted:         snapshot(c.accepted),
		Rejected:         snapshot(c.rejected),
		Datagrams:        snapshot(c.datagrams),
		UnsignedAccepted: c.unsigned.Load(),
		TstFixed:         c.tstFixed.Load(),
		Expired:          c.expired.Load(),
		Queue:            QueueStatus{Length: e.queueLen(), Capacity: e.cfg.Ingest.QueueSize},
		Hub:              HubNotConfigured{State: "not configured"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st.Stream, _ = e.streamStatus(ctx)
	if f := e.linkStatus.Load(); f != nil {
		st.Hub = (*f)()
	}
	if f := e.discStatus.Load(); f != nil {
		st.Discovery = (*f)()
	}
	return st
}
