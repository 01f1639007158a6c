package integration

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-mesh/warren/internal/admin"
)

// The harness: binaries built once per run, one temporary directory per
// test, daemons started from config files with their output captured, and
// polling with deadlines instead of sleeps.

// Environment knobs (for people running the tests by hand):
//
//	WARREN_IT_BINDIR=/path  use hare, edge and hub from this directory
//	                        instead of building them (e.g. release builds)
//	WARREN_IT_KEEP=1        keep each test's directory (configs, stores, logs)
const (
	envBinDir = "WARREN_IT_BINDIR"
	envKeep   = "WARREN_IT_KEEP"
)

// commands are the programs the tests drive.
var commands = []string{"hare", "edge", "hub"}

// binaries is the outcome of building the commands, done at most once.
var binaries struct {
	once    sync.Once
	dir     string            // temporary build directory, removed by TestMain
	path    map[string]string // command -> binary
	missing map[string]bool   // cmd/<name> has no Go source yet
	failed  map[string]string // command -> build output
	setup   error             // the build could not even be attempted
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// binary returns the path of a built command. It skips the test under
// -short or while cmd/<name> does not exist yet, and fails it when the
// command does not build.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("real-process test: skipped under -short")
	}
	binaries.once.Do(buildBinaries)
	if binaries.setup != nil {
		tb.Fatalf("building the commands: %v", binaries.setup)
	}
	if binaries.missing[name] {
		tb.Skipf("waiting for cmd/%s: the command does not exist in this tree yet", name)
	}
	if out, ok := binaries.failed[name]; ok {
		tb.Fatalf("cmd/%s does not build:\n%s", name, out)
	}
	return binaries.path[name]
}

// buildBinaries builds every command that exists with CGO_ENABLED=0 into a
// temporary directory, or takes them from $WARREN_IT_BINDIR.
func buildBinaries() {
	binaries.path = map[string]string{}
	binaries.missing = map[string]bool{}
	binaries.failed = map[string]string{}
	if dir := os.Getenv(envBinDir); dir != "" {
		for _, c := range commands {
			p := filepath.Join(dir, c)
			if _, err := os.Stat(p); err != nil {
				binaries.missing[c] = true
				continue
			}
			binaries.path[c] = p
		}
		return
	}
	root, err := moduleRoot()
	if err != nil {
		binaries.setup = err
		return
	}
	binaries.dir, err = os.MkdirTemp("", "warren-it-bin-")
	if err != nil {
		binaries.setup = err
		return
	}
	var pkgs []string
	for _, c := range commands {
		if !hasGoSource(filepath.Join(root, "cmd", c)) {
			binaries.missing[c] = true
			continue
		}
		pkgs = append(pkgs, "./cmd/"+c)
	}
	build := func(pkgs ...string) (string, error) {
		args := append([]string{"build", "-trimpath", "-o", binaries.dir + string(filepath.Separator),
			"-ldflags", "-X github.com/warren-mesh/warren/internal/version.Version=integration-test"}, pkgs...)
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if len(pkgs) > 0 {
		if _, err := build(pkgs...); err != nil {
			// Build one by one to know which command is broken.
			for _, p := range pkgs {
				if out, err := build(p); err != nil {
					binaries.failed[filepath.Base(p)] = fmt.Sprintf("%v\n%s", err, out)
				}
			}
		}
	}
	for _, c := range commands {
		if !binaries.missing[c] {
			if _, bad := binaries.failed[c]; !bad {
				binaries.path[c] = filepath.Join(binaries.dir, c)
			}
		}
	}
}

// moduleRoot is the directory of go.mod above the package directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("no go.mod above the test directory")
}

// hasGoSource reports whether dir holds a non-test Go file.
func hasGoSource(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			return true
		}
	}
	return false
}

// testDir makes a short per-test directory (unix socket paths must stay
// under ~100 bytes, which t.TempDir's long names can exceed) and removes it
// after every other cleanup of the test.
func testDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "wit-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if os.Getenv(envKeep) != "" {
			tb.Logf("kept test directory %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// Ports handed out in this run, so two listeners of one test never get the
// same one.
var ports struct {
	sync.Mutex
	used map[string]bool
}

// freePort returns a loopback port that was free a moment ago for network
// "tcp" or "udp".
func freePort(tb testing.TB, network string) int {
	tb.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.used == nil {
		ports.used = map[string]bool{}
	}
	for range 50 {
		var port int
		switch network {
		case "tcp":
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				tb.Fatal(err)
			}
			port = ln.Addr().(*net.TCPAddr).Port
			ln.Close()
		case "udp":
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				tb.Fatal(err)
			}
			port = pc.LocalAddr().(*net.UDPAddr).Port
			pc.Close()
		default:
			tb.Fatalf("freePort: network %q", network)
		}
		key := fmt.Sprintf("%s/%d", network, port)
		if !ports.used[key] {
			ports.used[key] = true
			return port
		}
	}
	tb.Fatalf("no free %s port after 50 tries", network)
	return 0
}

// loopback is host:port on 127.0.0.1.
func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// waitFor polls cond until it reports true or timeout passes; then it fails
// the test with what and cond's last detail. The poll interval starts at
// 1 ms and doubles up to 50 ms.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	detail := ""
	for d := time.Millisecond; ; d = min(2*d, 50*time.Millisecond) {
		var ok bool
		ok, detail = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, detail)
		}
		time.Sleep(d)
	}
}

