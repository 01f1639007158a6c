package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warren-mesh/warren/internal/audit"
	"github.com/warren-mesh/warren/internal/event"
)

// AggregatorConfig bounds the in-memory aggregator.
type AggregatorConfig struct {
	// Bucket is the timeline's resolution. Default 1m.
	Bucket time.Duration
	// Retention is how far back the timeline goes. Default 24h.
	Retention time.Duration
	// MaxNames bounds the devices and, separately, the topics counted by
	// name; later ones are counted as "other". Default 10000.
	MaxNames int
	// MaxAlerts is how many alerts are kept. Default 500.
	MaxAlerts int
	// MaxEdges bounds the edges known from events. Default 10000.
	MaxEdges int
	// HubID is the edge id under which the hub stores its own events (its
	// audit); they are counted but the hub is not listed in the fleet.
	HubID string
}

// DefaultAggregatorConfig is the configuration the hub uses.
func DefaultAggregatorConfig() AggregatorConfig {
	return AggregatorConfig{Bucket: time.Minute, Retention: 24 * time.Hour, MaxNames: 10000, MaxAlerts: 500, MaxEdges: 10000}
}

// Validate checks the configuration.
func (c AggregatorConfig) Validate() error {
	var errs []error
	if c.Bucket < time.Second {
		errs = append(errs, fmt.Errorf("bucket: at least 1s, got %s", c.Bucket))
	}
	if c.Retention < c.Bucket || c.Bucket > 0 && c.Retention/c.Bucket > 100000 {
		errs = append(errs, fmt.Errorf("retention: from one bucket to 100000 buckets, got %s", c.Retention))
	}
	if c.MaxNames <= 0 {
		errs = append(errs, fmt.Errorf("max_names: must be positive, got %d", c.MaxNames))
	}
	if c.MaxAlerts <= 0 {
		errs = append(errs, fmt.Errorf("max_alerts: must be positive, got %d", c.MaxAlerts))
	}
	if c.MaxEdges <= 0 {
		errs = append(errs, fmt.Errorf("max_edges: must be positive, got %d", c.MaxEdges))
	}
	return errors.Join(errs...)
}

// OtherName is the device or topic everything past MaxNames counts as.
const OtherName = "other"

const nSeries = 7

// series indexes, in SeriesNames order.
const (
	sLogins = iota
	sConnections
	sAuthFail
	sAlerts
	sEvents
	sPublishes
	sDeliveries
)

type bucket struct {
	slot int64 // unix time / Bucket: which period the bucket holds
	v    [nSeries]uint64
}

type edgeStats struct {
	version  string
	lastSeen time.Time
	events   uint64
	alerts   uint64
}

// Aggregator is an in-memory DataSource: counts per time bucket, per
// device and per topic since it started, the latest alerts, and the edges
// seen in events merged with the hub's own fleet list (SetFleet). Feed it
// with Observe (or Follow, which reads the hub's stream).
type Aggregator struct {
	cfg AggregatorConfig
	now func() time.Time

	mu      sync.Mutex
	buckets []bucket
	devices map[string]*Count
	topics  map[string]*Count
	edges   map[string]*edgeStats
	alerts  []Alert // ring, oldest first
	fleet   func() []Edge
	bad     uint64
}

// NewAggregator makes an empty aggregator.
func NewAggregator(cfg AggregatorConfig) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard aggregator: %w", err)
	}
	return &Aggregator{
		cfg:     cfg,
		now:     time.Now,
		buckets: make([]bucket, int(cfg.Retention/cfg.Bucket)+1),
		devices: map[string]*Count{},
		topics:  map[string]*Count{},
		edges:   map[string]*edgeStats{},
	}, nil
}

// SetFleet sets the function that lists the edges the hub knows (with
// connection state, address, version, backlog); edges seen only in events
// are added to its answer. Call it before serving.
func (a *Aggregator) SetFleet(f func() []Edge) {
	a.mu.Lock()
	a.fleet = f
	a.mu.Unlock()
}

// Message is one stored event as the aggregator needs it.
type Message struct {
	Edge    string    // edge id
	Topic   string    // MQTT topic
	Source  string    // event.SourceUDP, SourceMQTT, SourceAudit
	Time    time.Time // receive time at the edge
	Payload []byte
}

