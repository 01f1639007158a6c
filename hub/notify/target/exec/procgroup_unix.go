//go:build unix

package exec

import (
	osexec "os/exec"
	"syscall"
)

// setProcessGroup starts the program in its own process group and makes
// cancellation kill the whole group, so children the program started
// (e.g. a shell's pipeline) die with it.
func setProcessGroup(cmd *osexec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return errNoProcess
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
