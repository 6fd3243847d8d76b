package testenv

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills the child when the test binary dies without running its cleanups
// (a test timeout panics, a developer presses ^C twice), so no server is left holding a port.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
