package discovery

import (
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate receives memberlist's callbacks. It is unexported so that other
// packages see only Node's methods and the Events channel.
//
// memberlist calls the event and ping callbacks while holding its own node
// lock, so they must be quick and must never call back into memberlist.
type delegate struct {
	self   string
	logger *slog.Logger
	now    func() time.Time
	meta   *atomic.Pointer[[]byte] // encoded local metadata

	events      chan Event
	hubLost     chan struct{} // signalled when the last known hub goes away
	evMu        sync.Mutex    // serialises emit's drop-oldest
	dropped     atomic.Uint64
	metaInvalid atomic.Uint64

	// bcast carries leave intents piggybacked on gossip.
	bcast *memberlist.TransmitLimitedQueue

	mu      sync.Mutex
	members map[string]*Member
	hub     HubChoice
	hasHub  bool
	leaving map[string]time.Time // leave intents received, by member name
}

// Leave intents. memberlist v0.7.0 does not say whether a member left or
// failed (NotifyLeave's Node.State is never set: nodeState shadows it), so a
// leaving node first gossips a leave intent, serf-style, and receivers mark
// the member left instead of dead when its departure follows.
const (
	msgLeaveIntent  byte = 1
	leaveIntentTTL       = 2 * time.Minute
	maxLeaveIntents      = 1024
)

// leaveIntent is a broadcast whose Finished closes done.
type leaveIntent struct {
	msg  []byte
	once sync.Once
	done chan struct{}
}

func newLeaveIntent(name string) *leaveIntent {
	return &leaveIntent{msg: append([]byte{msgLeaveIntent}, name...), done: make(chan struct{})}
}

func (b *leaveIntent) Invalidates(memberlist.Broadcast) bool { return false }
func (b *leaveIntent) Message() []byte                       { return b.msg }
func (b *leaveIntent) Finished()                             { b.once.Do(func() { close(b.done) }) }
func (b *leaveIntent) UniqueBroadcast()                      {}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.PingDelegate  = (*delegate)(nil)
)

func newDelegate(self string, buffer int, meta *atomic.Pointer[[]byte], bcast *memberlist.TransmitLimitedQueue, logger *slog.Logger) *delegate {
	return &delegate{
		self:    self,
		logger:  logger,
		now:     time.Now,
		meta:    meta,
		events:  make(chan Event, buffer),
		hubLost: make(chan struct{}, 1),
		bcast:   bcast,
		members: make(map[string]*Member),
		leaving: make(map[string]time.Time),
	}
}

// NodeMeta returns the local metadata, which EncodeMeta already bounded to
// MaxMetaSize (memberlist panics on more).
func (d *delegate) NodeMeta(limit int) []byte {
	p := d.meta.Load()
	if p == nil || len(*p) > limit {
		return nil
	}
	return *p
}

// NotifyMsg receives user messages; the only one is a leave intent, which is
// recorded and, the first time, gossiped on (user broadcasts are not
// relayed by memberlist itself). Anything else is ignored.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 2 || len(b) > 1+256 || b[0] != msgLeaveIntent {
		return
	}
	name := string(b[1:])
	if name == d.self {
		return
	}
	now := d.now()
	d.mu.Lock()
	if t, seen := d.leaving[name]; seen && now.Sub(t) <= leaveIntentTTL {
		d.mu.Unlock()
		return
	}
	if len(d.leaving) >= maxLeaveIntents {
		for k, t := range d.leaving {
			if now.Sub(t) > leaveIntentTTL {
				delete(d.leaving, k)
			}
		}
	}
	full := len(d.leaving) >= maxLeaveIntents
	if !full {
		d.leaving[name] = now
	}
	// The intent came after the departure, which was taken for a failure:
	// correct it, as serf does, with a leave event after the fail event.
	var late *Member
	if m, ok := d.members[name]; ok && m.State == StateDead && now.Sub(m.Since) <= leaveIntentTTL {
		m.State, m.Since = StateLeft, now
		cp := *m
		late = &cp
		delete(d.leaving, name)
	}
	d.mu.Unlock()
	if !full {
		d.bcast.QueueBroadcast(newLeaveIntent(name))
	}
	if late != nil {
		d.logger.Info("member left", "member", late.Name, "addr", late.Addr, "note", "leave intent arrived after the failure")
		d.emit(Event{Type: EventLeave, Member: *late, Time: now})
	}
}

// GetBroadcasts hands memberlist the queued leave intents.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.bcast.GetBroadcasts(overhead, limit)
}

// LocalState and MergeRemoteState: discovery keeps no state beyond metadata.
func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.apply(n, EventJoin) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.apply(n, EventUpdate) }

