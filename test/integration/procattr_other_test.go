//go:build !linux

package integration

import "syscall"

// procAttr puts a daemon in its own process group. Without Linux's
// Pdeathsig, only the tests' cleanups stop daemons of a killed test run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
