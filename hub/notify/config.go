package notify

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"go.yaml.in/yaml/v3"

	"github.com/warren-mesh/warren/internal/event"
)

// Config is the notifier configuration: the hub's `notify` key.
type Config struct {
	// TimeZone is the IANA zone (e.g. "Europe/Berlin") of the local-time
	// built-ins _ltiso, _dthhmm and _dthhmmss and the default zone of
	// quiet hours. Default "Local" (the hub's zone).
	TimeZone string `mapstructure:"time_zone"`
	// Targets maps a target name ([A-Za-z0-9_-], at most 64 characters) to
	// its definition. Routes, silence watches and the offline alert refer
	// to targets by name.
	Targets map[string]TargetConfig `mapstructure:"targets"`
	// Defaults holds route settings every route, silence watch and the
	// offline alert inherit unless they set their own.
	Defaults RouteSettings `mapstructure:"defaults"`
	// Routes is the ordered route tree. For each event the routes of a
	// level are tried in order; the first that matches wins unless it sets
	// continue. A matching route with child routes hands the event to its
	// children, and notifies itself only when none of them matches.
	Routes []RouteConfig `mapstructure:"routes"`
	// QuietHours names sets of weekly time intervals that routes refer to
	// in their quiet list.
	QuietHours map[string]QuietHoursConfig `mapstructure:"quiet_hours"`
	// Silence lists watches that notify when no matching event arrives for
	// a while, and again when events come back.
	Silence []SilenceConfig `mapstructure:"silence"`
	// Offline notifies when an edge's link to the hub stays down longer
	// than a threshold ("site offline"), and when it comes back. Disabled
	// while it has no targets (neither its own nor from defaults).
	Offline OfflineConfig `mapstructure:"offline"`
	// Delivery holds stream names and pipeline limits. Changing it needs a
	// restart; a reload keeps the running values and logs a warning.
	Delivery DeliveryConfig `mapstructure:"delivery"`
}

// TargetConfig defines one named delivery target.
type TargetConfig struct {
	// Type selects the target implementation: file, log, exec, webhook,
	// ntfy, gotify, pushover, smtp, mqtt or nats. Required.
	Type string `mapstructure:"type"`
	// Config holds the type's own settings (see the target package's
	// Config); unknown keys are errors.
	Config map[string]any `mapstructure:"config"`
	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration `mapstructure:"timeout"`
	// Workers is the number of concurrent senders. Default 1, which keeps
	// notifications of a target in order.
	Workers int `mapstructure:"workers"`
	// RateLimit bounds how fast this target is sent to; notifications over
	// the limit wait (they are never dropped). Zero means no limit.
	RateLimit RateLimitConfig `mapstructure:"rate_limit"`
	// Retry is the retry budget of a notification to this target.
	Retry RetryConfig `mapstructure:"retry"`
	// Failover names a target that receives a notification this target
	// dead-lettered. Empty means none. Failover chains may not loop.
	Failover string `mapstructure:"failover"`
}

// RateLimitConfig is a token bucket: Count notifications per Interval,
// with bursts up to Count.
type RateLimitConfig struct {
	// Count is the number of notifications allowed per Interval; 0
	// disables the limit.
	Count int `mapstructure:"count"`
	// Interval is the refill period of Count tokens. Default 1m when Count
	// is set.
	Interval time.Duration `mapstructure:"interval"`
}

// RetryConfig is the retry budget of a target. A notification is
// dead-lettered when a non-retryable error occurs, after MaxAttempts
// attempts, or once it is older than MaxAge.
type RetryConfig struct {
	// MaxAttempts bounds the attempts per notification. Default 10.
	MaxAttempts int `mapstructure:"max_attempts"`
	// MaxAge bounds how long a notification may wait for delivery.
	// Default 24h.
	MaxAge time.Duration `mapstructure:"max_age"`
	// InitialBackoff is the wait before the second attempt; each later
	// wait doubles, with jitter. Default 1s.
	InitialBackoff time.Duration `mapstructure:"initial_backoff"`
	// MaxBackoff caps the wait between attempts (a Retry-After from the
	// target may ask for more). Default 5m.
	MaxBackoff time.Duration `mapstructure:"max_backoff"`
}

