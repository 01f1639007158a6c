package discovery

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeName = "e1"
		c.KeyFiles = []string{"/etc/warren/gossip.key"}
		return c
	}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; empty: valid
	}{
		{"defaults plus key", func(*Config) {}, ""},
		{"insecure without key", func(c *Config) { c.KeyFiles = nil; c.Insecure = true }, ""},
		{"no key", func(c *Config) { c.KeyFiles = nil }, "key_files: no gossip key"},
		{"empty key path", func(c *Config) { c.KeyFiles = []string{""} }, "key_files[0]: empty path"},
		{"no name", func(c *Config) { c.NodeName = "" }, "node_name: missing"},
		{"name with space", func(c *Config) { c.NodeName = "a b" }, "node_name:"},
		{"bind addr", func(c *Config) { c.BindAddr = "localhost" }, `bind_addr: "localhost" is not an IP`},
		{"no bind addr", func(c *Config) { c.BindAddr = "" }, "bind_addr: missing"},
		{"bind port", func(c *Config) { c.BindPort = 70000 }, "bind_port: 70000 out of range"},
		{"advertise addr", func(c *Config) { c.AdvertiseAddr = "x" }, "advertise_addr:"},
		{"advertise port", func(c *Config) { c.AdvertisePort = -1 }, "advertise_port:"},
		{"seed with space", func(c *Config) { c.Seeds = []string{"hub 7946"} }, "seeds[0]:"},
		{"empty seed", func(c *Config) { c.Seeds = []string{"hub:7946", ""} }, "seeds[1]:"},
		{"no label", func(c *Config) { c.Label = "" }, "label: missing"},
		{"long label", func(c *Config) { c.Label = strings.Repeat("l", 256) }, "label: longer than 255"},
		{"profile", func(c *Config) { c.Profile = "fast" }, `profile: "fast" unknown`},
		{"rejoin", func(c *Config) { c.RejoinInterval = 0 }, "rejoin_interval:"},
		{"meta interval", func(c *Config) { c.MetaUpdateInterval = -1 }, "meta_update_interval:"},
		{"meta interval zero ok", func(c *Config) { c.MetaUpdateInterval = 0 }, ""},
		{"event buffer", func(c *Config) { c.EventBuffer = 0 }, "event_buffer:"},
		{"forget", func(c *Config) { c.ForgetAfter = 0 }, "forget_after:"},
		{"negative tuning", func(c *Config) { c.Tuning.ProbeInterval = -time.Second }, "tuning.probe_interval:"},
		{"negative suspicion", func(c *Config) { c.Tuning.SuspicionMult = -1 }, "tuning.suspicion_mult:"},
		{"timeout not below interval", func(c *Config) { c.Tuning.ProbeTimeout = 5 * time.Second }, "tuning.probe_timeout: 5s must be shorter than probe_interval 5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestNoKeyRefusesToStart(t *testing.T) {
	c := DefaultConfig()
	c.NodeName = "e1"
	_, err := New(c, Meta{Role: RoleEdge}, nil)
	if !errors.Is(err, ErrNoKey) {
		t.Fatalf("New without key files: err = %v, want ErrNoKey", err)
	}
}

func TestNewRejectsHubWithoutURL(t *testing.T) {
	c := DefaultConfig()
	c.NodeName = "hub"
	c.Insecure = true
	if _, err := New(c, Meta{Role: RoleHub}, nil); err == nil || !strings.Contains(err.Error(), "nats_urls") {
		t.Fatalf("err = %v, want a nats_urls error", err)
	}
}

func TestProfilesAndTuning(t *testing.T) {
	c := DefaultConfig()
	c.NodeName = "n"
	c.Insecure = true
	wan := c.memberlistConfig()
	if wan.ProbeInterval != 5*time.Second || wan.PushPullInterval != 60*time.Second || wan.DeadNodeReclaimTime != 30*time.Second {
		t.Errorf("wan profile: probe %v push/pull %v reclaim %v", wan.ProbeInterval, wan.PushPullInterval, wan.DeadNodeReclaimTime)
	}
	if !wan.GossipVerifyIncoming || !wan.GossipVerifyOutgoing {
		t.Error("gossip verification must stay on")
	}
	c.Profile = ProfileLocal
	c.Tuning = Tuning{GossipInterval: 5 * time.Millisecond, ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 25 * time.Millisecond}
	local := c.memberlistConfig()
	if local.GossipInterval != 5*time.Millisecond || local.ProbeInterval != 50*time.Millisecond || local.ProbeTimeout != 25*time.Millisecond {
		t.Errorf("tuning not applied: %v %v %v", local.GossipInterval, local.ProbeInterval, local.ProbeTimeout)
	}
	if local.TCPTimeout != time.Second || local.DeadNodeReclaimTime != 2*time.Second {
		t.Errorf("profile values lost: tcp %v reclaim %v", local.TCPTimeout, local.DeadNodeReclaimTime)
	}
	if local.Label != "warren" || local.Name != "n" {
		t.Errorf("label %q name %q", local.Label, local.Name)
	}
}
