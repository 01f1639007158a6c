package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"queue", func(c *Config) { c.QueueSize = 0 }, "audit.queue_size:"},
		{"emit queue", func(c *Config) { c.EmitQueue = -1 }, "audit.emit_queue:"},
		{"poll", func(c *Config) { c.PollInterval = time.Millisecond }, "audit.poll_interval:"},
		{"traffic", func(c *Config) { c.TrafficInterval = -time.Second }, "audit.traffic_interval:"},
		{"trusted", func(c *Config) { c.Trusted = []string{"10.0.0.0/33"} }, "audit.trusted[0]:"},
		{"never block", func(c *Config) { c.NeverBlock = []string{"x"} }, "audit.never_block[0]:"},
		{"min versions", func(c *Config) { c.MinVersions = []string{"edge"} }, "audit.min_versions:"},
		{"window", func(c *Config) { c.AddrBruteForce.Window = 0 }, "audit.addr_brute_force.window:"},
		{"block", func(c *Config) { c.UserBruteForce.Block = -time.Second }, "audit.user_brute_force.block:"},
		{"threshold", func(c *Config) { c.AddrBruteForce.Threshold = -1 }, "audit.addr_brute_force.threshold:"},
		{"quiet", func(c *Config) { c.Quiet = []string{"connect", "nonsense"} }, "audit.quiet[1]:"},
		{"tap", func(c *Config) { c.TapSubjects = []string{"a b"} }, "audit.tap_subjects[0]:"},
		{"label cap", func(c *Config) { c.LabelCap = 0 }, "audit.label_cap:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, c.want)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.AddrBruteForce = BruteForce{} // threshold 0: off, window not needed
	cfg.TrafficInterval = 0
	cfg.Trusted = []string{"192.0.2.7", "2001:db8::/32"}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid variants refused: %v", err)
	}
	if _, err := New(Config{}, Options{}); err == nil {
		t.Error("New accepted the zero config")
	}
}

func TestCappedLabels(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"client", "direction"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(vec)
	c := newCapped(vec, "client", 3, time.Hour, clock)
	for _, n := range []string{"a", "b", "c", "d", "e", "a"} {
		c.add(n, DirPublish, 1)
	}
	if c.size() != 3 {
		t.Errorf("%d names admitted, want 3", c.size())
	}
	if v := metricValue(t, reg, "x_total", map[string]string{"client": OtherLabel}); v != 2 {
		t.Errorf("other = %v, want 2 (d and e)", v)
	}
	if v := metricValue(t, reg, "x_total", map[string]string{"client": "a"}); v != 2 {
		t.Errorf("a = %v, want 2", v)
	}
	// b and c go idle; a stays busy. Room is made for f by dropping the idle ones.
	now = now.Add(2 * time.Hour)
	c.add("a", DirPublish, 1)
	c.add("f", DirPublish, 1)
	if v := metricValue(t, reg, "x_total", map[string]string{"client": "f"}); v != 1 {
		t.Errorf("f = %v, want its own series after idle eviction", v)
	}
	if v := metricValue(t, reg, "x_total", map[string]string{"client": "b"}); v != 0 {
		t.Errorf("idle b still exported: %v", v)
	}
	mfs, _ := reg.Gather()
	if n := len(mfs[0].GetMetric()); n > 4 {
		t.Errorf("%d series, want at most cap+1", n)
	}
}

func TestTrafficTop(t *testing.T) {
	acc := newTrafficAcc()
	for i := 0; i < 30; i++ {
		acc.add(true, "c"+itoa(i), uint64(i), 0)
	}
	acc.add(false, "t", 0, 4)
	clients, topics := acc.take(5)
	if len(clients) != 6 || clients[0].Name != "c29" || clients[5].Name != OtherLabel {
		t.Fatalf("clients = %+v", clients)
	}
	var sum uint64
	for _, c := range clients {
		sum += c.In
	}
	if sum != 435 {
		t.Errorf("sum %d, want 435 (nothing lost in other)", sum)
	}
	if len(topics) != 1 || topics[0].Out != 4 {
		t.Errorf("topics = %+v", topics)
	}
	if c, p := acc.take(5); c != nil || p != nil {
		t.Error("take did not start a new interval")
	}
}
