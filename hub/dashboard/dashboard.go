// Package dashboard is the hub's dashboard page: an http.Handler (mounted
// on the hub's loopback admin listener, e.g. at /dashboard/) that serves a
// page with embedded assets — charts drawn by a bundled copy of Chart.js,
// no CDN — and its data as JSON under api/. The data comes from a
// DataSource; Aggregator is an in-memory one fed with the hub's stored
// events (Follow reads them from the HUB stream), audit events included.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Series names of a Timeline.
const (
	SeriesLogins      = "logins"        // hare login events (PAM session opens)
	SeriesConnections = "connections"   // client connections to any broker of the mesh (audit connect events)
	SeriesAuthFail    = "auth_failures" // refused logins (audit auth_failure events)
	SeriesAlerts      = "alerts"        // audit alerts
	SeriesEvents      = "events"        // events stored at the hub (audit events excluded)
	SeriesPublishes   = "publishes"     // messages published to the mesh's brokers (audit traffic events)
	SeriesDeliveries  = "deliveries"    // messages delivered by them (audit traffic events)
)

// SeriesNames lists the series in display order.
var SeriesNames = []string{SeriesLogins, SeriesConnections, SeriesAuthFail, SeriesAlerts, SeriesEvents, SeriesPublishes, SeriesDeliveries}

// Timeline is counts per time step. Times[i] is the start of step i (unix
// milliseconds); every series has one value per step.
type Timeline struct {
	StepMS int64               `json:"step_ms"`
	Times  []int64             `json:"times"`
	Series map[string][]uint64 `json:"series"`
}

// Count is a bar: messages of one device or topic. In counts what it
// published (for a topic: events stored under it), Out what was delivered
// to it (for a topic: deliveries through subscriptions with that filter).
type Count struct {
	Name string `json:"name"`
	In   uint64 `json:"in"`
	Out  uint64 `json:"out"`
}

// Edge is one edge of the fleet.
type Edge struct {
	ID          string     `json:"id"`
	Connected   bool       `json:"connected"`
	Address     string     `json:"address,omitempty"`
	Version     string     `json:"version,omitempty"`
	TLSVersion  string     `json:"tls_version,omitempty"`
	LastSeen    *time.Time `json:"last_seen,omitempty"`
	BacklogMsgs uint64     `json:"backlog_msgs"`
	Events      uint64     `json:"events"` // events seen by the dashboard
	Alerts      uint64     `json:"alerts"` // audit alerts seen by the dashboard
}

// Alert is one audit alert.
type Alert struct {
	Time     time.Time `json:"time"`
	Edge     string    `json:"edge,omitempty"`
	Rule     string    `json:"rule"`
	Severity string    `json:"severity,omitempty"`
	Key      string    `json:"key,omitempty"`
	Count    int       `json:"count,omitempty"`
	Message  string    `json:"message,omitempty"`
}

// DataSource is what the dashboard shows. Implementations must be safe
// for concurrent use.
type DataSource interface {
	// Timeline returns the last window in steps of step.
	Timeline(ctx context.Context, window, step time.Duration) (Timeline, error)
	// TopDevices returns the n busiest devices (client ids), busiest first.
	TopDevices(ctx context.Context, n int) ([]Count, error)
	// TopTopics returns the n busiest topics, busiest first.
	TopTopics(ctx context.Context, n int) ([]Count, error)
	// Fleet lists the edges, by id.
	Fleet(ctx context.Context) ([]Edge, error)
	// Alerts returns the n latest alerts, newest first.
	Alerts(ctx context.Context, n int) ([]Alert, error)
}

// Snapshot is everything the page draws, as api/snapshot serves it.
type Snapshot struct {
	Generated time.Time `json:"generated"`
	WindowMS  int64     `json:"window_ms"`
	Timeline  Timeline  `json:"timeline"`
	Devices   []Count   `json:"devices"`
	Topics    []Count   `json:"topics"`
	Fleet     []Edge    `json:"fleet"`
	Alerts    []Alert   `json:"alerts"`
}

// Options tune the page.
type Options struct {
	// Title heads the page. Default "warren".
	Title string
	// Window is the timeline's default span. Default 6h.
	Window time.Duration
	// Step is the timeline's default step. Default 5m.
	Step time.Duration
	// MaxWindow bounds the window a request may ask for. Default 24h.
	MaxWindow time.Duration
	// Top is the default number of bars. Default 15.
	Top int
	// Alerts is the default number of alerts listed. Default 50.
	Alerts int
	// Refresh is how often the page reloads its data. Default 15s.
	Refresh time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Title == "" {
		o.Title = "warren"
	}
	if o.Window <= 0 {
		o.Window = 6 * time.Hour
	}
	if o.Step <= 0 {
		o.Step = 5 * time.Minute
	}
	if o.MaxWindow <= 0 {
		o.MaxWindow = 24 * time.Hour
	}
	if o.Top <= 0 {
		o.Top = 15
	}
	if o.Alerts <= 0 {
		o.Alerts = 50
	}
	if o.Refresh <= 0 {
		o.Refresh = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

//go:embed assets
var assets embed.FS

var pageTmpl = template.Must(template.ParseFS(assets, "assets/index.html"))

// maxTop and maxAlerts bound what a request may ask for.
const (
	maxTop    = 200
	maxAlerts = 1000
)

type handler struct {
	ds   DataSource
	o    Options
	mux  *http.ServeMux
	page []byte
}

// New returns the dashboard handler. It serves, relative to where it is
// mounted (mount it on a pattern ending in "/" and strip nothing):
//
//	GET .../                 the page
//	GET .../assets/<file>    embedded assets (Chart.js, script, style)
//	GET .../api/snapshot     Snapshot (query: window, step, top, alerts)
//	GET .../api/timeline     Timeline (window, step)
//	GET .../api/devices      []Count (top)
//	GET .../api/topics       []Count (top)
//	GET .../api/fleet        []Edge
//	GET .../api/alerts       []Alert (n)
//
// Durations are Go durations ("6h", "5m"); the window is at most
// Options.MaxWindow and holds at most 2,000 steps.
func New(ds DataSource, o Options) http.Handler {
	o.defaults()
	h := &handler{ds: ds, o: o, mux: http.NewServeMux()}
	var b strings.Builder
	if err := pageTmpl.Execute(&b, map[string]any{"Title": o.Title, "RefreshMS": o.Refresh.Milliseconds()}); err != nil {
		panic("dashboard: page template: " + err.Error()) // the template is embedded and fixed
	}
	h.page = []byte(b.String())
	sub, _ := fs.Sub(assets, "assets")
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(sub)))
	h.mux.HandleFunc("GET /api/snapshot", h.snapshot)
	h.mux.HandleFunc("GET /api/timeline", h.timeline)
	h.mux.HandleFunc("GET /api/devices", h.top(ds.TopDevices))
	h.mux.HandleFunc("GET /api/topics", h.top(ds.TopTopics))
	h.mux.HandleFunc("GET /api/fleet", h.fleet)
	h.mux.HandleFunc("GET /api/alerts", h.alerts)
	h.mux.HandleFunc("GET /{$}", h.index)
	return h
}

