package notify

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestImportMqttwarn(t *testing.T) {
	b, err := os.ReadFile("testdata/mqttwarn/hare.ini")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ImportMqttwarn(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("yaml:\n%s\nwarnings:\n%s", res.YAML, strings.Join(res.Warnings, "\n"))
	cfg, err := Parse(res.Config)
	if err != nil {
		t.Fatalf("converted config does not validate: %v", err)
	}
	want := map[string]string{
		"file-logins": "file", "file-all": "file", "log-info": "log", "log-crit": "log",
		"pushover-phone": "pushover", "smtp-ops": "smtp", "ntfy-phone": "ntfy", "ntfy-tagged": "ntfy",
		"http-hook": "webhook", "http-get1": "webhook",
	}
	got := map[string]string{}
	for n, tc := range cfg.Targets {
		got[n] = tc.Type
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("targets = %v, want %v", got, want)
	}
	fc := cfg.Targets["file-logins"].Config
	if fc["path"] != "/var/log/logins.log" || fc["newline"] != true || fc["append"] != true {
		t.Errorf("file target: %v", fc)
	}
	pc := cfg.Targets["pushover-phone"].Config
	if pc["user_key"] != "uQiRzpo4DXghDmr9QzzfQu27cmVRsG" || pc["token"] != "azGDORePK8gMaC0QOYAMyEEuzJnyUi" || pc["sound"] != "siren" {
		t.Errorf("pushover target: %v", pc)
	}
	sc := cfg.Targets["smtp-ops"].Config
	if sc["host"] != "mail.example.org" || sc["port"] != 587 || sc["mode"] != "starttls" || sc["from"] != "MQTTwarn <warren@example.org>" || len(sc["to"].([]any)) != 2 {
		t.Errorf("smtp target: %v", sc)
	}
	if gc := cfg.Targets["http-get1"].Config; gc["method"] != "GET" || gc["url"] != "http://example.org" || !reflect.DeepEqual(gc["query"], map[string]any{"q": `{{index .Fields "name"}}`}) {
		t.Errorf("http GET target: %v", gc)
	}
	if nc := cfg.Targets["ntfy-tagged"].Config; nc["url"] != "https://ntfy.example.org" || nc["topic"] != "alerts" || !reflect.DeepEqual(nc["tags"], []any{"warning", "skull"}) {
		t.Errorf("ntfy target: %v", nc)
	}
	if hc := cfg.Targets["http-hook"].Config; hc["url"] != "https://hooks.example.org/warren" || hc["username"] != "user" || hc["method"] != "POST" {
		t.Errorf("http target: %v", hc)
	}
	if len(cfg.Routes) != 3 {
		t.Fatalf("routes: %+v", cfg.Routes)
	}
	r := cfg.Routes[0]
	if r.Name != "logging-hare" || !r.Continue || r.Format != "login {user} on {hostname} from {rhost}" || r.Title != "SSH login on {hostname}" || r.Priority != "1" ||
		!reflect.DeepEqual(r.Targets, []string{"file-logins", "log-info", "pushover-phone", "ntfy-phone"}) || !reflect.DeepEqual(r.Match.Topic, []string{"logging/hare"}) {
		t.Errorf("route 0: %+v", r)
	}
	if r := cfg.Routes[1]; r.Name != "hare-root" || !reflect.DeepEqual(r.Match.Topic, []string{"logging/hare"}) || !reflect.DeepEqual(r.Targets, []string{"smtp-ops"}) {
		t.Errorf("route 1: %+v", r)
	}
	if r := cfg.Routes[2]; r.Format != "" || !reflect.DeepEqual(r.Match.Topic, []string{"test/+"}) {
		t.Errorf("route 2: %+v", r)
	}
	warnings := strings.Join(res.Warnings, "\n")
	for _, w := range []string{
		"[defaults] hostname, port, clientid: not needed",
		`[config:slack]: service "slack" has no warren target type`,
		"[hare-root] targets: slack:chan is not a converted target",
		"[hare-root] filter: not carried",
		"[test/+] format: function myfuncs.xform() cannot be carried",
		"[config:pushover] target phone: token is inline",
		"[config:ntfy] target tagged: priority not carried",
		"[config:pushover] callback: not carried",
		"[config:smtp] htmlmsg: not carried",
	} {
		if !strings.Contains(warnings, w) {
			t.Errorf("warnings lack %q", w)
		}
	}
	// The rendering is the same as mqttwarn's.
	e, err := New(cfg, Deps{Standalone: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	rep := e.DryRun("logging/hare", []byte(`{"user":"jjolie","hostname":"vm","rhost":"198.51.100.7"}`), "site-1", "udp")
	if len(rep.Deliveries) == 0 || rep.Deliveries[0].Message != "login jjolie on vm from 198.51.100.7" || rep.Deliveries[0].Title != "SSH login on vm" {
		t.Errorf("dry run: %s", rep)
	}
}

func TestImportMqttwarnErrors(t *testing.T) {
	for _, in := range []string{"", "key = value\n[x]", "[a]\nno delimiter here"} {
		if _, err := ImportMqttwarn([]byte(in), nil); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestPyValue(t *testing.T) {
	for in, want := range map[string]any{
		`'a' "b"`: "ab",
		`{'x': [1, -2.5, None, True], 'y': ('a',)}`: map[string]any{"x": []any{int64(1), -2.5, nil, true}, "y": []any{"a"}},
		`{user} on {host}`:                          "{user} on {host}",
		`'it\'s'`:                                   "it's",
		"[1, # comment\n 2]":                        []any{int64(1), int64(2)},
		`nan`:                                       "nan",
	} {
		if got := pyValue(in); !reflect.DeepEqual(got, want) {
			t.Errorf("pyValue(%q) = %#v, want %#v", in, got, want)
		}
	}
}

// FuzzImportMqttwarn: no input panics, and the YAML says what Config says.
func FuzzImportMqttwarn(f *testing.F) {
	files, _ := filepath.Glob("testdata/mqttwarn/*.ini")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[a]\ntargets = {'x': [[[[(\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := ImportMqttwarn(in, func(string) (string, bool) { return "", false })
		if err != nil {
			return
		}
		var back map[string]map[string]any
		if err := yaml.Unmarshal(res.YAML, &back); err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, res.YAML)
		}
		if !reflect.DeepEqual(back["notify"], res.Config) {
			t.Fatalf("YAML and Config differ")
		}
		_, _ = Parse(res.Config) // must not panic
	})
}

// TestImportMqttwarnEnv: ${ENV:NAME} is substituted as mqttwarn does at
// start, and both substitutions and unset variables are reported.
func TestImportMqttwarnEnv(t *testing.T) {
	ini := `[config:pushover]
targets = {
    'phone': ['${ENV:PO_USER}', '${ENV:PO_TOKEN}'],
  }

[config:file]
targets = { 'f': ['${ENV:LOGDIR}/logins.log'] }

[logging/hare]
targets = pushover:phone, file:f
format = login {user}
`
	env := map[string]string{"PO_USER": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "PO_TOKEN": "azGDORePK8gMaC0QOYAMyEEuzJnyUi"}
	res, err := ImportMqttwarn([]byte(ini), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	targets := res.Config["targets"].(map[string]any)
	pc := targets["pushover-phone"].(map[string]any)["config"].(map[string]any)
	if pc["user_key"] != env["PO_USER"] || pc["token"] != env["PO_TOKEN"] {
		t.Errorf("pushover target: %v", pc)
	}
	fc := targets["file-f"].(map[string]any)["config"].(map[string]any)
	if fc["path"] != "${ENV:LOGDIR}/logins.log" {
		t.Errorf("file path with an unset variable: %v", fc["path"])
	}
	all := strings.Join(res.Warnings, "\n")
	for _, w := range []string{"$PO_USER substituted", "$PO_TOKEN substituted", "$LOGDIR is not set"} {
		if !strings.Contains(all, w) {
			t.Errorf("no warning %q in:\n%s", w, all)
		}
	}
	if strings.Contains(all, env["PO_TOKEN"]) {
		t.Errorf("a warning shows the secret value:\n%s", all)
	}
}

func TestMqttwarnQueryTemplate(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"@user", `{{index .Fields "user"}}`, true},
		{"{user}@{host}", `{{index .Fields "user"}}@{{index .Fields "host"}}`, true},
		{"on {topic}", "on {{.Topic}}", true},
		{"plain", "plain", true},
		{"{n:03d}", "", false},
		{"{a[b]}", "", false},
		{"{{literal}}", "", false},
		{"{}", "", false},
		{"@", "", false},
	} {
		got, ok := queryTemplate(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("queryTemplate(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
