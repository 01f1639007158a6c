package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-mesh/warren/hub/notify/target"
)

func msg(edge, body string) *target.Message {
	return &target.Message{
		ID: "e/r/t", Topic: "logging/hare", Edge: edge, Title: "login", Body: body,
		Payload: []byte(`{"user":"jo"}`), Fields: map[string]any{"user": "jo"}, Time: time.Unix(1795384588, 0),
	}
}

func newNotifier(t *testing.T, mut func(*Config)) *Notifier {
	t.Helper()
	cfg := DefaultConfig()
	mut(&cfg)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func notify(t *testing.T, n *Notifier, m *target.Message) {
	t.Helper()
	if retry, err := n.Notify(context.Background(), m); err != nil {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAppend(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.log")
	n := newNotifier(t, func(c *Config) { c.Path = p })
	notify(t, n, msg("a", "first"))
	notify(t, n, msg("a", "second"))
	if got, want := readFile(t, p), "first\nsecond\n"; got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
}

func TestNoNewline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.log")
	n := newNotifier(t, func(c *Config) { c.Path = p; c.Newline = false })
	notify(t, n, msg("a", "x"))
	notify(t, n, msg("a", "y"))
	if got := readFile(t, p); got != "xy" {
		t.Errorf("content %q, want %q", got, "xy")
	}
}

func TestOverwrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "last")
	n := newNotifier(t, func(c *Config) { c.Path = p; c.Append = false; c.Mode = "0600" })
	notify(t, n, msg("a", "first, longer"))
	notify(t, n, msg("a", "second"))
	if got := readFile(t, p); got != "second\n" {
		t.Errorf("content %q", got)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestTemplatedPathAndDirs(t *testing.T) {
	dir := t.TempDir()
	n := newNotifier(t, func(c *Config) {
		c.Path = filepath.Join(dir, "{{.Edge}}", "{{.Fields.user}}.log")
		c.DirMode = "0700"
	})
	notify(t, n, msg("site1", "one"))
	notify(t, n, msg("site2", "two"))
	if got := readFile(t, filepath.Join(dir, "site1", "jo.log")); got != "one\n" {
		t.Errorf("site1: %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "site2", "jo.log")); got != "two\n" {
		t.Errorf("site2: %q", got)
	}
	st, _ := os.Stat(filepath.Join(dir, "site1"))
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode().Perm())
	}
}

func TestContentModes(t *testing.T) {
	dir := t.TempDir()
	for mode, want := range map[string]string{
		target.ContentPayload: `{"user":"jo"}` + "\n",
		target.ContentJSON:    `"message":"hello"`,
	} {
		p := filepath.Join(dir, mode)
		n := newNotifier(t, func(c *Config) { c.Path = p; c.Content = mode })
		notify(t, n, msg("a", "hello"))
		if got := readFile(t, p); !strings.Contains(got, want) {
			t.Errorf("%s: %q does not contain %q", mode, got, want)
		}
	}
}

func TestRefusedPaths(t *testing.T) {
	dir := t.TempDir()
	n := newNotifier(t, func(c *Config) { c.Path = filepath.Join(dir, "{{.Edge}}.log") })
	for _, edge := range []string{"../escape", "x/../../escape", "a\x00b"} {
		retry, err := n.Notify(context.Background(), msg(edge, "x"))
		if err == nil || retry {
			t.Errorf("edge %q: retry=%v err=%v", edge, retry, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.log")); err == nil {
		t.Error("wrote outside the directory")
	}
	// A missing template key is a permanent error.
	n = newNotifier(t, func(c *Config) { c.Path = filepath.Join(dir, "{{.Fields.nope}}") })
	if retry, err := n.Notify(context.Background(), msg("a", "x")); err == nil || retry {
		t.Errorf("missing key: retry=%v err=%v", retry, err)
	}
}

func TestIOErrors(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: permanent.
	if err := os.Mkdir(filepath.Join(dir, "isdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := newNotifier(t, func(c *Config) { c.Path = filepath.Join(dir, "isdir") })
	if retry, err := n.Notify(context.Background(), msg("a", "x")); err == nil || retry {
		t.Errorf("directory: retry=%v err=%v", retry, err)
	}
	// Missing parent without create_dirs: retryable (someone may create it).
	n = newNotifier(t, func(c *Config) { c.Path = filepath.Join(dir, "nodir", "f"); c.CreateDirs = false })
	if retry, err := n.Notify(context.Background(), msg("a", "x")); err == nil || !retry {
		t.Errorf("missing dir: retry=%v err=%v", retry, err)
	}
	// A cancelled context does not write.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := filepath.Join(dir, "never")
	n = newNotifier(t, func(c *Config) { c.Path = p })
	if retry, err := n.Notify(ctx, msg("a", "x")); err == nil || !retry {
		t.Errorf("cancelled: retry=%v err=%v", retry, err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("cancelled notify wrote")
	}
}

func TestConcurrentAppend(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.log")
	n := newNotifier(t, func(c *Config) { c.Path = p })
	var wg sync.WaitGroup
	const workers, each = 4, 50
	for w := range workers {
		wg.Go(func() {
			for range each {
				if _, err := n.Notify(context.Background(), msg("a", strings.Repeat(string(rune('a'+w)), 100))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(readFile(t, p), "\n"), "\n")
	if len(lines) != workers*each {
		t.Fatalf("%d lines, want %d", len(lines), workers*each)
	}
	for _, l := range lines {
		if len(l) != 100 || strings.Count(l, l[:1]) != 100 {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		key  string
	}{
		{"missing path", func(c *Config) {}, "path"},
		{"bad template", func(c *Config) { c.Path = "/x/{{.Edge" }, "path"},
		{"dotdot", func(c *Config) { c.Path = "/var/../etc/x" }, "path"},
		{"bad mode", func(c *Config) { c.Path = "/x"; c.Mode = "rw" }, "mode"},
		{"mode too big", func(c *Config) { c.Path = "/x"; c.Mode = "7777" }, "mode"},
		{"bad dir mode", func(c *Config) { c.Path = "/x"; c.DirMode = "9" }, "dir_mode"},
		{"unquoted yaml 0640 decoded as 416", func(c *Config) { c.Path = "/x"; c.Mode = "416" }, "mode"},
		{"bare zero", func(c *Config) { c.Path = "/x"; c.Mode = "0" + "o" }, "mode"},
		{"bad content", func(c *Config) { c.Path = "/x"; c.Content = "xml" }, "content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("Validate() = %v, want an error about %s", err, tt.key)
			}
			if _, err := New(c); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
	c := DefaultConfig()
	c.Path = "/var/log/warren/{{.Edge}}.log"
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	for _, m := range []string{"0600", "0o644", "00"} {
		c.Mode = m
		if err := c.Validate(); err != nil {
			t.Errorf("mode %q: %v", m, err)
		}
	}
}

// BenchmarkAppend measures appended notifications per second (open, write,
// close each time, as the target does, so logrotate keeps working).
func BenchmarkAppend(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(b.TempDir(), "{{.Edge}}.log")
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	m := msg("site1", "login jo@vm from 198.51.100.7 via sshd")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.Notify(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}

// BenchmarkOverwrite measures atomic replacements per second.
func BenchmarkOverwrite(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(b.TempDir(), "last")
	cfg.Append = false
	n, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	m := msg("site1", "login jo@vm")
	for b.Loop() {
		if _, err := n.Notify(context.Background(), m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifications/s")
}

// FuzzCheckPath checks the property the path check exists for: a rendered
// value that passes cannot move the file out of its configured directory.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"site1", "../x", "a/../../b", "a\x00", "..", "./.", "a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		p := "/var/log/warren/" + field + ".log"
		if checkPath(p) != nil {
			return
		}
		if clean := filepath.Clean(p); !strings.HasPrefix(clean, "/var/log/warren/") {
			t.Errorf("%q passes but resolves to %q", p, clean)
		}
	})
}

// openFDs counts this process's open descriptors (Linux /proc).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// TestAppendFollowsRotation: the target keeps its file open between
// notifications, yet a file renamed away (logrotate's create mode) or
// deleted is reopened by name, so every notification lands in the file the
// path names at that moment.
func TestAppendFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.log")
	n := newNotifier(t, func(c *Config) { c.Path = p })
	defer n.Close()
	notify(t, n, msg("a", "one"))
	if err := os.Rename(p, p+".1"); err != nil {
		t.Fatal(err)
	}
	notify(t, n, msg("a", "two"))
	if got := readFile(t, p+".1"); got != "one\n" {
		t.Errorf("rotated file %q, want only the line before the rotation", got)
	}
	if got := readFile(t, p); got != "two\n" {
		t.Errorf("new file %q, want the line after the rotation", got)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	notify(t, n, msg("a", "three"))
	if got := readFile(t, p); got != "three\n" {
		t.Errorf("after a delete %q, want the file made again", got)
	}
	// copytruncate: the same file, emptied; O_APPEND writes at its new end.
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	notify(t, n, msg("a", "four"))
	if got := readFile(t, p); got != "four\n" {
		t.Errorf("after a truncate %q", got)
	}
}

// TestAppendKeepsFewDescriptors: many templated paths keep at most maxOpen
// descriptors open; Close releases them and later notifications still
// land.
func TestAppendKeepsFewDescriptors(t *testing.T) {
	dir := t.TempDir()
	n := newNotifier(t, func(c *Config) { c.Path = filepath.Join(dir, "{{.Edge}}.log") })
	// The runtime's poller opens its descriptors with the first file.
	if err := os.WriteFile(filepath.Join(dir, "warm-up"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	for i := range 3 * maxOpen {
		notify(t, n, msg(fmt.Sprint("e", i), "x"))
		notify(t, n, msg(fmt.Sprint("e", i), "y"))
	}
	if kept := openFDs(t) - before; kept > maxOpen {
		t.Errorf("%d descriptors kept open for %d paths, want at most %d", kept, 3*maxOpen, maxOpen)
	}
	for i := range 3 * maxOpen {
		if got := readFile(t, filepath.Join(dir, fmt.Sprint("e", i)+".log")); got != "x\ny\n" {
			t.Fatalf("e%d.log = %q", i, got)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if kept := openFDs(t) - before; kept > 0 {
		t.Errorf("%d descriptors still open after Close", kept)
	}
	notify(t, n, msg("e0", "z"))
	if got := readFile(t, filepath.Join(dir, "e0.log")); got != "x\ny\nz\n" {
		t.Errorf("append after Close: %q", got)
	}
	if kept := openFDs(t) - before; kept > 0 {
		t.Errorf("%d descriptors open after an append following Close", kept)
	}
}
