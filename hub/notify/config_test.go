package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // tests name zones; do not depend on the machine's zoneinfo

	"go.yaml.in/yaml/v3"
)

// parseYAMLConfig decodes and validates a YAML notify section.
func parseYAMLConfig(t testing.TB, doc string) (Config, error) {
	t.Helper()
	raw, err := parseYAML([]byte(doc))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return Parse(raw)
}

func TestLoadFileExample(t *testing.T) {
	t.Setenv("WARREN_TEST_PUSHOVER_TOKEN", "azGDORePK8gMaC0QOYAMyEEuzJnyUi")
	cfg, err := LoadFile("testdata/notify.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Targets["phone"].Config["token"]; got != "azGDORePK8gMaC0QOYAMyEEuzJnyUi" {
		t.Errorf("env expansion: token = %v", got)
	}
	c, err := compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.loc.String() != "Europe/Berlin" {
		t.Errorf("loc = %s", c.loc)
	}
	if len(c.routes) != 3 || c.routes[1].name != "hare-page" || len(c.routes[1].children) != 1 {
		t.Fatalf("routes = %+v", c.routes)
	}
	child := c.routes[1].children[0]
	// The child inherits targets, dedup, quiet hours and title from its parent.
	if strings.Join(child.targets, ",") != "phone" || child.dedupWindow != 10*time.Minute || len(child.quiet) != 1 || child.title == nil {
		t.Errorf("child did not inherit: %+v", child.notifySpec)
	}
	// A route without targets inherits the defaults'.
	if strings.Join(c.routes[2].targets, ",") != "journal" {
		t.Errorf("routes[2] targets = %v", c.routes[2].targets)
	}
	if c.routes[2].name != "routes[2]" {
		t.Errorf("unnamed route name = %q", c.routes[2].name)
	}
	// The pushover target has its own 10s timeout; the engine allows 5s more.
	if got := c.targets["phone"].Timeout; got != 15*time.Second {
		t.Errorf("phone timeout = %s", got)
	}
	if got := c.targets["logins"].Timeout; got != defaultTimeout {
		t.Errorf("file timeout = %s", got)
	}
	if c.targets["phone"].Retry.MaxAttempts != 5 || c.targets["mail"].Retry.MaxAttempts != defaultMaxAttempts {
		t.Errorf("retry defaults wrong")
	}
	if c.offline == nil || len(c.silence) != 1 {
		t.Errorf("offline/silence not compiled")
	}
}

