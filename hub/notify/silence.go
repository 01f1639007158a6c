package notify

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// watcher tracks silence watches and edge links. It is pure state: the
// engine feeds it events, link changes and clock ticks, and sends what it
// returns. Its state survives reloads (watches are keyed by name and edge).
type watcher struct {
	mu      sync.Mutex
	watches map[watchKey]*watchState
	edges   map[string]*linkState
}

type watchKey struct{ name, edge string }

type watchState struct {
	lastSeen time.Time
	silent   bool
}

type linkState struct {
	down    bool
	since   time.Time
	alerted bool
}

// alertKind is what a synthetic notification says.
type alertKind string

const (
	alertSilence   alertKind = "silence"
	alertRecovered alertKind = "recovered"
	alertOffline   alertKind = "offline"
	alertOnline    alertKind = "online"
)

// alert is a synthetic notification to plan and send.
type alert struct {
	kind     alertKind
	rule     string // silence watch name ("" for offline alerts)
	edge     string
	topic    string // the watch's filter
	since    time.Time
	duration time.Duration
	after    time.Duration
	at       time.Time
}

func newWatcher() *watcher {
	return &watcher{watches: map[watchKey]*watchState{}, edges: map[string]*linkState{}}
}

// allEdges is the edge value of a watch over every edge.
const allEdges = "all edges"

// sync adds the watches of c (starting their clock at now) and forgets
// watches no longer configured.
func (w *watcher) sync(c *compiled, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	want := map[watchKey]bool{}
	for _, r := range c.silence {
		for _, k := range r.keys() {
			want[k] = true
			if _, ok := w.watches[k]; !ok {
				w.watches[k] = &watchState{lastSeen: now}
			}
		}
	}
	for k := range w.watches {
		if !want[k] {
			delete(w.watches, k)
		}
	}
}

func (r *silenceRule) keys() []watchKey {
	if len(r.edges) == 0 {
		return []watchKey{{r.name, allEdges}}
	}
	out := make([]watchKey, len(r.edges))
	for i, e := range r.edges {
		out[i] = watchKey{r.name, e}
	}
	return out
}

// observe records an event and returns recovery alerts for watches that
// were silent.
func (w *watcher) observe(c *compiled, ev *Event, now time.Time) []alert {
	if len(c.silence) == 0 {
		return nil
	}
	var out []alert
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range c.silence {
		if !MatchTopic(r.filter, ev.Topic) {
			continue
		}
		k := watchKey{r.name, allEdges}
		if len(r.edges) > 0 {
			k.edge = ev.Edge
			found := false
			for _, e := range r.edges {
				if e == ev.Edge {
					found = true
					break
				}
			}
			if !found {
				continue
			}
		}
		st := w.watches[k]
		if st == nil {
			st = &watchState{}
			w.watches[k] = st
		}
		if st.silent {
			st.silent = false
			out = append(out, alert{kind: alertRecovered, rule: r.name, edge: k.edge, topic: r.filter, since: st.lastSeen, duration: now.Sub(st.lastSeen), after: r.after, at: now})
		}
		st.lastSeen = now
	}
	return out
}

// link records an edge's hub link state; it returns an "online" alert
// when an edge that was reported offline comes back.
func (w *watcher) link(edge string, up bool, at time.Time) []alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.edges[edge]
	if st == nil {
		st = &linkState{}
		w.edges[edge] = st
	}
	if !up {
		if !st.down {
			st.down, st.since, st.alerted = true, at, false
		}
		return nil
	}
	var out []alert
	if st.down && st.alerted {
		out = append(out, alert{kind: alertOnline, edge: edge, since: st.since, duration: at.Sub(st.since), at: at})
	}
	st.down, st.alerted = false, false
	return out
}