// daemon is one edge or hub process, started and restarted from the same
// command line. Its stdout and stderr go to files in its directory, which
// are printed when the test fails. Whatever happens, the process is killed
// when the test ends.
type daemon struct {
	tb    testing.TB
	name  string // label in messages and log file names
	bin   string
	args  []string
	dir   string
	admin string // admin listen address from its config
	env   []string

	starts  int
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	started time.Time
}

func newDaemon(tb testing.TB, name, bin, dir, adminAddr string, args ...string) *daemon {
	d := &daemon{tb: tb, name: name, bin: bin, args: args, dir: dir, admin: adminAddr, env: daemonEnv()}
	tb.Cleanup(d.cleanup)
	return d
}

// daemonEnv is the test's environment without EDGE_* and HUB_* variables,
// which the daemons would read as configuration.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "EDGE_") || strings.HasPrefix(kv, "HUB_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (d *daemon) logPath(stream string) string {
	return filepath.Join(d.dir, d.name+"."+stream+".log")
}

// Start runs the process; it fails the test if it is already running.
func (d *daemon) Start() {
	d.tb.Helper()
	if d.Running() {
		d.tb.Fatalf("%s: Start while running", d.name)
	}
	d.starts++
	open := func(stream string) *os.File {
		f, err := os.OpenFile(d.logPath(stream), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			d.tb.Fatal(err)
		}
		fmt.Fprintf(f, "=== start #%d at %s: %s %s\n", d.starts, time.Now().Format(time.RFC3339Nano), d.bin, strings.Join(d.args, " "))
		return f
	}
	stdout, stderr := open("stdout"), open("stderr")
	defer stdout.Close()
	defer stderr.Close()
	cmd := exec.Command(d.bin, d.args...)
	cmd.Dir = d.dir
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = procAttr()
	d.started = time.Now()
	if err := cmd.Start(); err != nil {
		d.tb.Fatalf("%s: start: %v", d.name, err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	d.waitErr = nil
	go func(exited chan struct{}) {
		err := cmd.Wait()
		d.waitErr = err
		close(exited)
	}(d.exited)
}

// Running reports whether the process was started and has not exited.
func (d *daemon) Running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// PID is the running process's id.
func (d *daemon) PID() int { return d.cmd.Process.Pid }

// WaitReady polls /healthz until it answers 200 and returns the time since
// Start. It fails the test (with the daemon's output) if the process exits
// or the deadline passes.
func (d *daemon) WaitReady(timeout time.Duration) time.Duration {
	d.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if !d.Running() {
			d.tb.Fatalf("%s exited before it was ready (%v); see its output below", d.name, d.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var body []byte
		last = admin.Get(ctx, d.admin, "/healthz", &body)
		cancel()
		if last == nil {
			return time.Since(d.started)
		}
		if time.Now().After(deadline) {
			d.tb.Fatalf("%s not ready after %s: %v", d.name, timeout, last)
		}
		// Poll finely at first: start-up time is measured with this.
		delay := time.Millisecond
		if time.Since(d.started) > 2*time.Second {
			delay = 20 * time.Millisecond
		}
		time.Sleep(delay)
	}
}

// StartReady starts the process and waits for readiness.
func (d *daemon) StartReady() time.Duration {
	d.tb.Helper()
	d.Start()
	return d.WaitReady(90 * time.Second)
}

// Stop sends SIGTERM and waits for a clean exit (status 0).
func (d *daemon) Stop() {
	d.tb.Helper()
	if !d.Running() {
		d.tb.Fatalf("%s: Stop while not running (exit: %v)", d.name, d.waitErr)
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.tb.Fatalf("%s did not exit within 60 s of SIGTERM; killed", d.name)
	}
	if d.waitErr != nil {
		d.tb.Errorf("%s exited with %v after SIGTERM; want status 0", d.name, d.waitErr)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) Kill() {
	d.tb.Helper()
	if !d.Running() {
		d.tb.Fatalf("%s: Kill while not running (exit: %v)", d.name, d.waitErr)
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// Status decodes the daemon's /status into v.
func (d *daemon) Status(v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := admin.Get(ctx, d.admin, "/status", v)
	if err != nil && !d.Running() {
		return fmt.Errorf("%s is not running (%v): %w", d.name, d.waitErr, err)
	}
	return err
}

// metrics returns the daemon's /metrics text.
func (d *daemon) metrics(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body []byte
	if err := admin.Get(ctx, d.admin, "/metrics", &body); err != nil {
		tb.Fatalf("%s /metrics: %v", d.name, err)
	}
	return string(body)
}

// cleanup kills a process still running and prints the output on failure.
func (d *daemon) cleanup() {
	if d.Running() {
		_ = d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.tb.Errorf("%s (pid %d) did not die after SIGKILL", d.name, d.cmd.Process.Pid)
		}
	}
	if d.tb.Failed() && d.starts > 0 {
		for _, s := range []string{"stdout", "stderr"} {
			d.tb.Logf("---- %s %s (last 48 KiB) ----\n%s", d.name, s, tail(d.logPath(s), 48<<10))
		}
	}
}

// tail returns at most the last n bytes of a file.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	if st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	if st.Size() > n {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
		return "[...]\n" + string(b)
	}
	return string(b)
}

// rssBytes reads a process's resident set size from /proc (Linux).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS line")
}

// writeFile writes a file with mode perm, failing the test on error.
func writeFile(tb testing.TB, path, content string, perm os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		tb.Fatal(err)
	}
}

// splitPort splits host:port, failing the test on error.
func splitPort(tb testing.TB, addr string) (host, port string) {
	tb.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return host, port
}
