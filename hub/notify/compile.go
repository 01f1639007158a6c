package notify

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// compiled is a validated configuration, ready to route and render.
type compiled struct {
	cfg     Config
	loc     *time.Location
	targets map[string]TargetConfig // with defaults applied
	routes  []*route
	byName  map[string]*route
	quiet   map[string]*quietHours
	silence []*silenceRule
	offline *offlineRule // nil when disabled
}

// notifySpec is the resolved notification settings of a route, silence
// watch or the offline alert.
type notifySpec struct {
	targets     []string
	title       renderer
	body        renderer
	priority    renderer
	style       string
	onMissing   string
	dedupKey    renderer
	dedupWindow time.Duration
	quiet       []*quietHours
	bypass      *int
}

// route is one compiled node of the route tree.
type route struct {
	name     string
	key      string // config path, e.g. routes[0].routes[1]
	match    *matcher
	cont     bool
	children []*route
	notifySpec
}

type silenceRule struct {
	name     string
	filter   string
	edges    []string
	after    time.Duration
	spec     notifySpec
	recTitle renderer
	recBody  renderer
}

type offlineRule struct {
	after    time.Duration
	edges    []string
	spec     notifySpec
	recTitle renderer
	recBody  renderer
}

// Built-in texts of the synthetic notifications (mqttwarn format style).
const (
	defSilenceTitle     = "silence: {name}"
	defSilenceFormat    = "no event on {topic} from {edge} for {duration}"
	defSilenceRecTitle  = "silence over: {name}"
	defSilenceRecFormat = "events on {topic} from {edge} are back after {duration}"
	defOfflineTitle     = "site offline: {edge}"
	defOfflineFormat    = "edge {edge} has had no link to the hub since {since} ({duration})"
	defOfflineRecTitle  = "site online: {edge}"
	defOfflineRecFormat = "edge {edge} is back after {duration} offline"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
var routeNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Validate checks the configuration with the built-in target types; errors
// name the offending key.
func (c Config) Validate() error {
	_, err := compile(c, nil)
	return err
}

// compile validates cfg and builds its runtime form. types adds or
// overrides target types (nil: the built-in ones only).
func compile(cfg Config, types map[string]TargetType) (*compiled, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c := &compiled{cfg: cfg, targets: map[string]TargetConfig{}, byName: map[string]*route{}, quiet: map[string]*quietHours{}}
	tz := cfg.TimeZone
	if tz == "" {
		tz = "Local"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		add(fmt.Errorf("time_zone: unknown time zone %q", cfg.TimeZone))
		loc = time.Local
	}
	c.loc = loc

	add(validateDelivery(cfg.Delivery))

	allTypes := builtinTargetTypes()
	for k, v := range types {
		allTypes[k] = v
	}
	for _, name := range sortedKeys(cfg.Targets) {
		tc := cfg.Targets[name]
		key := "targets." + name
		if !nameRE.MatchString(name) {
			add(fmt.Errorf("%s: name must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'", key))
		}
		explicitTimeout := tc.Timeout != 0
		tc = tc.withDefaults()
		add(validateTargetSettings(key, tc))
		tt, ok := allTypes[tc.Type]
		switch {
		case tc.Type == "":
			add(fmt.Errorf("%s.type: missing; one of %s", key, strings.Join(sortedKeys(allTypes), ", ")))
		case !ok:
			add(fmt.Errorf("%s.type: unknown type %q; one of %s", key, tc.Type, strings.Join(sortedKeys(allTypes), ", ")))
		default:
			if err := tt.Validate(tc.Config); err != nil {
				add(prefixErrors(key+".config", err))
			} else if !explicitTimeout && tt.Timeout != nil {
				// The attempt timeout leaves the target's own timeout room
				// to fire first, so its error says what timed out.
				if own := tt.Timeout(tc.Config); own > 0 {
					tc.Timeout = own + timeoutGrace
				}
			}
		}
		c.targets[name] = tc
	}
	// Failover references and loops.
	for _, name := range sortedKeys(c.targets) {
		fo := c.targets[name].Failover
		if fo == "" {
			continue
		}
		if _, ok := c.targets[fo]; !ok {
			add(fmt.Errorf("targets.%s.failover: unknown target %q", name, fo))
			continue
		}
		seen := map[string]bool{name: true}
		for cur := fo; cur != ""; cur = c.targets[cur].Failover {
			if seen[cur] {
				add(fmt.Errorf("targets.%s.failover: the failover chain loops back to %q", name, cur))
				break
			}
			seen[cur] = true
		}
	}

	for _, name := range sortedKeys(cfg.QuietHours) {
		q, err := compileQuiet(name, cfg.QuietHours[name], loc)
		add(err)
		c.quiet[name] = q
	}

	root := resolve(RouteSettings{}, cfg.Defaults)
	if cfg.Defaults.Dedup != nil && cfg.Defaults.Dedup.Window > 0 {
		add(errors.New("defaults.dedup: set dedup on routes, not in defaults (its state is per route)"))
	}
	_, err = c.compileSpec("defaults", root, false)
	add(err)
	c.routes = c.compileRoutes("routes", cfg.Routes, root, &errs)

	seenSilence := map[string]bool{}
	for i, sc := range cfg.Silence {
		key := fmt.Sprintf("silence[%d]", i)
		if !routeNameRE.MatchString(sc.Name) {
			add(fmt.Errorf("%s.name: missing or invalid; use 1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-'", key))
		} else if seenSilence[sc.Name] {
			add(fmt.Errorf("%s.name: %q is used twice", key, sc.Name))
		}
		seenSilence[sc.Name] = true
		r := &silenceRule{name: sc.Name, filter: sc.Topic, edges: sc.Edges, after: sc.After}
		if r.filter == "" {
			r.filter = "#"
		}
		if err := ValidFilter(r.filter); err != nil {
			add(fmt.Errorf("%s.topic: %w", key, err))
		}
		for j, e := range sc.Edges {
			if e == "" || strings.ContainsAny(e, "*?[") {
				add(fmt.Errorf("%s.edges[%d]: %q: name one edge id (no globs)", key, j, e))
			}
		}
		if sc.After <= 0 {
			add(fmt.Errorf("%s.after: missing; set how long without events counts as silence, e.g. 30m", key))
		}
		set := resolve(root, sc.RouteSettings)
		// Texts, priority and style are the watch's own: inherited event
		// templates would name keys a silence notification does not have.
		set.Style, set.Priority = sc.Style, sc.Priority
		set.Title = firstNonEmpty(sc.Title, defSilenceTitle)
		set.Format = firstNonEmpty(sc.Format, defSilenceFormat)
		if sc.Title == "" || sc.Format == "" {
			// built-in texts are in format style
			if sc.Style == styleTemplate {
				add(fmt.Errorf("%s: with style template set both title and format", key))
			}
		}
		spec, err := c.compileSpec(key, set, true)
		add(err)
		r.spec = spec
		r.recTitle, r.recBody = c.recoveryRenderers(key, set.Style, sc.RecoveredTitle, sc.RecoveredFormat, defSilenceRecTitle, defSilenceRecFormat, &errs)
		c.silence = append(c.silence, r)
	}

	oc := cfg.Offline
	oset := resolve(root, oc.RouteSettings)
	if len(oset.Targets) > 0 {
		key := "offline"
		r := &offlineRule{after: oc.After, edges: oc.Edges}
		if r.after <= 0 {
			add(fmt.Errorf("%s.after: must be positive, e.g. 5m", key))
		}
		for j, e := range oc.Edges {
			if err := validGlob(e); err != nil {
				add(fmt.Errorf("%s.edges[%d]: %w", key, j, err))
			}
		}
		oset.Style, oset.Priority = oc.Style, oc.Priority
		if oset.Style == styleTemplate && (oc.Title == "" || oc.Format == "") {
			add(fmt.Errorf("%s: with style template set both title and format", key))
		}
		oset.Title = firstNonEmpty(oc.Title, defOfflineTitle)
		oset.Format = firstNonEmpty(oc.Format, defOfflineFormat)
		spec, err := c.compileSpec(key, oset, true)
		add(err)
		r.spec = spec
		r.recTitle, r.recBody = c.recoveryRenderers(key, oset.Style, oc.RecoveredTitle, oc.RecoveredFormat, defOfflineRecTitle, defOfflineRecFormat, &errs)
		c.offline = r
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *compiled) recoveryRenderers(key, style, title, body, defTitle, defBody string, errs *[]error) (renderer, renderer) {
	mk := func(field, src, def string) renderer {
		st := style
		if src == "" {
			src, st = def, styleFormat
		}
		r, err := compileRenderer(st, src)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s.%s: %w", key, field, err))
		}
		return r
	}
	return mk("recovered_title", title, defTitle), mk("recovered_format", body, defBody)
}

func (c *compiled) compileRoutes(key string, rcs []RouteConfig, parent RouteSettings, errs *[]error) []*route {
	var out []*route
	for i, rc := range rcs {
		rkey := fmt.Sprintf("%s[%d]", key, i)
		r := &route{key: rkey, name: rc.Name, cont: rc.Continue}
		if r.name == "" {
			r.name = rkey
		} else if !routeNameRE.MatchString(r.name) || strings.HasPrefix(r.name, "routes[") {
			*errs = append(*errs, fmt.Errorf("%s.name: %q: use 1-128 characters of A-Z, a-z, 0-9, '_', '.' and '-'", rkey, r.name))
		}
		if prev, dup := c.byName[r.name]; dup {
			*errs = append(*errs, fmt.Errorf("%s.name: %q is also the name of %s", rkey, r.name, prev.key))
		}
		c.byName[r.name] = r
		m, err := compileMatch(rc.Match, rkey+".match")
		if err != nil {
			*errs = append(*errs, err)
		}
		r.match = m
		set := resolve(parent, rc.RouteSettings)
		r.children = c.compileRoutes(rkey+".routes", rc.Routes, set, errs)
		spec, err := c.compileSpec(rkey, set, len(r.children) == 0)
		if err != nil {
			*errs = append(*errs, err)
		}
		r.notifySpec = spec
		out = append(out, r)
	}
	return out
}

// resolve applies child settings over inherited ones.
func resolve(parent, child RouteSettings) RouteSettings {
	out := parent
	if len(child.Targets) > 0 {
		out.Targets = child.Targets
	}
	if child.Title != "" {
		out.Title = child.Title
	}
	if child.Format != "" {
		out.Format = child.Format
	}
	if child.Priority != "" {
		out.Priority = child.Priority
	}
	if child.Style != "" {
		out.Style = child.Style
	}
	if child.OnMissing != "" {
		out.OnMissing = child.OnMissing
	}
	if child.Dedup != nil {
		out.Dedup = child.Dedup
	}
	if len(child.Quiet) > 0 {
		out.Quiet = child.Quiet
	}
	if child.QuietBypassPriority != nil {
		out.QuietBypassPriority = child.QuietBypassPriority
	}
	return out
}

// compileSpec validates resolved settings. needTargets is set for leaf
// routes and synthetic notifications, which must notify someone.
func (c *compiled) compileSpec(key string, s RouteSettings, needTargets bool) (notifySpec, error) {
	var errs []error
	sp := notifySpec{targets: s.Targets, style: s.Style, onMissing: s.OnMissing, bypass: s.QuietBypassPriority}
	if sp.style == "" {
		sp.style = styleFormat
	}
	if sp.style != styleFormat && sp.style != styleTemplate {
		errs = append(errs, fmt.Errorf("%s.style: %q is not one of format, template", key, s.Style))
	}
	if sp.onMissing == "" {
		sp.onMissing = missingRaw
	}
	switch sp.onMissing {
	case missingRaw, missingDrop, missingPlaceholder:
	default:
		errs = append(errs, fmt.Errorf("%s.on_missing: %q is not one of raw, drop, placeholder", key, s.OnMissing))
	}
	if needTargets && len(s.Targets) == 0 {
		errs = append(errs, fmt.Errorf("%s.targets: none; name at least one target here, on a parent route or in defaults", key))
	}
	for i, t := range s.Targets {
		if _, ok := c.targets[t]; !ok {
			errs = append(errs, fmt.Errorf("%s.targets[%d]: unknown target %q", key, i, t))
		}
	}
	if dup := firstDuplicate(s.Targets); dup != "" {
		errs = append(errs, fmt.Errorf("%s.targets: %q is listed twice", key, dup))
	}
	st := sp.style
	if st != styleTemplate {
		st = styleFormat
	}
	mk := func(field, src string) renderer {
		if src == "" {
			return nil
		}
		r, err := compileRenderer(st, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.%s: %w", key, field, err))
		}
		return r
	}
	sp.title = mk("title", s.Title)
	sp.body = mk("format", s.Format)
	sp.priority = mk("priority", s.Priority)
	if s.Dedup != nil && s.Dedup.Window != 0 {
		if s.Dedup.Window < 0 {
			errs = append(errs, fmt.Errorf("%s.dedup.window: must be positive", key))
		}
		sp.dedupWindow = s.Dedup.Window
		k := s.Dedup.Key
		if k == "" {
			k = "{topic}"
			if st == styleTemplate {
				k = "{{.topic}}"
			}
		}
		sp.dedupKey = mk("dedup.key", k)
	} else if s.Dedup != nil && s.Dedup.Key != "" {
		errs = append(errs, fmt.Errorf("%s.dedup.window: missing; set how long repeats are suppressed, e.g. 10m", key))
	}
	if !(len(s.Quiet) == 1 && s.Quiet[0] == "none") {
		for i, q := range s.Quiet {
			qh, ok := c.quiet[q]
			if !ok {
				errs = append(errs, fmt.Errorf("%s.quiet[%d]: unknown quiet_hours %q", key, i, q))
				continue
			}
			sp.quiet = append(sp.quiet, qh)
		}
	}
	if sp.bypass != nil && len(sp.quiet) == 0 && len(s.Quiet) == 0 {
		errs = append(errs, fmt.Errorf("%s.quiet_bypass_priority: set without quiet hours", key))
	}
	return sp, errors.Join(errs...)
}

func validateTargetSettings(key string, tc TargetConfig) error {
	var errs []error
	if tc.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: must be positive", key))
	}
	if tc.Workers < 1 || tc.Workers > 64 {
		errs = append(errs, fmt.Errorf("%s.workers: %d is not in 1..64", key, tc.Workers))
	}
	if tc.RateLimit.Count < 0 {
		errs = append(errs, fmt.Errorf("%s.rate_limit.count: must not be negative", key))
	}
	if tc.RateLimit.Interval < 0 {
		errs = append(errs, fmt.Errorf("%s.rate_limit.interval: must be positive", key))
	}
	if tc.Retry.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("%s.retry.max_attempts: must be at least 1", key))
	}
	if tc.Retry.MaxAge < 0 || tc.Retry.InitialBackoff < 0 || tc.Retry.MaxBackoff < 0 {
		errs = append(errs, fmt.Errorf("%s.retry: durations must be positive", key))
	}
	if tc.Retry.MaxBackoff < tc.Retry.InitialBackoff {
		errs = append(errs, fmt.Errorf("%s.retry.max_backoff: %s is less than initial_backoff %s", key, tc.Retry.MaxBackoff, tc.Retry.InitialBackoff))
	}
	return errors.Join(errs...)
}

var streamNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
var subjectPrefixRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

func validateDelivery(d DeliveryConfig) error {
	var errs []error
	for _, kv := range [][2]string{{"stream", d.Stream}, {"consumer", d.Consumer}, {"outbox", d.Outbox}, {"dlq", d.DLQ}, {"sent_bucket", d.SentBucket}} {
		if !streamNameRE.MatchString(kv[1]) {
			errs = append(errs, fmt.Errorf("delivery.%s: %q must be 1-64 characters of A-Z, a-z, 0-9, '_' and '-'", kv[0], kv[1]))
		}
	}
	for _, kv := range [][2]string{{"outbox_prefix", d.OutboxPrefix}, {"dlq_prefix", d.DLQPrefix}} {
		if !subjectPrefixRE.MatchString(kv[1]) {
			errs = append(errs, fmt.Errorf("delivery.%s: %q is not a subject prefix like notify.outbox", kv[0], kv[1]))
		}
	}
	if d.OutboxPrefix == d.DLQPrefix {
		errs = append(errs, errors.New("delivery.dlq_prefix: must differ from outbox_prefix"))
	}
	if d.FilterSubject == "" {
		errs = append(errs, errors.New("delivery.filter_subject: missing"))
	}
	switch d.DeliverPolicy {
	case "new", "all":
	default:
		errs = append(errs, fmt.Errorf("delivery.deliver_policy: %q is not one of new, all", d.DeliverPolicy))
	}
	for _, kv := range []struct {
		k string
		d time.Duration
	}{{"dlq_max_age", d.DLQMaxAge}, {"sent_ttl", d.SentTTL}, {"duplicate_window", d.DuplicateWindow}, {"ack_wait", d.AckWait}} {
		if kv.d <= 0 {
			errs = append(errs, fmt.Errorf("delivery.%s: must be positive", kv.k))
		}
	}
	if d.MaxAckPending < 1 {
		errs = append(errs, errors.New("delivery.max_ack_pending: must be at least 1"))
	}
	if d.Batch < 1 || d.Batch > 4096 {
		errs = append(errs, fmt.Errorf("delivery.batch: %d is not in 1..4096", d.Batch))
	}
	if d.Replicas < 1 || d.Replicas > 5 {
		errs = append(errs, fmt.Errorf("delivery.replicas: %d is not in 1..5", d.Replicas))
	}
	return errors.Join(errs...)
}

// prefixErrors prefixes every line of a (joined) error with key.
func prefixErrors(key string, err error) error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		switch line = strings.TrimSpace(line); {
		case line == "":
		case strings.HasPrefix(line, ": "):
			out = append(out, fmt.Errorf("%s%s", key, line))
		default:
			out = append(out, fmt.Errorf("%s.%s", key, line))
		}
	}
	return errors.Join(out...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func firstDuplicate(list []string) string {
	for i, s := range list {
		if slices.Contains(list[:i], s) {
			return s
		}
	}
	return ""
}
