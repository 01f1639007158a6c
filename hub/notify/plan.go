package notify

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

// Report says what the notifier does (or would do) with one event: the
// routes it tried, and per route and target the rendered notification or
// the stage that dropped it. `hub notify test` prints it.
type Report struct {
	// Event is the event as the notifier saw it.
	Event EventInfo `json:"event"`
	// Routes lists every route tried, in order.
	Routes []RouteStep `json:"routes"`
	// Deliveries lists one entry per matched route and target.
	Deliveries []DeliveryReport `json:"deliveries"`
	// Dropped says why nothing is notified when no route matched.
	Dropped string `json:"dropped,omitempty"`
}

// EventInfo describes the event of a Report.
type EventInfo struct {
	ID      string `json:"id"`
	Topic   string `json:"topic"`
	Edge    string `json:"edge"`
	Source  string `json:"source"`
	Payload string `json:"payload"`
	// JSON is true when the payload is a JSON object (its keys are
	// template fields).
	JSON bool `json:"json"`
}

// RouteStep is one route tried.
type RouteStep struct {
	// Route is the route's name; Key its position in the configuration.
	Route string `json:"route"`
	Key   string `json:"key"`
	// Depth is 0 for top-level routes.
	Depth   int  `json:"depth"`
	Matched bool `json:"matched"`
	// Reason says which condition failed when not matched.
	Reason string `json:"reason,omitempty"`
}

// Stages that can drop a notification.
const (
	StageRoute  = "route"  // a matched route has no targets
	StageRender = "render" // a template failed under on_missing: drop
	StageQuiet  = "quiet"  // quiet hours
	StageDedup  = "dedup"  // a repeat within the dedup window
)

