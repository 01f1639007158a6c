package bridge

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	withURL := func(c *Config) {
		c.URL = "tls://hub.example:4222"
		c.CAFile, c.CertFile, c.KeyFile = "ca.crt", "edge.crt", "edge.key"
	}
	cases := []struct {
		name string
		mod  func(c *Config)
		want []string // substrings the error must contain; none: valid
	}{
		{name: "static url with files", mod: withURL},
		{name: "bare host:port", mod: func(c *Config) { withURL(c); c.URL = "10.0.0.1:4222" }},
		{name: "min tls 1.2", mod: func(c *Config) { c.MinTLS = "1.2" }},
		{name: "url without files", mod: func(c *Config) { c.URL = "tls://hub.example:4222" },
			want: []string{"hub.ca_file: missing", "hub.cert_file: missing", "hub.key_file: missing"}},
		{name: "bad scheme", mod: func(c *Config) { withURL(c); c.URL = "http://hub.example" }, want: []string{"hub.url", "scheme"}},
		{name: "credentials in url", mod: func(c *Config) { withURL(c); c.URL = "tls://u:p@hub.example" }, want: []string{"hub.url", "credentials"}},
		{name: "bad port", mod: func(c *Config) { withURL(c); c.URL = "tls://hub.example:99999" }, want: []string{"hub.url", "port"}},
		{name: "path in url", mod: func(c *Config) { withURL(c); c.URL = "tls://hub.example:4222/x" }, want: []string{"hub.url"}},
		{name: "empty server name", mod: func(c *Config) { c.ServerName = "" }, want: []string{"hub.server_name: missing"}},
		{name: "bad server name", mod: func(c *Config) { c.ServerName = "hub warren" }, want: []string{"hub.server_name"}},
		{name: "tls 1.1", mod: func(c *Config) { c.MinTLS = "1.1" }, want: []string{"hub.min_tls"}},
		{name: "batch zero", mod: func(c *Config) { c.Batch = 0 }, want: []string{"hub.batch"}},
		{name: "batch huge", mod: func(c *Config) { c.Batch = 1 << 20 }, want: []string{"hub.batch"}},
		{name: "inflight zero", mod: func(c *Config) { c.Inflight = 0 }, want: []string{"hub.inflight"}},
		{name: "negative durations", mod: func(c *Config) {
			c.BackoffMin, c.Heartbeat, c.DialTimeout = -1, 0, -time.Second
		}, want: []string{"hub.backoff_min", "hub.heartbeat", "hub.dial_timeout"}},
		{name: "backoff max below min", mod: func(c *Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }, want: []string{"hub.backoff_max"}},
		{name: "ack wait not above publish timeout", mod: func(c *Config) { c.AckWait, c.PublishTimeout = time.Second, time.Second }, want: []string{"hub.ack_wait"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors about %v", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestParseAddr(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "tls://hub.example:4222", want: "hub.example:4222"},
		{in: "nats://hub.example", want: "hub.example:4222"},
		{in: "tls://hub.example/", want: "hub.example:4222"},
		{in: "hub.example:5222", want: "hub.example:5222"},
		{in: "hub.example", want: "hub.example:4222"},
		{in: "10.1.2.3", want: "10.1.2.3:4222"},
		{in: "[::1]:4222", want: "[::1]:4222"},
		{in: "[::1]", want: "[::1]:4222"},
		{in: "tls://[2001:db8::1]:7422", want: "[2001:db8::1]:7422"},
		{in: " tls://hub.example:4222 ", want: "hub.example:4222"},
		{in: "", bad: true},
		{in: "tls://", bad: true},
		{in: "tls://:4222", bad: true},
		{in: "ws://hub.example", bad: true},
		{in: "tls://hub.example:0", bad: true},
		{in: "tls://hub.example:x", bad: true},
		{in: "hub.example:70000", bad: true},
		{in: "tls://user@hub.example", bad: true},
		{in: "tls://hub.example?x=1", bad: true},
		{in: "2001:db8::1:4222:x", bad: true},
		{in: "a b:4222", bad: true},
	}
	for _, c := range cases {
		got, err := parseAddr(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("parseAddr(%q) = %q, want error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseAddr(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzParseAddr: no input crashes parseAddr, and what it accepts is a
// host:port it accepts again unchanged.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"tls://hub.example:4222", "nats://[::1]", "h:1", "[::1]", "tls://u@h", "::1", "%", "tls://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAddr(s)
		if err != nil {
			return
		}
		b, err := parseAddr(a)
		if err != nil || a != b {
			t.Fatalf("parseAddr(%q) = %q, but parseAddr(%q) = %q, %v", s, a, a, b, err)
		}
	})
}

func TestTargets(t *testing.T) {
	got := targets([]string{"tls://a:1", "garbage://x", "a:1", "b"}, "c:4222")
	want := []string{"a:1", "b:4222", "c:4222"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("targets = %v, want %v", got, want)
	}
	if got := targets(nil, "c:4222"); len(got) != 1 || got[0] != "c:4222" {
		t.Errorf("targets(nil) = %v", got)
	}
	if got := targets([]string{"c:4222"}, "c:4222"); len(got) != 1 {
		t.Errorf("duplicate static address: %v", got)
	}
	if got := targets(nil, ""); len(got) != 0 {
		t.Errorf("no address: %v", got)
	}
}

func TestBackoff(t *testing.T) {
	lo := func(n int64) int64 { return 0 }
	hi := func(n int64) int64 { return n - 1 }
	min, max := 100*time.Millisecond, 2*time.Second
	cases := []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, time.Second, 2 * time.Second}, // capped: 3.2 s > max
		{64, time.Second, 2 * time.Second},
		{1000, time.Second, 2 * time.Second},
	}
	for _, c := range cases {
		if got := backoff(c.attempt, min, max, lo); got != c.lo {
			t.Errorf("backoff(%d) low = %s, want %s", c.attempt, got, c.lo)
		}
		if got := backoff(c.attempt, min, max, hi); got != c.hi {
			t.Errorf("backoff(%d) high = %s, want %s", c.attempt, got, c.hi)
		}
	}
	for i := 0; i < 1000; i++ {
		if d := backoff(i%70, min, max, jitter); d < min/2 || d > max {
			t.Fatalf("backoff(%d) = %s out of [%s, %s]", i%70, d, min/2, max)
		}
	}
}
