package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/warren-mesh/warren/hub/notify/format"
	"github.com/warren-mesh/warren/hub/notify/target"
)

// Event is one event as the notifier sees it.
type Event struct {
	// ID is the event id (the hub message's Nats-Msg-Id).
	ID string
	// Topic is the event's MQTT topic.
	Topic string
	// Edge is the id of the edge that accepted it.
	Edge string
	// Source is how the edge got it (udp, mqtt, audit).
	Source string
	// Payload is the event payload, byte for byte.
	Payload []byte
	// Received is when the edge received it.
	Received time.Time

	doc         map[string]any // the payload as a JSON object, or nil
	redelivered bool           // the notifier may have had this event before (see Engine.eventFloor)
	fromStream  bool           // read from the hub's stream (not a silence or link alert)
}

// NewEvent builds an Event and decodes its payload.
func NewEvent(id, topic, edge, source string, payload []byte, received time.Time) *Event {
	ev := &Event{ID: id, Topic: topic, Edge: edge, Source: source, Payload: payload, Received: received}
	ev.doc = decodeObject(payload)
	return ev
}

// maxDecode bounds the payload size decoded as JSON for matching and
// rendering; larger payloads are treated as opaque text.
const maxDecode = 1 << 20

func decodeObject(payload []byte) map[string]any {
	p := bytes.TrimSpace(payload)
	if len(p) == 0 || p[0] != '{' || len(p) > maxDecode {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil
	}
	if dec.More() {
		return nil
	}
	return m
}

// Built-in field names, as mqttwarn has them, plus warren's own.
const (
	fieldTopic      = "topic"
	fieldPayload    = "payload"
	fieldDtEpoch    = "_dtepoch"
	fieldDtISO      = "_dtiso"
	fieldLtISO      = "_ltiso"
	fieldDtHHMM     = "_dthhmm"
	fieldDtHHMMSS   = "_dthhmmss"
	fieldEdge       = "_edge"
	fieldSource     = "_source"
	fieldID         = "_id"
	fieldSuppressed = "_suppressed"
)

// renderData is the data templates see: mqttwarn's built-ins, warren's
// extras, then the payload's JSON keys (which win, as in mqttwarn).
func renderData(ev *Event, loc *time.Location) map[string]any {
	t := ev.Received
	if t.IsZero() {
		t = time.Now()
	}
	lt := t.In(loc)
	d := make(map[string]any, len(ev.doc)+12)
	d[fieldTopic] = ev.Topic
	d[fieldPayload] = string(ev.Payload)
	d[fieldDtEpoch] = t.Unix()
	d[fieldDtISO] = t.UTC().Format("2006-01-02T15:04:05.000000Z")
	d[fieldLtISO] = lt.Format("2006-01-02T15:04:05.000000")
	d[fieldDtHHMM] = lt.Format("15:04")
	d[fieldDtHHMMSS] = lt.Format("15:04:05")
	d[fieldEdge] = ev.Edge
	d[fieldSource] = ev.Source
	d[fieldID] = ev.ID
	d[fieldSuppressed] = 0
	maps.Copy(d, ev.doc)
	return d
}

// Template styles.
const (
	styleFormat   = "format"
	styleTemplate = "template"
)

// Missing-key policies.
const (
	missingRaw         = "raw"
	missingDrop        = "drop"
	missingPlaceholder = "placeholder"
)

// renderer renders one template in one style.
type renderer interface {
	// render returns the text; a failure (missing key, bad value) is an
	// error, and missing reports whether it was a missing key.
	render(data map[string]any) (s string, missing bool, err error)
	// partial renders with failing fields shown as placeholders.
	partial(data map[string]any) string
	// references reports whether the template uses a top-level name.
	references(name string) bool
}

func compileRenderer(style, src string) (renderer, error) {
	switch style {
	case styleFormat, "":
		t, err := format.Parse(src)
		if err != nil {
			return nil, err
		}
		return formatRenderer{t}, nil
	case styleTemplate:
		t, err := template.New("").Option("missingkey=error").Funcs(templateFuncs).Parse(src)
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		return &goRenderer{t: t, src: src}, nil
	}
	return nil, fmt.Errorf("unknown style %q", style)
}

type formatRenderer struct{ t *format.Template }

func (r formatRenderer) render(data map[string]any) (string, bool, error) {
	s, err := r.t.Execute(data)
	if err != nil {
		return "", errors.As(err, new(*format.MissingKeyError)), err
	}
	// mqttwarn turns the two characters \n into a newline (ini files
	// cannot hold one).
	return strings.ReplaceAll(s, `\n`, "\n"), false, nil
}

func (r formatRenderer) partial(data map[string]any) string {
	s, _ := r.t.ExecutePartial(data)
	return strings.ReplaceAll(s, `\n`, "\n")
}

func (r formatRenderer) references(name string) bool { return r.t.References(name) }

type goRenderer struct {
	t   *template.Template
	src string
}

func (r *goRenderer) render(data map[string]any) (string, bool, error) {
	var b strings.Builder
	if err := r.t.Execute(&b, data); err != nil {
		return "", strings.Contains(err.Error(), "map has no entry for key"), err
	}
	return b.String(), false, nil
}

func (r *goRenderer) partial(data map[string]any) string {
	var b strings.Builder
	t, err := r.t.Clone()
	if err == nil {
		err = t.Option("missingkey=default").Execute(&b, data)
	}
	if err != nil {
		return r.src
	}
	return b.String()
}

func (r *goRenderer) references(name string) bool {
	return strings.Contains(r.src, "."+name)
}

// templateFuncs are the route templates' functions: the targets' set
// (target.Funcs) and get.
var templateFuncs = func() template.FuncMap {
	f := target.Funcs()
	// get returns the value at a field path ("a.b", "list.0"), or def
	// when it is absent; it never fails on a missing key.
	f["get"] = func(data map[string]any, key string, def any) any {
		p, err := parseFieldPath(key)
		if err != nil {
			return def
		}
		if v, ok := p.lookup(data); ok {
			return v
		}
		return def
	}
	return f
}()

// renderError describes a render failure of one field of a route.
type renderError struct {
	field   string // title, format, priority
	missing bool
	err     error
}

func (e *renderError) Error() string { return fmt.Sprintf("%s: %v", e.field, e.err) }

// renderText renders r (nil renders as empty) under a missing-key policy.
// fallback is what the raw policy substitutes. ok is false when the policy
// drops the notification.
func renderText(r renderer, data map[string]any, policy, field, fallback string) (string, *renderError, bool) {
	if r == nil {
		return fallback, nil, true
	}
	s, missing, err := r.render(data)
	if err == nil {
		return s, nil, true
	}
	re := &renderError{field: field, missing: missing, err: err}
	switch policy {
	case missingDrop:
		return "", re, false
	case missingPlaceholder:
		return r.partial(data), re, true
	default:
		return fallback, re, true
	}
}

// parsePriority reads a rendered priority.
func parsePriority(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int(f)) {
			return 0, fmt.Errorf("priority %q is not an integer", s)
		}
		p = int(f)
	}
	return p, nil
}
