//go:build !unix

package exec

import osexec "os/exec"

// setProcessGroup kills only the program itself on platforms without
// process groups.
func setProcessGroup(cmd *osexec.Cmd) {
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return errNoProcess
		}
		return cmd.Process.Kill()
	}
}
