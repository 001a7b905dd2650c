package main

import (
	"fmt"
	"runtime"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
)

// machine describes the host.
func machine() string {
	return fmt.Sprintf("%d cores (GOMAXPROCS %d), %s, %.0f GiB RAM; %s %s/%s", runtime.NumCPU(), runtime.GOMAXPROCS(0),
		benchutil.CPUModel(), benchutil.MemTotalGiB(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