// ServeHTTP routes on the part of the path after the mount point: the
// request's path is cut at the last "/assets/" or "/api/" element, or
// taken as the page when it ends in "/".
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	rest := r.URL.Path
	switch {
	case strings.Contains(rest, "/assets/"):
		rest = rest[strings.LastIndex(rest, "/assets/"):]
	case strings.Contains(rest, "/api/"):
		rest = rest[strings.LastIndex(rest, "/api/"):]
	case strings.HasSuffix(rest, "/"):
		rest = "/"
	default:
		http.NotFound(w, r)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = rest
	r2.URL.RawPath = ""
	h.mux.ServeHTTP(w, r2)
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy",
		"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.Write(h.page)
}

func (h *handler) writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	if err := enc.Encode(v); err != nil {
		h.o.Logger.Debug("dashboard: write", "err", err)
	}
}

func (h *handler) fail(w http.ResponseWriter, err error) {
	h.o.Logger.Warn("dashboard data", "err", err)
	http.Error(w, "dashboard data unavailable: "+err.Error(), http.StatusInternalServerError)
}

// params reads and checks the query parameters.
type params struct {
	window, step time.Duration
	top, alerts  int
}

func (h *handler) params(r *http.Request) (params, error) {
	p := params{window: h.o.Window, step: h.o.Step, top: h.o.Top, alerts: h.o.Alerts}
	q := r.URL.Query()
	dur := func(key string, dst *time.Duration) error {
		if s := q.Get(key); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return fmt.Errorf("%s: %q is not a positive duration", key, s)
			}
			*dst = d
		}
		return nil
	}
	num := func(key string, dst *int, max int) error {
		if s := q.Get(key); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || n > max {
				return fmt.Errorf("%s: %q is not a number from 1 to %d", key, s, max)
			}
			*dst = n
		}
		return nil
	}
	for _, err := range []error{
		dur("window", &p.window), dur("step", &p.step),
		num("top", &p.top, maxTop), num("alerts", &p.alerts, maxAlerts), num("n", &p.alerts, maxAlerts),
	} {
		if err != nil {
			return p, err
		}
	}
	if p.window > h.o.MaxWindow {
		return p, fmt.Errorf("window: at most %s", h.o.MaxWindow)
	}
	if p.window/p.step > 2000 {
		return p, fmt.Errorf("step: %s over %s makes more than 2000 steps", p.step, p.window)
	}
	return p, nil
}

func (h *handler) snapshot(w http.ResponseWriter, r *http.Request) {
	p, err := h.params(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	s := Snapshot{Generated: time.Now().UTC(), WindowMS: p.window.Milliseconds()}
	if s.Timeline, err = h.ds.Timeline(ctx, p.window, p.step); err != nil {
		h.fail(w, err)
		return
	}
	if s.Devices, err = h.ds.TopDevices(ctx, p.top); err != nil {
		h.fail(w, err)
		return
	}
	if s.Topics, err = h.ds.TopTopics(ctx, p.top); err != nil {
		h.fail(w, err)
		return
	}
	if s.Fleet, err = h.ds.Fleet(ctx); err != nil {
		h.fail(w, err)
		return
	}
	if s.Alerts, err = h.ds.Alerts(ctx, p.alerts); err != nil {
		h.fail(w, err)
		return
	}
	s.Devices, s.Topics, s.Fleet, s.Alerts = nonNil(s.Devices), nonNil(s.Topics), nonNil(s.Fleet), nonNil(s.Alerts)
	h.writeJSON(w, s)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (h *handler) timeline(w http.ResponseWriter, r *http.Request) {
	p, err := h.params(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tl, err := h.ds.Timeline(r.Context(), p.window, p.step)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.writeJSON(w, tl)
}

func (h *handler) top(f func(context.Context, int) ([]Count, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := h.params(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c, err := f(r.Context(), p.top)
		if err != nil {
			h.fail(w, err)
			return
		}
		h.writeJSON(w, nonNil(c))
	}
}

func (h *handler) fleet(w http.ResponseWriter, r *http.Request) {
	f, err := h.ds.Fleet(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	h.writeJSON(w, nonNil(f))
}

func (h *handler) alerts(w http.ResponseWriter, r *http.Request) {
	p, err := h.params(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a, err := h.ds.Alerts(r.Context(), p.alerts)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.writeJSON(w, nonNil(a))
}
