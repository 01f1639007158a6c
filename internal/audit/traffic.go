package audit

import (
	"fmt"
	"sort"
	"sync"
)

// maxTrafficNames bounds the names a traffic interval tracks; more are
// summed under OtherLabel.
const maxTrafficNames = 10000

// trafficAcc sums message counts per client and per topic between two
// traffic events.
type trafficAcc struct {
	mu      sync.Mutex
	clients map[string]*Traffic
	topics  map[string]*Traffic
}

func newTrafficAcc() *trafficAcc {
	return &trafficAcc{clients: map[string]*Traffic{}, topics: map[string]*Traffic{}}
}

func (t *trafficAcc) add(client bool, name string, in, out uint64) {
	if in == 0 && out == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.topics
	if client {
		m = t.clients
	}
	e := m[name]
	if e == nil {
		if len(m) >= maxTrafficNames {
			name = OtherLabel
			e = m[name]
		}
		if e == nil {
			e = &Traffic{Name: name}
			m[name] = e
		}
	}
	e.In += in
	e.Out += out
}

// take returns the top n clients and topics by messages (the rest summed
// as OtherLabel) and starts a new interval.
func (t *trafficAcc) take(n int) (clients, topics []Traffic) {
	t.mu.Lock()
	c, p := t.clients, t.topics
	t.clients, t.topics = map[string]*Traffic{}, map[string]*Traffic{}
	t.mu.Unlock()
	return topN(c, n), topN(p, n)
}

func topN(m map[string]*Traffic, n int) []Traffic {
	if len(m) == 0 {
		return nil
	}
	all := make([]Traffic, 0, len(m))
	var other *Traffic
	for _, e := range m {
		if e.Name == OtherLabel {
			other = &Traffic{Name: OtherLabel, In: e.In, Out: e.Out}
			continue
		}
		all = append(all, *e)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].In+all[i].Out, all[j].In+all[j].Out
		if a != b {
			return a > b
		}
		return all[i].Name < all[j].Name
	})
	if len(all) > n {
		if other == nil {
			other = &Traffic{Name: OtherLabel}
		}
		for _, e := range all[n:] {
			other.In += e.In
			other.Out += e.Out
		}
		all = all[:n]
	}
	if other != nil {
		all = append(all, *other)
	}
	return all
}

// emitTraffic emits the interval's traffic event, if anything moved.
func (a *Auditor) emitTraffic() {
	clients, topics := a.traffic.take(a.cfg.TrafficTop)
	if len(clients) == 0 && len(topics) == 0 {
		return
	}
	var in, out uint64
	for _, c := range clients {
		in += c.In
		out += c.Out
	}
	now := a.now().UTC()
	a.m.events.WithLabelValues(string(KindTraffic)).Inc()
	a.emit(Event{
		Kind: KindTraffic, Time: now, Observer: a.observer, Source: SourceNATS,
		Clients: clients, Topics: topics,
		Message: fmt.Sprintf("%d published, %d delivered in the last %s", in, out, a.cfg.TrafficInterval),
	})
}
