package ansible_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// launch is how a service manager would start a program: argv, user and
// group, working directory, environment and umask, read from the service
// definition the playbook installed.
type launch struct {
	Argv  []string
	User  string
	Group string
	Dir   string
	Env   map[string]string
	Umask int // -1: leave the test's
}

// parseSystemdUnit reads the [Service] section of a unit: ExecStart, User,
// Group, WorkingDirectory (default /), UMask and Environment.
func parseSystemdUnit(text string) (launch, error) {
	l := launch{Dir: "/", Env: map[string]string{}, Umask: 0o022}
	section := ""
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return l, fmt.Errorf("unit line %q: no '='", line)
		}
		switch strings.TrimSpace(key) {
		case "ExecStart":
			// Prefixes: - (ignore failure), @, +, !, !!, :.
			val = strings.TrimLeft(strings.TrimSpace(val), "-@+!:")
			l.Argv = strings.Fields(val)
		case "User":
			l.User = val
		case "Group":
			l.Group = val
		case "WorkingDirectory":
			l.Dir = strings.TrimPrefix(val, "-")
		case "UMask":
			m, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return l, fmt.Errorf("UMask %q: %w", val, err)
			}
			l.Umask = int(m)
		case "Environment":
			for _, kv := range strings.Fields(val) {
				k, v, _ := strings.Cut(strings.Trim(kv, `"`), "=")
				l.Env[k] = v
			}
		}
	}
	if len(l.Argv) == 0 {
		return l, fmt.Errorf("no ExecStart in [Service]")
	}
	return l, nil
}

// parseSupervisordProgram reads the [program:name] section of a supervisord
// file: command, user, directory, environment and umask. supervisord
// starts a program in its directory with the environment given (HOME is
// not set for the user, unlike systemd).
func parseSupervisordProgram(text, name string) (launch, error) {
	l := launch{Dir: "/", Env: map[string]string{}, Umask: -1}
	in := false
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			in = line == "[program:"+name+"]"
			continue
		}
		if !in {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return l, fmt.Errorf("supervisord line %q: no '='", line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "command":
			l.Argv = strings.Fields(val)
		case "user":
			l.User = val
		case "directory":
			l.Dir = val
		case "umask":
			m, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return l, fmt.Errorf("umask %q: %w", val, err)
			}
			l.Umask = int(m)
		case "environment":
			for _, kv := range strings.Split(val, ",") {
				k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
				l.Env[k] = strings.Trim(v, `"`)
			}
		}
	}
	if len(l.Argv) == 0 {
		return l, fmt.Errorf("no [program:%s] with a command", name)
	}
	return l, nil
}

// service is a program started inside a chroot.
type service struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs l inside host h the way its service manager would (chroot,
// user and group from the chroot's own databases, no supplementary groups,
// working directory, environment, umask), logging to logPath. The process
// is stopped in t.Cleanup (SIGTERM, then SIGKILL), and it dies with the
// test anyway (parent-death signal; PID namespace).
func start(t *testing.T, h *chrootHost, name string, l launch, logPath string) *service {
	t.Helper()
	group := l.Group
	if group == "" {
		group = l.User // both managers: the user's primary group; ours are equal
	}
	uid, gid := h.uid(t, l.User), h.gid(t, group)
	logf, err := os.Create(logPath)
	must(t, err)
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"USER=" + l.User, "LOGNAME=" + l.User,
	}
	if _, ok := l.Env["HOME"]; !ok {
		env = append(env, "HOME="+h.home(t, l.User))
	}
	for k, v := range l.Env {
		env = append(env, k+"="+v)
	}
	cmd := &exec.Cmd{
		Path:   l.Argv[0],
		Args:   l.Argv,
		Env:    env,
		Dir:    l.Dir,
		Stdout: logf,
		Stderr: logf,
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     h.root,
			Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}},
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if l.Umask >= 0 {
		old := syscall.Umask(l.Umask)
		err = cmd.Start()
		syscall.Umask(old)
	} else {
		err = cmd.Start()
	}
	logf.Close()
	if err != nil {
		t.Fatalf("start %s in %s: %v", name, h.name, err)
	}
	s := &service{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends the service's process group: SIGTERM, then SIGKILL after 10 s.
func (s *service) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Logf("%s did not stop on SIGTERM within 10s; killing it", s.name)
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// running fails the test with the service's log when it has exited.
func (s *service) running(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
		t.Fatalf("%s exited (%v); its log:\n%s", s.name, s.err, tail(s.log, 60))
	default:
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// udpBound says whether a UDP socket is bound to port on this machine's
// network (the chroots share it), read from /proc/net/udp and udp6.
func udpBound(port int) bool {
	want := fmt.Sprintf(":%04X ", port)
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 1 && strings.HasSuffix(fields[1]+" ", want) {
				file.Close()
				return true
			}
		}
		file.Close()
	}
	return false
}

// pamExecArgv returns the command a pam_exec session line runs: the words
// after pam_exec.so, without pam_exec's own options (Linux-PAM's and
// OpenPAM's), from the first line of the PAM file whose command contains
// want.
func pamExecArgv(pamFile, want string) ([]string, string, error) {
	opts := map[string]bool{
		"debug": true, "expose_authtok": true, "seteuid": true, "quiet": true,
		"quiet_log": true, "stdin": true, "stdout": true, // Linux-PAM
		"return_prog_exit_status": true, "capture_stdout": true,
		"capture_stderr": true, "use_first_pass": true, // OpenPAM
	}
	for _, line := range strings.Split(pamFile, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[0] != "session" {
			continue
		}
		i := 2
		for i < len(f) && f[i] != "pam_exec.so" && !strings.HasSuffix(f[i], "/pam_exec.so") {
			i++
		}
		if i >= len(f) {
			continue
		}
		args := f[i+1:]
		for len(args) > 0 && (opts[args[0]] || strings.HasPrefix(args[0], "log=") || strings.HasPrefix(args[0], "type=")) {
			args = args[1:]
		}
		if len(args) > 0 && args[0] == "--" {
			args = args[1:]
		}
		if len(args) > 0 && strings.Contains(args[0], want) {
			return args, line, nil
		}
	}
	return nil, "", fmt.Errorf("no session pam_exec.so line running %q", want)
}
