//go:build !linux

package testenv

import "os/exec"

// setParentDeathSignal does nothing where the kernel offers no parent-death signal; the
// cleanup registered by MinIO stops the server on every ordinary exit.
func setParentDeathSignal(*exec.Cmd) {}
