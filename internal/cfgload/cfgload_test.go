package cfgload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

type inner struct {
	Listen  string        `mapstructure:"listen"`
	Timeout time.Duration `mapstructure:"timeout"`
	CIDRs   []string      `mapstructure:"cidrs"`
}

type testConfig struct {
	ID     string         `mapstructure:"id"`
	Level  string         `mapstructure:"log_level"`
	UDP    inner          `mapstructure:"udp"`
	Extra  map[string]any `mapstructure:"extra"`
	Ignore string         `mapstructure:"-"`
}

func defaults() testConfig {
	return testConfig{ID: "edge", Level: "info", UDP: inner{Listen: ":8035", Timeout: time.Second, CIDRs: []string{"127.0.0.0/8"}}}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadLayers(t *testing.T) {
	file := writeFile(t, "id: site-1\nudp:\n  listen: 127.0.0.1:9000\n  timeout: 3s\nextra:\n  anything: [1, 2]\n")
	t.Setenv("TST_UDP_CIDRS", "10.0.0.0/8,192.168.0.0/16")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("log-level", "info", "")
	fs.String("id", "", "")
	if err := fs.Parse([]string{"--log-level=debug"}); err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	err := Load(Options{File: file, EnvPrefix: "TST", Flags: map[string]*pflag.Flag{"log_level": fs.Lookup("log-level"), "id": fs.Lookup("id")}}, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := testConfig{
		ID: "site-1", Level: "debug",
		UDP:   inner{Listen: "127.0.0.1:9000", Timeout: 3 * time.Second, CIDRs: []string{"10.0.0.0/8", "192.168.0.0/16"}},
		Extra: map[string]any{"anything": []any{1, 2}},
	}
	if d := cmp.Diff(want, cfg); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
}

func TestLoadEnvOnlyKey(t *testing.T) {
	t.Setenv("TST_UDP_LISTEN", "[::1]:1")
	cfg := defaults()
	if err := Load(Options{EnvPrefix: "TST"}, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.UDP.Listen != "[::1]:1" {
		t.Errorf("listen = %q", cfg.UDP.Listen)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, file, env, want string
	}{
		{name: "unknown key", file: "udp:\n  lisen: x\n", want: `unknown key "udp.lisen" (did you mean "udp.listen"?)`},
		{name: "unknown top", file: "bogus: 1\n", want: `unknown key "bogus"`},
		{name: "branch scalar", file: "udp: 3\n", want: `key "udp": want a mapping`},
		{name: "bad duration", file: "udp:\n  timeout: soon\n", want: "timeout"},
		{name: "bad yaml", file: "udp: [\n", want: "config file"},
		{name: "unknown env", env: "TST_UDP_LISTN", want: "unknown environment variable TST_UDP_LISTN"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := Options{EnvPrefix: "TST", IgnoreEnv: []string{"TST_CONFIG"}}
			if c.file != "" {
				opts.File = writeFile(t, c.file)
			}
			if c.env != "" {
				t.Setenv(c.env, "x")
			}
			t.Setenv("TST_CONFIG", "ignored")
			cfg := defaults()
			err := Load(opts, &cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	got := Keys(&testConfig{})
	want := []string{"extra", "id", "log_level", "udp.cidrs", "udp.listen", "udp.timeout"}
	if d := cmp.Diff(want, got); d != "" {
		t.Error(d)
	}
}

func TestReadSecret(t *testing.T) {
	p := writeFile(t, "s3cret\n")
	s, err := ReadSecret("mqtt.password_file", p)
	if err != nil || s != "s3cret" {
		t.Fatalf("ReadSecret = %q, %v", s, err)
	}
	empty := writeFile(t, "\n")
	if _, err := ReadSecret("k", empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty secret: err = %v", err)
	}
	_, err = ReadSecret("k", filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.HasPrefix(err.Error(), "k: ") {
		t.Errorf("missing secret: err = %v", err)
	}
}
