package notify

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is the notifier's state for operators (`hub notify status`, GET
// /notify on the hub's admin listener), read from JetStream: what waits,
// what is being delivered, what was dead-lettered.
type Status struct {
	// Consumer is the durable consumer on the event stream.
	Consumer string `json:"consumer"`
	// EventsPending are stored events the notifier has not taken yet;
	// EventsInFlight are taken and not yet queued for their targets.
	EventsPending  uint64 `json:"events_pending"`
	EventsInFlight int    `json:"events_in_flight"`
	// Targets are the running targets, by name.
	Targets []TargetStatus `json:"targets"`
	// DeadLetters is the number of notifications in the dead-letter
	// stream (kept delivery.dlq_max_age).
	DeadLetters uint64 `json:"dead_letters"`
	// Error says what could not be read, if anything.
	Error string `json:"error,omitempty"`
}

// TargetStatus is one target's queue.
type TargetStatus struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Queued notifications wait in the outbox; InFlight are being sent or
	// retried (Redelivered of them at least once before).
	Queued      uint64 `json:"queued"`
	InFlight    int    `json:"in_flight"`
	Redelivered int    `json:"redelivered"`
	// PausedUntil is set while a Retry-After or a run of failures holds
	// the target.
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// DeadLetters of this target in the dead-letter stream.
	DeadLetters uint64 `json:"dead_letters"`
}

// Status reads the notifier's queues. It works while Run runs; before,
// it reports what JetStream has (nothing when the streams do not exist).
func (e *Engine) Status(ctx context.Context) Status {
	d := e.delivery
	st := Status{Consumer: d.Consumer, Targets: []TargetStatus{}}
	var errs []string
	if e.js == nil {
		st.Error = "no JetStream"
		return st
	}
	if c, err := e.js.Consumer(ctx, d.Stream, d.Consumer); err == nil {
		if info, err := c.Info(ctx); err == nil {
			st.EventsPending, st.EventsInFlight = info.NumPending, info.NumAckPending
		} else {
			errs = append(errs, err.Error())
		}
	} else {
		errs = append(errs, "consumer "+d.Consumer+": "+err.Error())
	}
	dead := map[string]uint64{}
	if s, err := e.js.Stream(ctx, d.DLQ); err == nil {
		if info, err := s.Info(ctx, jetstream.WithSubjectFilter(d.DLQPrefix+".>")); err == nil {
			st.DeadLetters = info.State.Msgs
			for subj, n := range info.State.Subjects {
				dead[strings.TrimPrefix(subj, d.DLQPrefix+".")] = n
			}
		} else {
			errs = append(errs, err.Error())
		}
	}
	types := e.cur.Load().c.cfg.Targets
	e.mu.Lock()
	runners := make([]*runner, 0, len(e.runners))
	for _, r := range e.runners {
		runners = append(runners, r)
	}
	e.mu.Unlock()
	for _, r := range runners {
		ts := TargetStatus{Name: r.name, Type: types[r.name].Type, DeadLetters: dead[r.name]}
		if info, err := r.cons.Info(ctx); err == nil {
			ts.Queued, ts.InFlight, ts.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
		} else {
			errs = append(errs, "target "+r.name+": "+err.Error())
		}
		if u := r.pausedUntil.Load(); u > time.Now().UnixNano() {
			t := time.Unix(0, u).UTC()
			ts.PausedUntil = &t
		}
		st.Targets = append(st.Targets, ts)
	}
	sort.Slice(st.Targets, func(i, j int) bool { return st.Targets[i].Name < st.Targets[j].Name })
	st.Error = strings.Join(errs, "; ")
	return st
}
