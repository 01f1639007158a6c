// Package ansible_test checks deploy/: ansible-lint over the playbook and
// roles, the service definitions (systemd-analyze verify, sh -n, in sync
// with the role templates), and the real rollout: the playbook applied to
// throwaway chroot hosts on this machine, applied again with nothing
// changed, the services started as their units start them and a hare login
// followed to the hub's notifier file.
//
// Tests that need a tool skip when it is missing, unless WARREN_REQUIRE_ALL=1
// (CI sets it), in which case they fail. The rollout also skips under -short.
package ansible_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// nsEnv marks the test binary running inside its private namespaces.
const nsEnv = "WARREN_ANSIBLE_TEST_NS"

// TestMain re-runs the test binary in private mount and PID namespaces
// (unshare) when the rollout test is going to run: the chroots' bind mounts
// then vanish with the process, and every process the test starts (the
// services, ansible's workers) is killed by the kernel when it ends, even
// after a panic or a timeout.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(nsEnv) == "" && wantNamespace() {
		os.Exit(reexecInNamespace())
	}
	os.Exit(m.Run())
}

// wantNamespace says whether the rollout will run and can use namespaces.
func wantNamespace() bool {
	if testing.Short() || runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return false
	}
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return false
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return false
	}
	// Probe: containers without CAP_SYS_ADMIN refuse new namespaces.
	return exec.Command("unshare", "--mount", "--pid", "--fork", "--mount-proc", "true").Run() == nil
}

// reexecInNamespace runs this test binary again, with the same arguments,
// as PID 1 of a new PID namespace with a private mount namespace and its
// own /proc. It returns the exit code to use.
func reexecInNamespace() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy/ansible: %v\n", err)
		return 1
	}
	args := append([]string{"--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--propagation", "private", "--", self}, os.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() >= 0 {
			return exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "deploy/ansible: unshare: %v\n", err)
		return 1
	}
	return 0
}

// requireTool skips the test when the program is missing, or fails it when
// WARREN_REQUIRE_ALL=1.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s is not installed (Debian: apt-get install ansible ansible-lint)", name)
	}
	return path
}

// missing skips, or fails under WARREN_REQUIRE_ALL=1.
func missing(t *testing.T, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	if os.Getenv("WARREN_REQUIRE_ALL") == "1" {
		t.Fatalf("%s (WARREN_REQUIRE_ALL=1)", msg)
	}
	t.Skip(msg)
}