// tick returns the silence and offline alerts due at now.
func (w *watcher) tick(c *compiled, now time.Time) []alert {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []alert
	for _, r := range c.silence {
		for _, k := range r.keys() {
			st := w.watches[k]
			if st == nil || st.silent {
				continue
			}
			if now.Sub(st.lastSeen) >= r.after {
				st.silent = true
				out = append(out, alert{kind: alertSilence, rule: r.name, edge: k.edge, topic: r.filter, since: st.lastSeen, duration: now.Sub(st.lastSeen), after: r.after, at: now})
			}
		}
	}
	if c.offline != nil {
		for _, edge := range sortedKeys(w.edges) {
			st := w.edges[edge]
			if !st.down || st.alerted || !matchGlobs(c.offline.edges, edge) && len(c.offline.edges) > 0 {
				continue
			}
			if now.Sub(st.since) >= c.offline.after {
				st.alerted = true
				out = append(out, alert{kind: alertOffline, edge: edge, since: st.since, duration: now.Sub(st.since), after: c.offline.after, at: now})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].rule < out[j].rule })
	return out
}

// silentWatches lists the watches currently silent (for metrics/status).
func (w *watcher) silentWatches() map[watchKey]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[watchKey]bool{}
	for k, st := range w.watches {
		out[k] = st.silent
	}
	return out
}

// tickInterval is how often the engine checks watches: a quarter of the
// shortest threshold, between 1s and 30s.
func tickInterval(c *compiled) time.Duration {
	d := 30 * time.Second
	for _, r := range c.silence {
		d = min(d, r.after/4)
	}
	if c.offline != nil {
		d = min(d, c.offline.after/4)
	}
	return max(d, time.Second)
}

// humanDuration prints a duration without zero units: 30m, 1h5m, 45s.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Second {
		return "0s"
	}
	var b strings.Builder
	if h := d / time.Hour; h > 0 {
		b.WriteString(strconv.Itoa(int(h)) + "h")
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		b.WriteString(strconv.Itoa(int(m)) + "m")
		d -= m * time.Minute
	}
	if s := d / time.Second; s > 0 {
		b.WriteString(strconv.Itoa(int(s)) + "s")
	}
	return b.String()
}

// plan turns an alert into notifications using the rule's settings.
func (c *compiled) planAlert(a alert, o planOpts) []planned {
	var sp *notifySpec
	var title, body renderer
	var topic, route string
	switch a.kind {
	case alertSilence, alertRecovered:
		var rule *silenceRule
		for _, r := range c.silence {
			if r.name == a.rule {
				rule = r
			}
		}
		if rule == nil {
			return nil
		}
		sp = &rule.spec
		if a.kind == alertRecovered {
			title, body = rule.recTitle, rule.recBody
		}
		topic, route = "warren/silence/"+a.rule, "silence."+a.rule
	case alertOffline, alertOnline:
		if c.offline == nil {
			return nil
		}
		sp = &c.offline.spec
		if a.kind == alertOnline {
			title, body = c.offline.recTitle, c.offline.recBody
		}
		topic, route = "warren/offline/"+a.edge, "offline"
	}
	fields := map[string]any{
		"name":     a.rule,
		"topic":    a.topic,
		"edge":     a.edge,
		"state":    string(a.kind),
		"since":    a.since.UTC().Format(time.RFC3339),
		"duration": humanDuration(a.duration),
		"after":    humanDuration(a.after),
	}
	if a.kind == alertOffline || a.kind == alertOnline {
		delete(fields, "name")
		delete(fields, "topic")
	}
	payload, _ := json.Marshal(fields)
	id := "warren:" + string(a.kind) + ":" + a.rule + ":" + a.edge + ":" + strconv.FormatInt(a.at.UnixNano(), 10)
	ev := &Event{ID: id, Topic: topic, Edge: a.edge, Source: "notify", Payload: payload, Received: a.at, doc: fields}
	// renderData lets the alert's fields win over the built-ins, so
	// {topic} is the watch's filter, not the synthetic topic.
	data := renderData(ev, c.loc)
	return c.planSpec(nil, ev, data, route, sp, o, title, body)
}