// NotifyLeave is called for a graceful leave and for a failure alike; a
// recent leave intent tells them apart.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.mu.Lock()
	t, ok := d.leaving[n.Name]
	delete(d.leaving, n.Name)
	d.mu.Unlock()
	if ok && d.now().Sub(t) <= leaveIntentTTL {
		d.apply(n, EventLeave)
	} else {
		d.apply(n, EventFail)
	}
}

// AckPayload and NotifyPingComplete record probe round-trip times.
func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, _ []byte) {
	name := other.Name
	d.mu.Lock()
	if m, ok := d.members[name]; ok {
		m.RTT = rtt
	}
	d.mu.Unlock()
}

// apply records a membership change and emits its event.
func (d *delegate) apply(n *memberlist.Node, typ EventType) {
	now := d.now()
	m := Member{
		Name:  n.Name,
		Addr:  n.Address(),
		State: StateAlive,
		Since: now,
		Self:  n.Name == d.self,
	}
	switch typ {
	case EventLeave:
		m.State = StateLeft
	case EventFail:
		m.State = StateDead
	}
	if meta, err := DecodeMeta(n.Meta); err != nil {
		m.MetaErr = err.Error()
	} else {
		m.Meta = meta
	}

	d.mu.Lock()
	if typ == EventJoin {
		delete(d.leaving, m.Name) // back again: an old intent no longer applies
	}
	old, known := d.members[m.Name]
	if known {
		m.RTT = old.RTT
		if old.State == m.State && old.Addr == m.Addr {
			m.Since = old.Since
		}
	}
	// Count every invalid record received; warn once per distinct problem.
	invalid := m.MetaErr != "" && (typ == EventJoin || typ == EventUpdate)
	warn := invalid && (!known || old.MetaErr != m.MetaErr)
	stored := m // the table owns its copy; m goes out with the event
	d.members[m.Name] = &stored
	changed, lost := d.rechooseLocked()
	hub := d.hub
	d.mu.Unlock()

	if invalid {
		d.metaInvalid.Add(1)
	}
	if warn {
		d.logger.Warn("member advertises invalid metadata; ignoring it", "member", m.Name, "addr", m.Addr, "err", m.MetaErr)
	}
	switch typ {
	case EventJoin:
		d.logger.Info("member joined", "member", m.Name, "addr", m.Addr, "role", string(m.Meta.Role))
	case EventLeave:
		d.logger.Info("member left", "member", m.Name, "addr", m.Addr)
	case EventFail:
		d.logger.Warn("member failed", "member", m.Name, "addr", m.Addr)
	case EventUpdate:
		d.logger.Debug("member updated", "member", m.Name, "addr", m.Addr)
	}
	if changed {
		d.logger.Info("hub chosen", "hub", hub.Name, "addr", hub.Addr, "reason", hub.Reason)
	}
	if lost {
		d.logger.Warn("no hub known")
		select {
		case d.hubLost <- struct{}{}:
		default:
		}
	}
	d.emit(Event{Type: typ, Member: m, Time: now})
}

// rechooseLocked recomputes the hub choice; it reports whether the chosen
// hub (name or address) changed and whether the last hub was lost.
func (d *delegate) rechooseLocked() (changed, lost bool) {
	choice, ok := chooseHub(d.snapshotLocked(), d.hub.Name)
	switch {
	case ok:
		changed = !d.hasHub || choice.Name != d.hub.Name || choice.Addr != d.hub.Addr
	case d.hasHub:
		lost = true
	}
	d.hub, d.hasHub = choice, ok
	return changed, lost
}

// emit delivers ev without ever blocking: when the buffer is full the oldest
// event is dropped and counted.
func (d *delegate) emit(ev Event) {
	d.evMu.Lock()
	defer d.evMu.Unlock()
	for range 2 {
		select {
		case d.events <- ev:
			return
		default:
		}
		select {
		case <-d.events:
			d.dropped.Add(1)
		default:
		}
	}
	d.dropped.Add(1) // unreachable in practice: only emit sends
}

func (d *delegate) snapshotLocked() []Member {
	out := make([]Member, 0, len(d.members))
	for _, m := range d.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (d *delegate) snapshot() []Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshotLocked()
}

func (d *delegate) hubChoice() (HubChoice, bool, []Member) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hub, d.hasHub, d.snapshotLocked()
}

// forget drops dead and departed members older than age.
func (d *delegate) forget(age time.Duration) {
	cut := d.now().Add(-age)
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, m := range d.members {
		if m.State != StateAlive && m.Since.Before(cut) {
			delete(d.members, name)
		}
	}
}