// DeliveryReport is one route × target.
type DeliveryReport struct {
	Route    string `json:"route"`
	Target   string `json:"target"`
	Type     string `json:"type"`
	ID       string `json:"id"`
	Title    string `json:"title"`
	Message  string `json:"message"`
	Priority int    `json:"priority"`
	// Dropped is set with the Stage and Reason that drop the notification.
	Dropped bool   `json:"dropped"`
	Stage   string `json:"stage,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Warnings lists render fallbacks (missing keys and the like).
	Warnings []string `json:"warnings,omitempty"`
	// Sent and Error report a test send (hub notify test --send).
	Sent  bool   `json:"sent,omitempty"`
	Error string `json:"error,omitempty"`
}

// planned is one notification to enqueue.
type planned struct {
	eventID string
	route   string
	target  string
	msg     *target.Message
	// first: the event comes from the stream and this is its first
	// delivery to the notifier, so no notification of it can have been
	// sent before (see outboxRecord.First).
	first bool
}

// planOpts controls one planning pass.
type planOpts struct {
	now    time.Time
	dedup  *dedupState
	dry    bool     // peek at dedup state instead of recording
	report *Report  // filled when non-nil
	met    *metrics // counted when non-nil
}

// matchRoutes walks the route tree as Alertmanager does.
func (c *compiled) matchRoutes(ev *Event, rep *Report) []*route {
	return walkRoutes(c.routes, ev, rep, 0)
}

func walkRoutes(rs []*route, ev *Event, rep *Report, depth int) []*route {
	var out []*route
	for _, r := range rs {
		m := r.walk(ev, rep, depth)
		out = append(out, m...)
		if len(m) > 0 && !r.cont {
			break
		}
	}
	return out
}

func (r *route) walk(ev *Event, rep *Report, depth int) []*route {
	ok, why := r.match.match(ev, rep != nil)
	if rep != nil {
		rep.Routes = append(rep.Routes, RouteStep{Route: r.name, Key: r.key, Depth: depth, Matched: ok, Reason: why})
	}
	if !ok {
		return nil
	}
	if all := walkRoutes(r.children, ev, rep, depth+1); len(all) > 0 {
		return all
	}
	return []*route{r}
}

// plan routes and renders one event.
func (c *compiled) plan(ev *Event, o planOpts) []planned {
	rep := o.report
	if rep != nil {
		rep.Event = EventInfo{ID: ev.ID, Topic: ev.Topic, Edge: ev.Edge, Source: ev.Source, Payload: string(ev.Payload), JSON: ev.doc != nil}
	}
	routes := c.matchRoutes(ev, rep)
	if len(routes) == 0 {
		if rep != nil {
			rep.Dropped = "no route matched"
		}
		return nil
	}
	data := renderData(ev, c.loc)
	var out []planned
	for _, r := range routes {
		out = c.planSpec(out, ev, data, r.name, &r.notifySpec, o, nil, nil)
	}
	return out
}

// planSpec renders one route (or synthetic notification) for all its
// targets. title and body, when non-nil, replace the spec's.
func (c *compiled) planSpec(out []planned, ev *Event, data map[string]any, routeName string, sp *notifySpec, o planOpts, title, body renderer) []planned {
	rep := o.report
	drop := func(stage, reason string, warnings []string) []planned {
		if o.met != nil {
			for _, t := range sp.targets {
				o.met.suppressed.WithLabelValues(t, stage).Inc()
			}
		}
		if rep != nil {
			if len(sp.targets) == 0 {
				rep.Deliveries = append(rep.Deliveries, DeliveryReport{Route: routeName, Dropped: true, Stage: stage, Reason: reason, Warnings: warnings})
			}
			for _, t := range sp.targets {
				rep.Deliveries = append(rep.Deliveries, DeliveryReport{Route: routeName, Target: t, Type: c.targets[t].Type, ID: msgID(ev.ID, routeName, t), Dropped: true, Stage: stage, Reason: reason, Warnings: warnings})
			}
		}
		return out
	}
	if len(sp.targets) == 0 {
		return drop(StageRoute, "route has no targets (set targets on it, a parent or defaults)", nil)
	}
	var warnings []string
	noteErr := func(re *renderError) {
		if re == nil {
			return
		}
		w := re.Error()
		if sp.onMissing != missingDrop {
			w += fmt.Sprintf(" (on_missing %s)", sp.onMissing)
		}
		warnings = append(warnings, w)
		if o.met != nil {
			if re.missing {
				o.met.missing.WithLabelValues(routeName).Inc()
			} else {
				o.met.renderErrors.WithLabelValues(routeName).Inc()
			}
		}
	}

	prioText, re, ok := renderText(sp.priority, data, sp.onMissing, "priority", "")
	noteErr(re)
	if !ok {
		return drop(StageRender, re.Error()+" (on_missing drop)", warnings)
	}
	prio, err := parsePriority(prioText)
	if re != nil {
		prio = 0 // the fallback of every policy that keeps the notification
	} else if err != nil {
		re := &renderError{field: "priority", err: err}
		noteErr(re)
		if sp.onMissing == missingDrop {
			return drop(StageRender, re.Error()+" (on_missing drop)", warnings)
		}
		prio = 0
	}

	if len(sp.quiet) > 0 && (sp.bypass == nil || prio < *sp.bypass) {
		for _, q := range sp.quiet {
			if q.active(o.now) {
				reason := fmt.Sprintf("quiet hours %q are active", q.name)
				if sp.bypass != nil {
					reason += fmt.Sprintf(" (priority %d is below the bypass priority %d)", prio, *sp.bypass)
				}
				return drop(StageQuiet, reason, warnings)
			}
		}
	}

	suppressedBefore := 0
	if sp.dedupWindow > 0 && o.dedup != nil {
		key := sp.dedupKey.partial(data)
		var d dedupDecision
		if o.dry {
			d = o.dedup.peek(routeName, key, ev.ID, sp.dedupWindow, o.now)
		} else {
			d = o.dedup.check(routeName, key, ev.ID, sp.dedupWindow, o.now)
		}
		if d.suppress {
			return drop(StageDedup, fmt.Sprintf("repeat of dedup key %q within %s (until %s)", key, sp.dedupWindow, d.until.UTC().Format(time.RFC3339)), warnings)
		}
		suppressedBefore = d.suppressedBefore
	}
	if suppressedBefore > 0 {
		data = maps.Clone(data)
		data[fieldSuppressed] = suppressedBefore
	}

	if title == nil {
		title = sp.title
	}
	if body == nil {
		body = sp.body
	}
	titleText, re, ok := renderText(title, data, sp.onMissing, "title", ev.Topic)
	if title == nil {
		titleText = ""
	}
	noteErr(re)
	if !ok {
		return drop(StageRender, re.Error()+" (on_missing drop)", warnings)
	}
	bodyText, re, ok := renderText(body, data, sp.onMissing, "format", string(ev.Payload))
	noteErr(re)
	if !ok {
		return drop(StageRender, re.Error()+" (on_missing drop)", warnings)
	}
	if suppressedBefore > 0 && (body == nil || !body.references(fieldSuppressed)) {
		bodyText += fmt.Sprintf("\n(%d similar suppressed)", suppressedBefore)
	}

	for _, t := range sp.targets {
		m := &target.Message{
			ID:       msgID(ev.ID, routeName, t),
			Topic:    ev.Topic,
			Edge:     ev.Edge,
			Title:    titleText,
			Body:     bodyText,
			Priority: prio,
			Payload:  ev.Payload,
			Fields:   data,
			Time:     ev.Received,
		}
		out = append(out, planned{eventID: ev.ID, route: routeName, target: t, msg: m, first: ev.fromStream && !ev.redelivered})
		if rep != nil {
			rep.Deliveries = append(rep.Deliveries, DeliveryReport{
				Route: routeName, Target: t, Type: c.targets[t].Type, ID: m.ID,
				Title: titleText, Message: bodyText, Priority: prio, Warnings: warnings,
			})
		}
	}
	return out
}

// msgID is the idempotency id of one notification.
func msgID(eventID, route, target string) string {
	return eventID + "/" + route + "/" + target
}

// String renders a report for a terminal.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "event %s topic=%s edge=%s source=%s json=%v\n", r.Event.ID, r.Event.Topic, r.Event.Edge, r.Event.Source, r.Event.JSON)
	b.WriteString("routes:\n")
	for _, s := range r.Routes {
		mark := "no "
		if s.Matched {
			mark = "yes"
		}
		fmt.Fprintf(&b, "  %s%s %s", strings.Repeat("  ", s.Depth), mark, s.Route)
		if s.Reason != "" {
			fmt.Fprintf(&b, " (%s)", s.Reason)
		}
		b.WriteByte('\n')
	}
	if r.Dropped != "" {
		fmt.Fprintf(&b, "dropped: %s\n", r.Dropped)
	}
	for _, d := range r.Deliveries {
		fmt.Fprintf(&b, "route %s -> target %s (%s):\n", d.Route, d.Target, d.Type)
		if d.Dropped {
			fmt.Fprintf(&b, "  DROPPED at %s: %s\n", d.Stage, d.Reason)
		} else {
			fmt.Fprintf(&b, "  title:    %q\n  message:  %q\n  priority: %d\n", d.Title, d.Message, d.Priority)
		}
		for _, w := range d.Warnings {
			fmt.Fprintf(&b, "  warning:  %s\n", w)
		}
		if d.Sent {
			b.WriteString("  sent\n")
		}
		if d.Error != "" {
			fmt.Fprintf(&b, "  send error: %s\n", d.Error)
		}
	}
	return b.String()
}
