package exec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

func msg() *target.Message {
	return &target.Message{
		ID: "ev1/route/exec", Topic: "logging/hare", Edge: "site1", Title: "login", Body: "jo logged in",
		Priority: 1, Payload: []byte(`{"user":"jo"}`), Fields: map[string]any{"user": "jo"},
		Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func newNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStdinModes(t *testing.T) {
	dir := t.TempDir()
	for mode, want := range map[string]string{
		target.ContentPayload: `{"user":"jo"}`,
		target.ContentBody:    "jo logged in",
		StdinNone:             "",
	} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(dir, mode)
			cfg := DefaultConfig()
			cfg.Stdin = mode
			cfg.Dir = dir
			// cat copies its stdin to the file named by the argument.
			cfg.Argv = []string{"/bin/sh", "-c", `cat > "$1"`, "sh", out}
			n := newNotifier(t, cfg)
			if retry, err := n.Notify(context.Background(), msg()); err != nil {
				t.Fatalf("retry=%v err=%v", retry, err)
			}
			if got := readFile(t, out); got != want {
				t.Errorf("stdin %q, want %q", got, want)
			}
		})
	}
}

func TestArgvTemplatesAreNotShellExpanded(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "args")
	cfg := DefaultConfig()
	// printf gets each rendered argument as one argv element; a payload
	// field full of shell syntax stays inert.
	cfg.Argv = []string{"/bin/sh", "-c", `printf '%s|' "$@" > "$0"`, out, "{{.Edge}}", "{{.Fields.user}}", "{{.Title}} x"}
	n := newNotifier(t, cfg)
	m := msg()
	m.Fields["user"] = "$(touch pwned); `id`"
	if _, err := n.Notify(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, out), "site1|$(touch pwned); `id`|login x|"; got != want {
		t.Errorf("args %q, want %q", got, want)
	}
	if _, err := os.Stat("pwned"); err == nil {
		t.Error("shell syntax in a field was executed")
	}
}

func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("t0ps3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WARREN_TEST_HUB_SECRET", "must-not-leak")
	cfg := DefaultConfig()
	cfg.Argv = []string{"/bin/sh", "-c", `env > "$1"`, "sh", out}
	cfg.Env = []string{"Mixed_Case=yes"}
	cfg.EnvFiles = []string{"API_TOKEN=" + secretFile}
	n := newNotifier(t, cfg)
	if _, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatal(err)
	}
	env := readFile(t, out)
	for _, want := range []string{
		"Mixed_Case=yes\n", "API_TOKEN=t0ps3cret\n", "WARREN_ID=ev1/route/exec\n", "WARREN_TOPIC=logging/hare\n",
		"WARREN_EDGE=site1\n", "WARREN_TITLE=login\n", "WARREN_PRIORITY=1\n", "WARREN_TIME=2026-05-01T12:00:00Z\n",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("environment lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "must-not-leak") {
		t.Error("hub environment leaked without inherit_env")
	}

	cfg.InheritEnv = true
	n = newNotifier(t, cfg)
	if _, err := n.Notify(context.Background(), msg()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, out), "WARREN_TEST_HUB_SECRET=must-not-leak") {
		t.Error("inherit_env did not pass the environment")
	}
}

func TestFailureRetry(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("t0ps3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Argv = []string{"/bin/sh", "-c", `echo "failed with $API_TOKEN" >&2; exit 3`}
	cfg.EnvFiles = []string{"API_TOKEN=" + secretFile}
	n := newNotifier(t, cfg)
	retry, err := n.Notify(context.Background(), msg())
	if err == nil || !retry {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "failed with") {
		t.Errorf("error %q lacks the exit status or output", err)
	}
	if strings.Contains(err.Error(), "t0ps3cret") {
		t.Errorf("secret in error: %q", err)
	}

	cfg.RetryOnFailure = false
	n = newNotifier(t, cfg)
	if retry, err := n.Notify(context.Background(), msg()); err == nil || retry {
		t.Errorf("retry_on_failure=false: retry=%v err=%v", retry, err)
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	cfg := DefaultConfig()
	cfg.Timeout = 300 * time.Millisecond
	// The shell starts a grandchild and waits; the timeout must kill both.
	cfg.Argv = []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$1"; wait`, "sh", pidFile}
	n := newNotifier(t, cfg)
	start := time.Now()
	retry, err := n.Notify(context.Background(), msg())
	if err == nil || !retry || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatalf("Notify returned only after %s", time.Since(start))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, pidFile)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestCallerCancelIsRetryable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Argv = []string{"sleep", "60"}
	cfg.RetryOnFailure = false
	n := newNotifier(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	retry, err := n.Notify(ctx, msg())
	if err == nil || !retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("retry=%v err=%v", retry, err)
	}
}

func TestStartFailureNotRetryable(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "noexec")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Argv = []string{script}
	n := newNotifier(t, cfg)
	// Removing the program after construction makes the start fail.
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	if retry, err := n.Notify(context.Background(), msg()); err == nil || retry {
		t.Errorf("retry=%v err=%v", retry, err)
	}
	// A missing template key is permanent too.
	cfg.Argv = []string{"true", "{{.Fields.nope}}"}
	n = newNotifier(t, cfg)
	if retry, err := n.Notify(context.Background(), msg()); err == nil || retry {
		t.Errorf("missing key: retry=%v err=%v", retry, err)
	}
}

func TestOutputBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Argv = []string{"/bin/sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; exit 1`}
	n := newNotifier(t, cfg)
	_, err := n.Notify(context.Background(), msg())
	if err == nil || len(err.Error()) > 600 {
		t.Fatalf("error length %d: %v", len(err.Error()), err)
	}
}

func TestNew(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Argv = []string{"warren-no-such-program"}
	if _, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), "argv[0]:") {
		t.Errorf("missing program: %v", err)
	}
	cfg.Argv = []string{"true"}
	cfg.EnvFiles = []string{"X=/nonexistent/secret"}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "env_files[0]") {
		t.Errorf("missing env file: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"no argv", func(c *Config) { c.Argv = nil }, "argv"},
		{"templated program", func(c *Config) { c.Argv = []string{"{{.Edge}}"} }, "argv[0]"},
		{"bad template", func(c *Config) { c.Argv = []string{"true", "{{.Edge"} }, "argv[1]"},
		{"nul", func(c *Config) { c.Argv = []string{"true", "a\x00"} }, "argv[1]"},
		{"bad stdin", func(c *Config) { c.Argv = []string{"true"}; c.Stdin = "file" }, "stdin"},
		{"bad env", func(c *Config) { c.Argv = []string{"true"}; c.Env = []string{"NOEQUALS"} }, "env[0]"},
		{"bad env name", func(c *Config) { c.Argv = []string{"true"}; c.Env = []string{"1X=y"} }, "env[0]"},
		{"env file without path", func(c *Config) { c.Argv = []string{"true"}; c.EnvFiles = []string{"X="} }, "env_files[0]"},
		{"zero timeout", func(c *Config) { c.Argv = []string{"true"}; c.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
		})
	}
}