// RouteSettings are the inheritable settings of a route. An empty value
// inherits from the parent route (and ultimately from Config.Defaults).
type RouteSettings struct {
	// Targets lists target names to notify.
	Targets []string `mapstructure:"targets"`
	// Title is the notification title template. Empty: the target's own
	// default.
	Title string `mapstructure:"title"`
	// Format is the message body template. Empty: the raw payload, as
	// mqttwarn does.
	Format string `mapstructure:"format"`
	// Priority is a template that renders to an integer on the -2..2
	// scale (2 is an emergency). Empty: 0.
	Priority string `mapstructure:"priority"`
	// Style is the template language of Title, Format, Priority and the
	// dedup key: "format" (mqttwarn's Python-style {placeholders}, the
	// default) or "template" (Go text/template).
	Style string `mapstructure:"style"`
	// OnMissing says what happens when a template names a key the event
	// lacks (or cannot format a value): "raw" (default, as mqttwarn: the
	// body becomes the raw payload, the title the topic, the priority 0),
	// "drop" (no notification) or "placeholder" (render the field as its
	// source text, e.g. "{user}").
	OnMissing string `mapstructure:"on_missing"`
	// Dedup suppresses repeats: one notification per rendered key per
	// window; the next one after the window carries the number suppressed.
	// Unset inherits; `dedup: {}` disables an inherited dedup.
	Dedup *DedupConfig `mapstructure:"dedup"`
	// Quiet lists quiet_hours names during which this route stays silent.
	// `quiet: [none]` disables inherited quiet hours.
	Quiet []string `mapstructure:"quiet"`
	// QuietBypassPriority lets notifications with at least this priority
	// through quiet hours. Unset: nothing bypasses.
	QuietBypassPriority *int `mapstructure:"quiet_bypass_priority"`
}

// DedupConfig configures per-route suppression of repeated notifications.
type DedupConfig struct {
	// Key is a template (in the route's style) whose rendering identifies
	// "the same" notification, e.g. "{user}@{hostname}@{rhost}". Default
	// "{topic}" ("{{.topic}}" for templates). Missing keys render as their
	// source text.
	Key string `mapstructure:"key"`
	// Window is how long after a notification its repeats are suppressed.
	// Zero disables dedup.
	Window time.Duration `mapstructure:"window"`
}

// RouteConfig is one node of the route tree.
type RouteConfig struct {
	// Name identifies the route in logs, metrics, dry runs and dedup
	// state ([A-Za-z0-9_.-], unique). Default: its position, e.g.
	// "routes[0].routes[1]". Name routes whose dedup state should survive
	// reloads that reorder them.
	Name string `mapstructure:"name"`
	// Match says which events the route takes; empty matches everything.
	Match MatchConfig `mapstructure:"match"`
	// Continue makes the next sibling route be tried even when this one
	// matched.
	Continue bool `mapstructure:"continue"`
	// RouteSettings are this route's own settings.
	RouteSettings `mapstructure:",squash"`
	// Routes are child routes, tried in order when this route matches.
	Routes []RouteConfig `mapstructure:"routes"`
}

// MatchConfig selects events. All given conditions must hold; a list
// holds when any of its entries does.
type MatchConfig struct {
	// Topic lists MQTT topic filters ("logging/hare", "+/status", "home/#").
	Topic []string `mapstructure:"topic"`
	// Edge lists edge ids; shell-style globs ("site-*") are allowed.
	Edge []string `mapstructure:"edge"`
	// Source lists event sources (udp, mqtt, audit); globs allowed.
	Source []string `mapstructure:"source"`
	// Fields are conditions on the JSON payload; all must hold. A payload
	// that is not a JSON object fails every condition except ne and
	// exists: false.
	Fields []FieldMatch `mapstructure:"fields"`
}

// FieldMatch is one condition on a JSON payload field. Exactly one of Eq,
// Ne, Regex and Exists is set.
type FieldMatch struct {
	// Key is the field path: "user", "a.b", "a[b.c]", "list.0".
	Key string `mapstructure:"key"`
	// Eq holds when the field exists and equals this value (numbers
	// compare numerically, everything else as text).
	Eq any `mapstructure:"eq"`
	// Ne holds when the field is absent or differs from this value.
	Ne any `mapstructure:"ne"`
	// Regex holds when the field exists and its text contains a match of
	// this RE2 expression (anchor it with ^...$ for a full match).
	Regex string `mapstructure:"regex"`
	// Exists holds when the field's presence equals this value.
	Exists *bool `mapstructure:"exists"`
}

// QuietHoursConfig is a named set of weekly intervals in one time zone.
type QuietHoursConfig struct {
	// TimeZone is the IANA zone of the intervals. Default: Config.TimeZone.
	TimeZone string `mapstructure:"time_zone"`
	// Intervals are the quiet periods; quiet when any holds.
	Intervals []QuietInterval `mapstructure:"intervals"`
}

