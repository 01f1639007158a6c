package discovery

import (
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// newTestDelegate is a delegate outside any memberlist, fed by hand.
func newTestDelegate(buffer int) *delegate {
	var meta atomic.Pointer[[]byte]
	q := &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 3 }, RetransmitMult: 2}
	return newDelegate("self", buffer, &meta, q, slog.New(slog.DiscardHandler))
}

func mlNode(name string, meta Meta) *memberlist.Node {
	b, _, err := EncodeMeta(meta)
	if err != nil {
		panic(err)
	}
	return &memberlist.Node{Name: name, Addr: net.IPv4(192, 0, 2, 1), Port: 7946, Meta: b}
}

func drain(d *delegate) []Event {
	var out []Event
	for {
		select {
		case ev := <-d.events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func eventTypes(evs []Event) []EventType {
	var out []EventType
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

func TestLeaveIntent(t *testing.T) {
	edge := Meta{Role: RoleEdge, ID: "e1"}
	t.Run("intent before departure", func(t *testing.T) {
		d := newTestDelegate(16)
		n := mlNode("e1", edge)
		d.NotifyJoin(n)
		d.NotifyMsg(append([]byte{msgLeaveIntent}, "e1"...))
		if d.bcast.NumQueued() != 1 {
			t.Errorf("intent not relayed: %d queued", d.bcast.NumQueued())
		}
		d.NotifyMsg(append([]byte{msgLeaveIntent}, "e1"...)) // a duplicate is not relayed again
		if d.bcast.NumQueued() != 1 {
			t.Errorf("duplicate intent relayed: %d queued", d.bcast.NumQueued())
		}
		d.NotifyLeave(n)
		evs := drain(d)
		if got := eventTypes(evs); len(got) != 2 || got[1] != EventLeave {
			t.Fatalf("events %v, want join then leave", got)
		}
		if m := d.snapshot()[0]; m.State != StateLeft || m.Meta.ID != "e1" {
			t.Errorf("member %+v", m)
		}
	})
	t.Run("intent after departure", func(t *testing.T) {
		d := newTestDelegate(16)
		n := mlNode("e1", edge)
		d.NotifyJoin(n)
		d.NotifyLeave(n)
		d.NotifyMsg(append([]byte{msgLeaveIntent}, "e1"...))
		got := eventTypes(drain(d))
		if len(got) != 3 || got[1] != EventFail || got[2] != EventLeave {
			t.Fatalf("events %v, want join, fail, leave", got)
		}
		if m := d.snapshot()[0]; m.State != StateLeft {
			t.Errorf("member %+v", m)
		}
	})
	t.Run("no intent is a failure", func(t *testing.T) {
		d := newTestDelegate(16)
		n := mlNode("e1", edge)
		d.NotifyJoin(n)
		d.NotifyLeave(n)
		if got := eventTypes(drain(d)); len(got) != 2 || got[1] != EventFail {
			t.Fatalf("events %v, want join then fail", got)
		}
	})
	t.Run("stale intent does not count", func(t *testing.T) {
		d := newTestDelegate(16)
		now := time.Unix(1000, 0)
		d.now = func() time.Time { return now }
		n := mlNode("e1", edge)
		d.NotifyJoin(n)
		d.NotifyMsg(append([]byte{msgLeaveIntent}, "e1"...))
		now = now.Add(leaveIntentTTL + time.Second)
		d.NotifyLeave(n)
		if got := eventTypes(drain(d)); got[len(got)-1] != EventFail {
			t.Fatalf("events %v, want a failure", got)
		}
	})
	t.Run("rejoin clears the intent", func(t *testing.T) {
		d := newTestDelegate(16)
		n := mlNode("e1", edge)
		d.NotifyMsg(append([]byte{msgLeaveIntent}, "e1"...))
		d.NotifyJoin(n)
		d.NotifyLeave(n)
		if got := eventTypes(drain(d)); got[len(got)-1] != EventFail {
			t.Fatalf("events %v, want a failure", got)
		}
	})
	t.Run("garbage messages ignored", func(t *testing.T) {
		d := newTestDelegate(16)
		for _, b := range [][]byte{nil, {}, {msgLeaveIntent}, {9, 'x'}, append([]byte{msgLeaveIntent}, make([]byte, 300)...), append([]byte{msgLeaveIntent}, "self"...)} {
			d.NotifyMsg(b)
		}
		if len(d.leaving) != 0 || d.bcast.NumQueued() != 0 {
			t.Errorf("garbage recorded: %v, %d queued", d.leaving, d.bcast.NumQueued())
		}
	})
}

func TestEmitDropsOldest(t *testing.T) {
	d := newTestDelegate(2)
	for i := range 5 {
		d.emit(Event{Type: EventUpdate, Member: Member{Name: string(rune('a' + i))}})
	}
	evs := drain(d)
	if len(evs) != 2 || evs[0].Member.Name != "d" || evs[1].Member.Name != "e" {
		t.Errorf("kept %v, want the newest two (d, e)", evs)
	}
	if d.dropped.Load() != 3 {
		t.Errorf("dropped = %d, want 3", d.dropped.Load())
	}
}

func TestInvalidMetaCounted(t *testing.T) {
	d := newTestDelegate(16)
	n := &memberlist.Node{Name: "x", Addr: net.IPv4(192, 0, 2, 9), Port: 1, Meta: []byte("garbage")}
	d.NotifyJoin(n)
	n.Meta = []byte(`{"r":"hub"}`) // valid, but a hub without URLs is never chosen
	d.NotifyUpdate(n)
	if d.metaInvalid.Load() != 1 {
		t.Errorf("metaInvalid = %d, want 1", d.metaInvalid.Load())
	}
	if _, ok, _ := d.hubChoice(); ok {
		t.Error("a hub without NATS URLs was chosen")
	}
	if m := d.snapshot()[0]; m.MetaErr != "" || m.Meta.Role != RoleHub {
		t.Errorf("member %+v", m)
	}
}
