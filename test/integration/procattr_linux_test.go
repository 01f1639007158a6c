//go:build linux

package integration

import "syscall"

// procAttr puts a daemon in its own process group (a terminal's ^C goes to
// the test only) and has the kernel SIGKILL it if the test process dies, so
// no daemon outlives a crashed or killed test run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