// QuietInterval is a daily period, optionally on some weekdays only.
type QuietInterval struct {
	// Start is the local time "HH:MM" the quiet period starts. Required.
	Start string `mapstructure:"start"`
	// End is the local time "HH:MM" it ends; an End not after Start runs
	// past midnight into the next day. Required.
	End string `mapstructure:"end"`
	// Weekdays limits the interval to the days it starts on: names
	// ("mon", "saturday") or ranges ("mon-fri"). Empty: every day.
	Weekdays []string `mapstructure:"weekdays"`
}

// SilenceConfig watches for the absence of events.
type SilenceConfig struct {
	// Name identifies the watch ([A-Za-z0-9_.-], unique). Required.
	Name string `mapstructure:"name"`
	// Topic is the MQTT topic filter of the events that count. Default "#".
	Topic string `mapstructure:"topic"`
	// Edges lists edge ids to watch, each separately. Empty: one watch over
	// events from every edge.
	Edges []string `mapstructure:"edges"`
	// After is how long without a matching event counts as silence.
	// Required.
	After time.Duration `mapstructure:"after"`
	// RecoveredTitle and RecoveredFormat render the "events are back"
	// notification. Defaults are built in.
	RecoveredTitle  string `mapstructure:"recovered_title"`
	RecoveredFormat string `mapstructure:"recovered_format"`
	// RouteSettings: targets, title, format (of the "silent" notification),
	// priority, style, quiet hours. Dedup does not apply. Templates see
	// name, topic, edge, state ("silent" or "recovered"), since (RFC 3339),
	// duration and after.
	RouteSettings `mapstructure:",squash"`
}

// OfflineConfig is the "site offline" alert.
type OfflineConfig struct {
	// After is how long an edge's hub link must stay down before the
	// alert. Default 5m.
	After time.Duration `mapstructure:"after"`
	// Edges limits the alert to these edge ids (globs allowed). Empty: all.
	Edges []string `mapstructure:"edges"`
	// RecoveredTitle and RecoveredFormat render the "back online"
	// notification. Defaults are built in.
	RecoveredTitle  string `mapstructure:"recovered_title"`
	RecoveredFormat string `mapstructure:"recovered_format"`
	// RouteSettings: targets, title, format, priority, style, quiet hours.
	// Templates see edge, state ("offline" or "online"), since, duration
	// and after.
	RouteSettings `mapstructure:",squash"`
}

// DeliveryConfig names the JetStream objects of the pipeline and bounds it.
type DeliveryConfig struct {
	// Stream is the hub's event stream. Default "HUB".
	Stream string `mapstructure:"stream"`
	// FilterSubject selects the events of Stream. Default "hub.ev.>".
	FilterSubject string `mapstructure:"filter_subject"`
	// Consumer is the durable consumer name on Stream. Default "notify".
	Consumer string `mapstructure:"consumer"`
	// DeliverPolicy is where a new consumer starts: "new" (default: the
	// events stored since the hub started, see Deps.StartTime) or "all"
	// (the whole stream). An existing consumer keeps where it started.
	DeliverPolicy string `mapstructure:"deliver_policy"`
	// Outbox is the per-target work-queue stream. Default "NOTIFY_OUTBOX".
	Outbox string `mapstructure:"outbox"`
	// OutboxPrefix is the outbox subject prefix; a target's queue is
	// <prefix>.<target>. Default "notify.outbox".
	OutboxPrefix string `mapstructure:"outbox_prefix"`
	// DLQ is the dead-letter stream. Default "NOTIFY_DLQ".
	DLQ string `mapstructure:"dlq"`
	// DLQPrefix is the dead-letter subject prefix. Default "notify.dlq".
	DLQPrefix string `mapstructure:"dlq_prefix"`
	// DLQMaxAge is how long dead letters are kept. Default 720h (30 days).
	DLQMaxAge time.Duration `mapstructure:"dlq_max_age"`
	// SentBucket is the KV bucket of delivered notification ids (the
	// idempotency record). Default "NOTIFY_SENT".
	SentBucket string `mapstructure:"sent_bucket"`
	// SentTTL is how long a delivery is remembered. Default 24h.
	SentTTL time.Duration `mapstructure:"sent_ttl"`
	// DuplicateWindow is the outbox's Msg-Id deduplication window.
	// Default 10m.
	DuplicateWindow time.Duration `mapstructure:"duplicate_window"`
	// AckWait is how long the event consumer waits for an ack before
	// redelivering, and the least the target consumers wait (they wait at
	// least three attempt timeouts). After a crash, deliveries that were
	// in flight resume after this long. Default 30s.
	AckWait time.Duration `mapstructure:"ack_wait"`
	// MaxAckPending bounds events in flight. Default 4096.
	MaxAckPending int `mapstructure:"max_ack_pending"`
	// Batch is the number of outbox messages a target worker takes at a
	// time. Default 256.
	Batch int `mapstructure:"batch"`
	// Replicas is the replica count of the notifier's streams. Default 1.
	Replicas int `mapstructure:"replicas"`
}