// Observe counts one stored event: audit events (source "audit" or a
// warren/audit/ topic) by kind, hare logins (topic logging/hare or source
// udp) per host, every other event per topic. Bad audit payloads are
// counted and skipped.
func (a *Aggregator) Observe(m Message) {
	if m.Source == event.SourceAudit || strings.HasPrefix(m.Topic, audit.TopicPrefix) {
		ev, err := audit.Decode(m.Payload)
		if err != nil {
			a.mu.Lock()
			a.bad++
			a.mu.Unlock()
			return
		}
		if ev.Time.IsZero() {
			ev.Time = m.Time
		}
		a.ObserveAudit(m.Edge, ev)
		return
	}
	at := m.Time
	if at.IsZero() {
		at = a.now()
	}
	login := m.Topic == event.HareTopic || m.Source == event.SourceUDP
	var host string
	if login {
		var p struct {
			Hostname string `json:"hostname"`
		}
		if json.Unmarshal(m.Payload, &p) == nil {
			host = p.Hostname
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucket(at)
	if b != nil {
		b.v[sEvents]++
		if login {
			b.v[sLogins]++
		}
	}
	a.count(a.topics, m.Topic, 1, 0)
	if login && host != "" {
		a.count(a.devices, deviceName(m.Edge, host), 1, 0)
	}
	if e := a.edge(m.Edge); e != nil {
		e.events++
		if at.After(e.lastSeen) {
			e.lastSeen = at
		}
	}
}

// ObserveAudit counts one audit event of edge (empty for the hub's own).
func (a *Aggregator) ObserveAudit(edge string, ev audit.Event) {
	at := ev.Time
	if at.IsZero() {
		at = a.now()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucket(at)
	e := a.edge(edge)
	if e != nil && at.After(e.lastSeen) {
		e.lastSeen = at
	}
	switch ev.Kind {
	case audit.KindConnect:
		if b != nil {
			b.v[sConnections]++
		}
	case audit.KindAuthFail:
		if b != nil {
			b.v[sAuthFail]++
		}
	case audit.KindAlert:
		if b != nil {
			b.v[sAlerts]++
		}
		if e != nil {
			e.alerts++
		}
		al := Alert{Time: at.UTC(), Edge: edge, Rule: string(ev.Rule), Severity: ev.Severity, Key: ev.Key, Count: ev.Count, Message: ev.Message}
		if len(a.alerts) >= a.cfg.MaxAlerts {
			a.alerts = append(a.alerts[:0], a.alerts[1:]...)
		}
		a.alerts = append(a.alerts, al)
	case audit.KindTraffic:
		var in, out uint64
		for _, c := range ev.Clients {
			a.count(a.devices, deviceName(edge, c.Name), c.In, c.Out)
			in += c.In
			out += c.Out
		}
		for _, t := range ev.Topics {
			// Publishes per topic are the stored events; deliveries come
			// from the brokers' subscription counts.
			a.count(a.topics, t.Name, 0, t.Out)
		}
		if b != nil {
			b.v[sPublishes] += in
			b.v[sDeliveries] += out
		}
	case audit.KindVersion:
		if ev.Lang == "edge" && ev.Edge != "" {
			if x := a.edge(ev.Edge); x != nil {
				x.version = ev.Version
			}
		}
	}
}

// deviceName qualifies a client id or host with its edge: client ids are
// only unique per broker.
func deviceName(edge, name string) string {
	if edge == "" || name == OtherName {
		return name
	}
	return edge + "/" + name
}

// bucket returns the bucket of t, or nil when t is outside the retention
// (too old, or more than a bucket in the future). Callers hold a.mu.
func (a *Aggregator) bucket(t time.Time) *bucket {
	now := a.now()
	if t.Before(now.Add(-a.cfg.Retention)) || t.After(now.Add(a.cfg.Bucket)) {
		return nil
	}
	slot := t.UnixNano() / int64(a.cfg.Bucket)
	b := &a.buckets[int(slot%int64(len(a.buckets)))]
	if b.slot != slot {
		*b = bucket{slot: slot}
	}
	return b
}

func (a *Aggregator) count(m map[string]*Count, name string, in, out uint64) {
	if name == "" || in == 0 && out == 0 {
		return
	}
	c := m[name]
	if c == nil {
		if len(m) >= a.cfg.MaxNames {
			name = OtherName
			c = m[name]
		}
		if c == nil {
			c = &Count{Name: name}
			m[name] = c
		}
	}
	c.In += in
	c.Out += out
}

func (a *Aggregator) edge(id string) *edgeStats {
	if id == "" || id == a.cfg.HubID {
		return nil
	}
	e := a.edges[id]
	if e == nil {
		if len(a.edges) >= a.cfg.MaxEdges {
			return nil
		}
		e = &edgeStats{}
		a.edges[id] = e
	}
	return e
}

// Timeline implements DataSource. step is rounded up to a multiple of the
// bucket; window to the retention.
func (a *Aggregator) Timeline(_ context.Context, window, step time.Duration) (Timeline, error) {
	if window <= 0 || step <= 0 {
		return Timeline{}, errors.New("window and step must be positive")
	}
	bk := a.cfg.Bucket
	if step < bk {
		step = bk
	}
	step = (step + bk - 1) / bk * bk
	if window > a.cfg.Retention {
		window = a.cfg.Retention
	}
	per := int64(step / bk)
	n := int((window + step - 1) / step)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	// The last step ends with the current bucket.
	lastSlot := now.UnixNano() / int64(bk)
	firstSlot := lastSlot - int64(n)*per + 1
	tl := Timeline{StepMS: step.Milliseconds(), Times: make([]int64, n), Series: map[string][]uint64{}}
	vals := make([][]uint64, nSeries)
	for i := range vals {
		vals[i] = make([]uint64, n)
	}
	for i := 0; i < n; i++ {
		tl.Times[i] = time.Unix(0, (firstSlot+int64(i)*per)*int64(bk)).UnixMilli()
		for s := int64(0); s < per; s++ {
			slot := firstSlot + int64(i)*per + s
			if slot < 0 {
				continue
			}
			b := a.buckets[int(slot%int64(len(a.buckets)))]
			if b.slot != slot {
				continue
			}
			for k := 0; k < nSeries; k++ {
				vals[k][i] += b.v[k]
			}
		}
	}
	for k, name := range SeriesNames {
		tl.Series[name] = vals[k]
	}
	return tl, nil
}

func top(m map[string]*Count, n int) []Count {
	out := make([]Count, 0, len(m))
	for _, c := range m {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].In+out[i].Out, out[j].In+out[j].Out
		if a != b {
			return a > b
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// TopDevices implements DataSource.
func (a *Aggregator) TopDevices(_ context.Context, n int) ([]Count, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return top(a.devices, n), nil
}

// TopTopics implements DataSource.
func (a *Aggregator) TopTopics(_ context.Context, n int) ([]Count, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return top(a.topics, n), nil
}

// Alerts implements DataSource.
func (a *Aggregator) Alerts(_ context.Context, n int) ([]Alert, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Alert, 0, min(n, len(a.alerts)))
	for i := len(a.alerts) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, a.alerts[i])
	}
	return out, nil
}

// Fleet implements DataSource: the hub's list (SetFleet) plus edges seen
// only in events, with event and alert counts.
func (a *Aggregator) Fleet(_ context.Context) ([]Edge, error) {
	a.mu.Lock()
	f := a.fleet
	a.mu.Unlock()
	var base []Edge
	if f != nil {
		base = f() // outside the lock: it asks the hub
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	byID := map[string]int{}
	out := make([]Edge, 0, len(base)+len(a.edges))
	for _, e := range base {
		byID[e.ID] = len(out)
		out = append(out, e)
	}
	for id, st := range a.edges {
		i, ok := byID[id]
		if !ok {
			i = len(out)
			out = append(out, Edge{ID: id})
		}
		e := &out[i]
		e.Events, e.Alerts = st.events, st.alerts
		if e.Version == "" {
			e.Version = st.version
		}
		if !st.lastSeen.IsZero() && (e.LastSeen == nil || st.lastSeen.After(*e.LastSeen)) {
			t := st.lastSeen.UTC()
			e.LastSeen = &t
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Rejected is the number of audit payloads Observe could not decode.
func (a *Aggregator) Rejected() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bad
}

var _ DataSource = (*Aggregator)(nil)
