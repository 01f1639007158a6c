package hub

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/internal/cfgload"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	if c.PKIPath() != "/var/lib/warren/hub/pki" {
		t.Errorf("PKIPath %q", c.PKIPath())
	}
	c.PKIDir = "/etc/warren/pki"
	if c.PKIPath() != "/etc/warren/pki" {
		t.Errorf("PKIPath %q", c.PKIPath())
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"empty server name", func(c *Config) { c.ServerName = "" }, "server_name: empty"},
		{"server name with space", func(c *Config) { c.ServerName = "my hub" }, "server_name:"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir:"},
		{"bad san", func(c *Config) { c.PKISANs = []string{"bad name"} }, "pki_sans:"},
		{"san ip and name", func(c *Config) { c.PKISANs = []string{"10.0.0.1", "hub.example.org"} }, ""},
		{"nats listen", func(c *Config) { c.NATS.Listen = "4222" }, "nats.listen:"},
		{"nats port", func(c *Config) { c.NATS.Listen = ":99999" }, "nats.listen:"},
		{"tls 1.1", func(c *Config) { c.NATS.TLSMinVersion = "1.1" }, "nats.tls_min_version:"},
		{"tls 1.2", func(c *Config) { c.NATS.TLSMinVersion = "1.2" }, ""},
		{"dedup zero", func(c *Config) { c.Stream.DuplicateWindow = 0 }, "stream.duplicate_window:"},
		{"dedup over age", func(c *Config) { c.Stream.MaxAge = time.Hour }, "stream.duplicate_window: 24h0m0s is longer"},
		{"max bytes", func(c *Config) { c.Stream.MaxBytes = -1 }, "stream.max_bytes:"},
		{"max age", func(c *Config) { c.Stream.MaxAge = -time.Second }, "stream.max_age:"},
		{"discard", func(c *Config) { c.Stream.Discard = "oldest" }, "stream.discard:"},
		{"inflight", func(c *Config) { c.Ingest.MaxInflight = 0 }, "ingest.max_inflight:"},
		{"store timeout", func(c *Config) { c.Ingest.StoreTimeout = 0 }, "ingest.store_timeout:"},
		{"mqtt not loopback", func(c *Config) { c.MQTT.Listen = "0.0.0.0:1883" }, "mqtt.listen: \"0.0.0.0:1883\" is not a loopback address"},
		{"mqtt localhost", func(c *Config) { c.MQTT.Listen = "localhost:1883" }, ""},
		{"mqtt off, tls on", func(c *Config) { c.MQTT.Listen = "" }, "mqtt.tls_listen: needs mqtt.listen"},
		{"mqtt all off", func(c *Config) { c.MQTT.Listen, c.MQTT.TLSListen = "", "" }, ""},
		{"mqtt tls listen", func(c *Config) { c.MQTT.TLSListen = "8883" }, "mqtt.tls_listen:"},
		{"user no name", func(c *Config) { c.MQTT.Users = []MQTTUser{{PasswordFile: "/x"}} }, "mqtt.users[0].name: empty"},
		{"user reserved", func(c *Config) { c.MQTT.Users = []MQTTUser{{Name: "local", PasswordFile: "/x"}} }, "reserved"},
		{"user twice", func(c *Config) {
			c.MQTT.Users = []MQTTUser{{Name: "a", PasswordFile: "/x"}, {Name: "a", PasswordFile: "/y"}}
		}, "mqtt.users[1].name: \"a\" is listed twice"},
		{"user no password", func(c *Config) { c.MQTT.Users = []MQTTUser{{Name: "a"}} }, "mqtt.users[0].password_file:"},
		{"user bad filter", func(c *Config) {
			c.MQTT.Users = []MQTTUser{{Name: "a", PasswordFile: "/x", Subscribe: []string{"a/#/b"}}}
		}, "mqtt.users[0].subscribe:"},
		{"user bad publish", func(c *Config) {
			c.MQTT.Users = []MQTTUser{{Name: "a", PasswordFile: "/x", Publish: []string{"a b"}}}
		}, "mqtt.users[0].publish:"},
		{"prefix bad", func(c *Config) { c.Republish.TopicPrefix = "a b/" }, "republish.topic_prefix:"},
		{"prefix dollar", func(c *Config) { c.Republish.TopicPrefix = "$SYS/" }, "republish.topic_prefix:"},
		{"admin remote", func(c *Config) { c.Admin.Listen = "0.0.0.0:9136" }, "admin.listen:"},
		{"admin unix", func(c *Config) { c.Admin.Listen = "unix:/run/warren/hub.sock" }, ""},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level:"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestConfigFromFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	yaml := `
server_name: home-hub
data_dir: /srv/warren
nats:
  listen: ":14222"
  tls_min_version: "1.2"
stream:
  duplicate_window: 6h
  max_age: 720h
mqtt:
  users:
    - name: mqttwarn
      password_file: /etc/warren/mqttwarn.pw
      subscribe: ["logging/#"]
notify:
  targets:
    log: {type: log}
  routes:
    - match: logging/hare
      targets: [log]
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := cfgload.Load(cfgload.Options{File: file, EnvPrefix: "HUBTEST"}, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.ServerName = "home-hub"
	want.DataDir = "/srv/warren"
	want.NATS.Listen = ":14222"
	want.NATS.TLSMinVersion = "1.2"
	want.Stream.DuplicateWindow = 6 * time.Hour
	want.Stream.MaxAge = 720 * time.Hour
	want.MQTT.Users = []MQTTUser{{Name: "mqttwarn", PasswordFile: "/etc/warren/mqttwarn.pw", Subscribe: []string{"logging/#"}}}
	want.Notify = map[string]any{
		"targets": map[string]any{"log": map[string]any{"type": "log"}},
		"routes":  []any{map[string]any{"match": "logging/hare", "targets": []any{"log"}}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}

	// unknown keys are errors that name the key
	if err := os.WriteFile(file, []byte("nats:\n  listn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = DefaultConfig()
	err := cfgload.Load(cfgload.Options{File: file}, &cfg)
	if err == nil || !strings.Contains(err.Error(), `"nats.listn"`) {
		t.Errorf("unknown key: %v", err)
	}
}

func TestNewChecksFiles(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.DevPKI = false
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "pki_dir:") || !strings.Contains(err.Error(), "hub pki init") {
		t.Errorf("missing PKI: %v", err)
	}
	cfg.DevPKI = true
	cfg.MQTT.Users = []MQTTUser{{Name: "a", PasswordFile: filepath.Join(cfg.DataDir, "missing.pw")}}
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "mqtt.users[0].password_file") {
		t.Errorf("missing password file: %v", err)
	}
	cfg.MQTT.Users = nil
	if _, err := New(cfg, nil, nil); err != nil {
		t.Errorf("dev pki to be made at run: %v", err)
	}
	// New makes nothing on disk
	if entries, _ := os.ReadDir(cfg.DataDir); len(entries) != 0 {
		t.Errorf("New wrote %v", entries)
	}
}

func FuzzConfig(f *testing.F) {
	f.Add("server_name: x\nnats:\n  listen: \":1\"\n")
	f.Add("mqtt:\n  users:\n    - name: a\n      password_file: /x\n      publish: [\"#\"]\n")
	f.Add("stream: {duplicate_window: 1h, max_age: 1m}\n")
	f.Add("notify: {a: [1, 2, {b: c}]}\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml string) {
		file := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
			t.Skip()
		}
		cfg := DefaultConfig()
		if err := cfgload.Load(cfgload.Options{File: file}, &cfg); err != nil {
			return
		}
		_ = cfg.Validate()
	})
}