// DefaultConfig returns a configuration with no targets and no routes
// (nothing is notified) and the default delivery settings.
func DefaultConfig() Config {
	return Config{
		TimeZone: "Local",
		Offline:  OfflineConfig{After: 5 * time.Minute},
		Delivery: DefaultDeliveryConfig(),
	}
}

// DefaultDeliveryConfig returns the default delivery settings.
func DefaultDeliveryConfig() DeliveryConfig {
	return DeliveryConfig{
		Stream:          event.HubStream,
		FilterSubject:   event.HubSubjectPrefix + ">",
		Consumer:        "notify",
		DeliverPolicy:   "new",
		Outbox:          "NOTIFY_OUTBOX",
		OutboxPrefix:    "notify.outbox",
		DLQ:             "NOTIFY_DLQ",
		DLQPrefix:       "notify.dlq",
		DLQMaxAge:       30 * 24 * time.Hour,
		SentBucket:      "NOTIFY_SENT",
		SentTTL:         24 * time.Hour,
		DuplicateWindow: 10 * time.Minute,
		AckWait:         30 * time.Second,
		MaxAckPending:   4096,
		Batch:           256,
		Replicas:        1,
	}
}

// Target defaults applied where a TargetConfig leaves a field zero.
const (
	defaultTimeout        = 10 * time.Second
	defaultMaxAttempts    = 10
	defaultMaxAge         = 24 * time.Hour
	defaultInitialBackoff = time.Second
	defaultMaxBackoff     = 5 * time.Minute
	defaultRateInterval   = time.Minute
)

// withDefaults fills the zero fields of a target definition.
func (t TargetConfig) withDefaults() TargetConfig {
	if t.Timeout == 0 {
		t.Timeout = defaultTimeout
	}
	if t.Workers == 0 {
		t.Workers = 1
	}
	if t.RateLimit.Count > 0 && t.RateLimit.Interval == 0 {
		t.RateLimit.Interval = defaultRateInterval
	}
	if t.Retry.MaxAttempts == 0 {
		t.Retry.MaxAttempts = defaultMaxAttempts
	}
	if t.Retry.MaxAge == 0 {
		t.Retry.MaxAge = defaultMaxAge
	}
	if t.Retry.InitialBackoff == 0 {
		t.Retry.InitialBackoff = defaultInitialBackoff
	}
	if t.Retry.MaxBackoff == 0 {
		t.Retry.MaxBackoff = defaultMaxBackoff
	}
	return t
}

// Parse decodes the notifier configuration from the map the hub's config
// loader holds under its `notify` key (or that LoadFile read), strictly:
// unknown keys are errors naming the key. "${ENV:NAME}" in any string is
// replaced by the environment variable NAME (an unset variable is an
// error). The result is validated.
func Parse(raw map[string]any) (Config, error) {
	cfg, err := decode(raw)
	if err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LoadFile reads a YAML file and parses it with Parse. A file with a
// top-level `notify` key (a whole hub configuration) contributes only that
// section; otherwise the whole file is the notifier configuration.
func LoadFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("notify config: %w", err)
	}
	raw, err := parseYAML(b)
	if err != nil {
		return Config{}, fmt.Errorf("notify config %s: %w", path, err)
	}
	cfg, err := Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("notify config %s: %w", path, err)
	}
	return cfg, nil
}

// ReadSection reads the `notify` section of a whole hub configuration file,
// keeping the case of its keys (the hub's viper loader folds map keys to
// lower case, which would turn a target "myPhone" into "myphone" while a
// route still names "myPhone"). ok is false when the file has no notify
// section or an empty one.
func ReadSection(path string) (raw map[string]any, ok bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("notify config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, false, fmt.Errorf("notify config %s: yaml: %w", path, err)
	}
	sec, found := doc["notify"]
	if !found || sec == nil {
		return nil, false, nil
	}
	m, isMap := sec.(map[string]any)
	if !isMap {
		return nil, false, fmt.Errorf("notify config %s: notify: want a mapping, got %T", path, sec)
	}
	return m, len(m) > 0, nil
}

