package edge

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warren-mesh/warren/internal/cfgload"
	"github.com/warren-mesh/warren/internal/event"
)

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if err := event.ValidID(c.ID); err != nil {
		t.Fatalf("default id %q: %v", c.ID, err)
	}
}

func TestSanitizeID(t *testing.T) {
	for in, want := range map[string]string{
		"vm":                    "vm",
		"Web01.example.COM":     "web01-example-com",
		"-x_y":                  "x-y",
		"":                      "edge",
		"___":                   "edge",
		strings.Repeat("a", 80): strings.Repeat("a", 63),
	} {
		if got := SanitizeID(in); got != want {
			t.Errorf("SanitizeID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"bad id", func(c *Config) { c.ID = "Bad_ID" }, "id:"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir:"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level:"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format:"},
		{"admin remote", func(c *Config) { c.Admin.Listen = "0.0.0.0:9135" }, "admin.listen:"},
		{"udp listen", func(c *Config) { c.UDP.Listen = "8035" }, "udp.listen:"},
		{"udp off", func(c *Config) { c.UDP.Listen = "" }, ""},
		{"max size small", func(c *Config) { c.UDP.MaxSize = 10 }, "udp.max_size:"},
		{"topic wildcard", func(c *Config) { c.UDP.Topic = "logging/#" }, "udp.topic:"},
		{"topic dollar", func(c *Config) { c.UDP.Topic = "$SYS/x" }, "udp.topic:"},
		{"cidr", func(c *Config) { c.UDP.AllowUnsigned = []string{"10.0.0.0/8", "nope"} }, "udp.allow_unsigned: [1]"},
		{"require signed without keys", func(c *Config) { c.UDP.RequireSigned = true }, "udp.require_signed:"},
		{"require signed with keys", func(c *Config) { c.UDP.RequireSigned = true; c.UDP.KeysFile = "/k" }, ""},
		{"window", func(c *Config) { c.UDP.TSWindow = 0 }, "udp.ts_window:"},
		{"rate negative", func(c *Config) { c.UDP.RateLimit.Rate = -1 }, "udp.rate_limit.rate:"},
		{"burst zero", func(c *Config) { c.UDP.RateLimit.Burst = 0 }, "udp.rate_limit.burst:"},
		{"rate off burst zero", func(c *Config) { c.UDP.RateLimit.Rate = 0; c.UDP.RateLimit.Burst = 0 }, ""},
		{"max sources", func(c *Config) { c.UDP.RateLimit.MaxSources = 0 }, "udp.rate_limit.max_sources:"},
		{"mqtt public without users", func(c *Config) { c.MQTT.Listen = "0.0.0.0:1883" }, "mqtt.listen:"},
		{"mqtt all addresses without users", func(c *Config) { c.MQTT.Listen = ":1883" }, "mqtt.listen:"},
		{"mqtt public with users", func(c *Config) {
			c.MQTT.Listen = "0.0.0.0:1883"
			c.MQTT.Users = []UserConfig{{Name: "dev", PasswordFile: "/p"}}
		}, ""},
		{"user without password", func(c *Config) { c.MQTT.Users = []UserConfig{{Name: "dev"}} }, "mqtt.users[0].password_file:"},
		{"user reserved", func(c *Config) { c.MQTT.Users = []UserConfig{{Name: internalUser, PasswordFile: "/p"}} }, "mqtt.users[0].name:"},
		{"user twice", func(c *Config) {
			c.MQTT.Users = []UserConfig{{Name: "a", PasswordFile: "/p"}, {Name: "a", PasswordFile: "/p"}}
		}, "mqtt.users[1].name:"},
		{"tls half", func(c *Config) { c.MQTT.TLS.CertFile = "/c" }, "mqtt.tls:"},
		{"nats public without users", func(c *Config) { c.NATS.Listen = "0.0.0.0:4222" }, "nats.listen:"},
		{"nats loopback", func(c *Config) { c.NATS.Listen = "127.0.0.1:4222" }, ""},
		{"filter dollar", func(c *Config) { c.Ingest.Filters = []string{"$SYS/#"} }, "ingest.filters[0]:"},
		{"filter ev", func(c *Config) { c.Ingest.Filters = []string{"ok/#", "ev/#"} }, "ingest.filters[1]:"},
		{"filter everything", func(c *Config) { c.Ingest.Filters = []string{"#"} }, "ingest.filters[0]:"},
		{"filter plus first", func(c *Config) { c.Ingest.Filters = []string{"+/hare"} }, "ingest.filters[0]:"},
		{"filter nonce", func(c *Config) { c.Ingest.Filters = []string{"nonce/x"} }, "ingest.filters[0]:"},
		{"filter bad", func(c *Config) { c.Ingest.Filters = []string{"a/#/b"} }, "ingest.filters[0]:"},
		{"queue", func(c *Config) { c.Ingest.QueueSize = 0 }, "ingest.queue_size:"},
		{"batch", func(c *Config) { c.Ingest.BatchSize = 0 }, "ingest.batch_size:"},
		{"publish timeout", func(c *Config) { c.Ingest.PublishTimeout = time.Millisecond }, "ingest.publish_timeout:"},
		{"max bytes", func(c *Config) { c.Store.MaxBytes = -1 }, "store.max_bytes:"},
		{"max msgs", func(c *Config) { c.Store.MaxMsgs = -5 }, "store.max_msgs:"},
		{"max age tiny", func(c *Config) { c.Store.MaxAge = time.Second }, "store.max_age:"},
		{"hub url", func(c *Config) { c.Hub.URL = "http://hub:4222" }, "hub.url:"},
		{"hub url creds", func(c *Config) { c.Hub.URL = "tls://u:p@hub:4222" }, "hub.url:"},
		{"hub url without certs", func(c *Config) { c.Hub.URL = "tls://hub.example.net:4222" }, "hub.ca_file:"},
		{"hub url ok", func(c *Config) {
			c.Hub.URL = "tls://hub.example.net:4222"
			c.Hub.CAFile, c.Hub.CertFile, c.Hub.KeyFile = "/ca", "/crt", "/key"
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.ID = "e1"
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := DefaultConfig()
	c.ID = ""
	c.UDP.MaxSize = 0
	c.Store.MaxMsgs = -1
	err := c.Validate()
	for _, k := range []string{"id:", "udp.max_size:", "store.max_msgs:"} {
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("error %v does not name %s", err, k)
		}
	}
}

// TestLoadThroughCfgload is the path cmd/edge takes: YAML file, EDGE_* env,
// strict keys.
func TestLoadThroughCfgload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "edge.yaml")
	yaml := `
id: site-a
data_dir: /srv/edge
udp:
  listen: "0.0.0.0:9000"
  allow_unsigned: ["10.0.0.0/8"]
  ts_window: 10s
  rate_limit:
    rate: 5
mqtt:
  listen: "0.0.0.0:1883"
  users:
    - name: dev
      password_file: /etc/warren/dev.pw
store:
  max_age: 24h
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EDGE_INGEST_FILTERS", "sensors/#,logging/#")
	t.Setenv("EDGE_STORE_MAX_MSGS", "1000")
	c := DefaultConfig()
	if err := cfgload.Load(cfgload.Options{File: file, EnvPrefix: "EDGE"}, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.ID = "site-a"
	want.DataDir = "/srv/edge"
	want.UDP.Listen = "0.0.0.0:9000"
	want.UDP.AllowUnsigned = []string{"10.0.0.0/8"}
	want.UDP.TSWindow = 10 * time.Second
	want.UDP.RateLimit.Rate = 5
	want.MQTT.Listen = "0.0.0.0:1883"
	want.MQTT.Users = []UserConfig{{Name: "dev", PasswordFile: "/etc/warren/dev.pw"}}
	want.Store.MaxAge = 24 * time.Hour
	want.Store.MaxMsgs = 1000
	want.Ingest.Filters = []string{"sensors/#", "logging/#"}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("loaded config (-want +got):\n%s", d)
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ yaml, want string }{
		"top":       {"idd: x\n", `"idd"`},
		"nested":    {"udp:\n  lissen: x\n", `"udp.lissen"`},
		"user item": {"mqtt:\n  users:\n    - name: a\n      password: x\n", "password"},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name+".yaml")
			if err := os.WriteFile(file, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c := DefaultConfig()
			err := cfgload.Load(cfgload.Options{File: file, EnvPrefix: "EDGE"}, &c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("EDGE_UDP_LISENT", "x")
		c := DefaultConfig()
		err := cfgload.Load(cfgload.Options{EnvPrefix: "EDGE"}, &c)
		if err == nil || !strings.Contains(err.Error(), "EDGE_UDP_LISENT") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConfigKeysDocumented(t *testing.T) {
	c := DefaultConfig()
	keys := cfgload.Keys(&c)
	for _, k := range []string{"id", "data_dir", "udp.rate_limit.burst", "mqtt.users", "store.max_age", "hub.server_name", "admin.listen"} {
		if !slices.Contains(keys, k) {
			t.Errorf("key %s missing from %v", k, keys)
		}
	}
}
