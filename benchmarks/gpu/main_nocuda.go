//go:build !cuda

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "benchmarks/gpu: built without CUDA: run it with -tags cuda on a machine with an NVIDIA GPU (go run -tags cuda ./benchmarks/gpu, or benchmarks/gpu/run.sh)")
	os.Exit(2)
}