// parseYAML decodes a YAML document into a map, unwrapping a top-level
// `notify` section.
func parseYAML(b []byte) (map[string]any, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	if sec, ok := raw["notify"]; ok {
		m, ok := sec.(map[string]any)
		if !ok {
			if sec == nil {
				return map[string]any{}, nil
			}
			return nil, errors.New("notify: want a mapping")
		}
		return m, nil
	}
	if raw == nil {
		raw = map[string]any{}
	}
	return raw, nil
}

// decode decodes raw over DefaultConfig, strictly, without validating.
func decode(raw map[string]any) (Config, error) {
	expanded, err := expandEnv(raw, "")
	if err != nil {
		return Config{}, err
	}
	cfg := DefaultConfig()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		ErrorUnused:      true,
		WeaklyTypedInput: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
		),
		Result: &cfg,
	})
	if err != nil {
		return Config{}, fmt.Errorf("notify config: %w", err)
	}
	if err := dec.Decode(expanded); err != nil {
		return Config{}, cleanDecodeError(err)
	}
	return cfg, nil
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook parses duration strings ("10m") and refuses bare numbers,
// which would silently mean nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration like 90s, 10m or 1h30m", v)
		}
		return d, nil
	case time.Duration:
		return v, nil
	case int, int64, float64, uint64:
		if reflect.ValueOf(v).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("%v: write a duration with a unit, like 90s or 10m", v)
	}
	return data, nil
}

// decodeErrorLines turns mapstructure's multi-line error into one line
// per problem, each "path: problem" (": problem" at the top level), with
// map keys written as path elements: 'targets[phone]' has invalid keys: x
// becomes "targets.phone: unknown key x".
func decodeErrorLines(err error) []string {
	var lines []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "* "))
		if l == "" || strings.HasPrefix(l, "decoding failed") || strings.HasSuffix(l, "error(s) decoding:") {
			continue
		}
		if m := invalidKeysRE.FindStringSubmatch(l); m != nil {
			word := "key"
			if strings.Contains(m[2], ",") {
				word = "keys"
			}
			l = keyPath(m[1]) + ": unknown " + word + " " + m[2]
		} else if m := quotedPathRE.FindStringSubmatch(l); m != nil {
			l = keyPath(m[1]) + ": " + strings.TrimSpace(m[2])
		}
		lines = append(lines, l)
	}
	sort.Strings(lines)
	return lines
}

var (
	invalidKeysRE = regexp.MustCompile(`^'([^']*)' has invalid keys: (.*)$`)
	quotedPathRE  = regexp.MustCompile(`^'([^']*)'(.*)$`)
	mapIndexRE    = regexp.MustCompile(`\[([^\]]*[^0-9\]][^\]]*)\]`)
)

// keyPath writes mapstructure's targets[phone] as targets.phone (list
// indexes stay: routes[0]).
func keyPath(p string) string {
	return strings.TrimPrefix(mapIndexRE.ReplaceAllString(p, ".$1"), ".")
}

// cleanDecodeError is decodeErrorLines as one error.
func cleanDecodeError(err error) error {
	lines := decodeErrorLines(err)
	if len(lines) == 0 {
		return fmt.Errorf("notify config: %w", err)
	}
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, ": ")
	}
	return fmt.Errorf("notify config: %s", strings.Join(lines, "; "))
}

// envRef is ${ENV:NAME}, mqttwarn's environment interpolation, which the
// notify section and the mqttwarn importer both understand.
var envRef = regexp.MustCompile(`\$\{ENV:([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv copies raw, replacing ${ENV:NAME} in strings.
func expandEnv(v any, path string) (map[string]any, error) {
	out, err := expandValue(v, path)
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func expandValue(v any, path string) (any, error) {
	switch x := v.(type) {
	case string:
		var missing []string
		s := envRef.ReplaceAllStringFunc(x, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			val, ok := os.LookupEnv(name)
			if !ok {
				missing = append(missing, name)
			}
			return val
		})
		if len(missing) > 0 {
			return nil, fmt.Errorf("notify config: %s: environment variable %s is not set", path, strings.Join(missing, ", "))
		}
		return s, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ev, err := expandValue(e, joinKey(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = ev
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks := fmt.Sprint(k)
			ev, err := expandValue(e, joinKey(path, ks))
			if err != nil {
				return nil, err
			}
			out[ks] = ev
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			ev, err := expandValue(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	}
	return v, nil
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
