//go:build unix

package policy_test

import (
	"syscall"
	"time"
)

// processCPU returns the user and system CPU time of the process so far (getrusage
// RUSAGE_SELF): a cost measure that other processes competing for the CPU do not inflate.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