func TestLoadFileBareSection(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n.yaml")
	doc := "targets:\n  j: {type: log}\nroutes:\n  - targets: [j]\n"
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 1 || cfg.Targets["j"].Type != "log" {
		t.Errorf("cfg = %+v", cfg)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestEmptyConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(nil); err != nil {
		t.Fatal(err)
	}
}

// TestBadConfig checks that each mistake is an error naming its key.
func TestBadConfig(t *testing.T) {
	const base = `
targets:
  j: {type: log}
  f: {type: file, config: {path: /tmp/x.log}}
`
	cases := []struct {
		name, doc, want string
	}{
		{"unknown top key", base + "bogus: 1\n", "notify config: unknown key bogus"},
		{"unknown route key", base + "routes: [{targets: [j], formatt: x}]\n", "routes[0]: unknown key formatt"},
		{"unknown match key", base + "routes: [{targets: [j], match: {topc: a}}]\n", "routes[0].match: unknown key topc"},
		{"unknown target key", base + "  g: {type: log, timout: 1s}\n", "targets.g: unknown key timout"},
		{"unknown target type", base + "  g: {type: pager}\n", `targets.g.type: unknown type "pager"`},
		{"missing target type", base + "  g: {config: {}}\n", "targets.g.type: missing"},
		{"unknown target config key", base + "  g: {type: log, config: {levle: info}}\n", "targets.g.config: unknown key levle"},
		{"invalid target config", base + "  g: {type: file, config: {append: true}}\n", "targets.g.config.path: missing"},
		{"bad target name", base + "  'a b': {type: log}\n", "targets.a b: name must be"},
		{"unknown target in route", base + "routes: [{targets: [nope]}]\n", `routes[0].targets[0]: unknown target "nope"`},
		{"duplicate target in route", base + "routes: [{targets: [j, j]}]\n", `routes[0].targets: "j" is listed twice`},
		{"leaf without targets", base + "routes: [{match: {topic: a}}]\n", "routes[0].targets: none"},
		{"bad format template", base + "routes: [{targets: [j], format: '{user'}]\n", "routes[0].format"},
		{"bad go template", base + "routes: [{targets: [j], style: template, title: '{{ .x '}]\n", "routes[0].title"},
		{"bad style", base + "routes: [{targets: [j], style: jinja}]\n", `routes[0].style: "jinja"`},
		{"bad on_missing", base + "routes: [{targets: [j], on_missing: ignore}]\n", `routes[0].on_missing: "ignore"`},
		{"bad time zone", base + "time_zone: Mars/Olympus\n", `time_zone: unknown time zone "Mars/Olympus"`},
		{"bad quiet zone", base + "quiet_hours: {n: {time_zone: Nowhere/X, intervals: [{start: '22:00', end: '06:00'}]}}\n", "quiet_hours.n.time_zone"},
		{"bad quiet time", base + "quiet_hours: {n: {intervals: [{start: '25:00', end: '06:00'}]}}\n", "quiet_hours.n.intervals[0].start"},
		{"bad weekday", base + "quiet_hours: {n: {intervals: [{start: '22:00', end: '06:00', weekdays: [funday]}]}}\n", "quiet_hours.n.intervals[0].weekdays"},
		{"unknown quiet hours", base + "routes: [{targets: [j], quiet: [night]}]\n", `routes[0].quiet[0]: unknown quiet_hours "night"`},
		{"bypass without quiet", base + "routes: [{targets: [j], quiet_bypass_priority: 2}]\n", "routes[0].quiet_bypass_priority"},
		{"bad duration", base + "routes: [{targets: [j], dedup: {window: 10 minutes}}]\n", `routes[0].dedup.window: "10 minutes" is not a duration`},
		{"bare number duration", base + "routes: [{targets: [j], dedup: {window: 600}}]\n", "write a duration with a unit"},
		{"dedup key without window", base + "routes: [{targets: [j], dedup: {key: '{user}'}}]\n", "routes[0].dedup.window: missing"},
		{"dedup in defaults", base + "defaults: {dedup: {window: 1m}}\n", "defaults.dedup"},
		{"bad topic filter", base + "routes: [{targets: [j], match: {topic: 'a/#/b'}}]\n", "routes[0].match.topic[0]"},
		{"bad edge glob", base + "routes: [{targets: [j], match: {edge: '[a'}}]\n", "routes[0].match.edge[0]"},
		{"two field ops", base + "routes: [{targets: [j], match: {fields: [{key: a, eq: 1, ne: 2}]}}]\n", "routes[0].match.fields[0].set exactly one"},
		{"bad regex", base + "routes: [{targets: [j], match: {fields: [{key: a, regex: '('}]}}]\n", "routes[0].match.fields[0].regex"},
		{"bad field key", base + "routes: [{targets: [j], match: {fields: [{key: 'a..b', eq: 1}]}}]\n", "routes[0].match.fields[0].key"},
		{"duplicate route name", base + "routes: [{name: a, targets: [j]}, {name: a, targets: [j]}]\n", `routes[1].name: "a" is also the name of routes[0]`},
		{"failover unknown", base + "  g: {type: log, failover: nope}\n", `targets.g.failover: unknown target "nope"`},
		{"failover loop", base + "  g: {type: log, failover: h}\n  h: {type: log, failover: g}\n", "loops back"},
		{"retry backoff order", base + "  g: {type: log, retry: {initial_backoff: 1m, max_backoff: 1s}}\n", "targets.g.retry.max_backoff"},
		{"workers", base + "  g: {type: log, workers: 100}\n", "targets.g.workers"},
		{"silence without after", base + "silence: [{name: s, targets: [j]}]\n", "silence[0].after: missing"},
		{"silence without name", base + "silence: [{after: 1m, targets: [j]}]\n", "silence[0].name"},
		{"silence template without texts", base + "silence: [{name: s, after: 1m, targets: [j], style: template}]\n", "silence[0]: with style template"},
		{"offline bad after", base + "offline: {after: -1s, targets: [j]}\n", "offline.after"},
		{"delivery batch", base + "delivery: {batch: 0}\n", "delivery.batch"},
		{"delivery policy", base + "delivery: {deliver_policy: last}\n", "delivery.deliver_policy"},
		{"delivery names", base + "delivery: {outbox: 'a.b'}\n", "delivery.outbox"},
		{"missing env", base + "routes: [{targets: [j], title: '${ENV:WARREN_TEST_SURELY_UNSET}'}]\n", "routes[0].title: environment variable WARREN_TEST_SURELY_UNSET is not set"},
		{"reserved quiet name", base + "quiet_hours: {none: {intervals: [{start: '22:00', end: '06:00'}]}}\n", "reserved"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseYAMLConfig(t, c.doc)
			if err == nil {
				t.Fatalf("accepted:\n%s", c.doc)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestBadConfigSecrets makes sure a rejected config does not echo a secret.
func TestBadConfigSecrets(t *testing.T) {
	doc := "targets:\n  p: {type: pushover, config: {token: s3cr3tT0kenValue99, user_key: u, bogus: 1}}\n"
	_, err := parseYAMLConfig(t, doc)
	if err == nil {
		t.Fatal("accepted")
	}
	if strings.Contains(err.Error(), "s3cr3tT0kenValue99") {
		t.Fatalf("secret in error: %v", err)
	}
}

func TestQuietNoneDisablesInherited(t *testing.T) {
	doc := `
targets: {j: {type: log}}
quiet_hours: {night: {intervals: [{start: "22:00", end: "06:00"}]}}
defaults: {quiet: [night]}
routes:
  - {name: a, targets: [j]}
  - {name: b, targets: [j], quiet: [none]}
  - {name: c, targets: [j], dedup: {window: 1m}, routes: [{name: d, dedup: {}}]}
`
	cfg, err := parseYAMLConfig(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := compile(cfg, nil)
	if len(c.byName["a"].quiet) != 1 || len(c.byName["b"].quiet) != 0 {
		t.Errorf("quiet: a=%d b=%d", len(c.byName["a"].quiet), len(c.byName["b"].quiet))
	}
	if c.byName["c"].dedupWindow != time.Minute || c.byName["d"].dedupWindow != 0 {
		t.Errorf("dedup: c=%s d=%s", c.byName["c"].dedupWindow, c.byName["d"].dedupWindow)
	}
}

// TestViperShapedInput feeds what viper hands over: lower-cased keys,
// []any lists, strings for durations.
func TestViperShapedInput(t *testing.T) {
	raw := map[string]any{
		"targets": map[string]any{"j": map[string]any{"type": "log", "timeout": "3s"}},
		"routes": []any{map[string]any{
			"targets": []any{"j"},
			"match":   map[string]any{"topic": "logging/hare", "fields": []any{map[string]any{"key": "User", "eq": 5}}},
		}},
	}
	cfg, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Targets["j"].Timeout != 3*time.Second || cfg.Routes[0].Match.Topic[0] != "logging/hare" || cfg.Routes[0].Match.Fields[0].Key != "User" {
		t.Errorf("cfg = %+v", cfg)
	}
}

func FuzzConfig(f *testing.F) {
	for _, s := range []string{
		"targets: {j: {type: log}}\nroutes: [{targets: [j]}]\n",
		"routes: [{match: {topic: 'a/#', fields: [{key: a.b, regex: x}]}, targets: [j]}]\n",
		"quiet_hours: {n: {intervals: [{start: '22:00', end: '06:00', weekdays: [mon-fri]}]}}\n",
		"silence: [{name: s, after: 1m}]\noffline: {after: 1m}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var raw map[string]any
		if yaml.Unmarshal([]byte(doc), &raw) != nil {
			return
		}
		cfg, err := Parse(raw)
		if err != nil {
			return
		}
		if _, err := compile(cfg, nil); err != nil {
			t.Fatalf("Parse accepted what compile rejects: %v", err)
		}
	})
}
