//go:build unix

package nn

import (
	"syscall"
	"time"
)

// processCPU is the user+system CPU time of the process so far (all
// threads, OpenBLAS's included), or 0 where unknown.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
