package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkHareExec measures what a login pays for hare: fork+exec of the
// built binary until it exits, with the datagram received on a loopback
// listener (checked every iteration). Sub-benchmarks:
//
//	static/v0      CGO_ENABLED=0 build, unsigned (-key none)
//	static/v1      CGO_ENABLED=0 build, signed with a key file
//	static/silent  CGO_ENABLED=0 build, PAM_TYPE=close_session (exits early)
//	cgo/v0         default cgo build (dynamically linked), unsigned
//	empty-go       an empty Go program, for scale
//
// Run: go test -run '^$' -bench HareExec ./cmd/hare
func BenchmarkHareExec(b *testing.B) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("go command not found")
	}
	dir := b.TempDir()
	build := func(b *testing.B, out string, cgo bool, pkg string) string {
		b.Helper()
		bin := filepath.Join(dir, out)
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "1", false: "0"}[cgo])
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Skipf("build %s: %v\n%s", out, err, o)
		}
		return bin
	}
	key := filepath.Join(dir, "hare.key")
	if err := os.WriteFile(key, []byte("web1 "+strings.Repeat("5a", 32)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	env := []string{"PAM_TYPE=open_session", "PAM_USER=jjolie", "PAM_SERVICE=sshd", "PAM_RHOST=198.51.100.7", "PAM_TTY=ssh"}

	// Each iteration runs the program execSamples times and reports the
	// median and the fastest wall time (one exec is too noisy a figure).
	const execSamples = 50
	loop := func(b *testing.B, bin string, env []string, expect bool, args ...string) {
		buf := make([]byte, 2048)
		var samples []time.Duration
		b.ResetTimer()
		for b.Loop() {
			for range execSamples {
				t0 := time.Now()
				cmd := exec.Command(bin, args...)
				cmd.Env = env
				if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
					b.Fatalf("%s: %v %q", bin, err, out)
				}
				samples = append(samples, time.Since(t0))
				if !expect {
					continue
				}
				if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.ReadFromUDP(buf); err != nil {
					b.Fatalf("no datagram: %v", err)
				}
			}
		}
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(samples[0])/1e6, "min-ms")
	}

	var static string
	b.Run("static/v0", func(b *testing.B) {
		static = build(b, "hare-static", false, ".")
		loop(b, static, env, true, "-key", "none", "-port", port, "127.0.0.1")
	})
	b.Run("static/v1", func(b *testing.B) {
		if static == "" {
			static = build(b, "hare-static", false, ".")
		}
		loop(b, static, env, true, "-key", key, "-port", port, "127.0.0.1")
	})
	b.Run("static/silent", func(b *testing.B) {
		if static == "" {
			static = build(b, "hare-static", false, ".")
		}
		loop(b, static, []string{"PAM_TYPE=close_session"}, false, "-key", "none", "-port", port, "127.0.0.1")
	})
	b.Run("cgo/v0", func(b *testing.B) {
		bin := build(b, "hare-cgo", true, ".")
		loop(b, bin, env, true, "-key", "none", "-port", port, "127.0.0.1")
	})
	b.Run("empty-go", func(b *testing.B) {
		src := filepath.Join(dir, "empty.go")
		if err := os.WriteFile(src, []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		bin := build(b, "empty", false, src)
		loop(b, bin, nil, false)
	})
}
