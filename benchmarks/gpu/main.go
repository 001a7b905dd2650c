//go:build cuda

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cuda"
)

func main() {
	qList := flag.String("q", "10k,100k,1M", "pool sizes Q (comma-separated; k and M suffixes)")
	dim := flag.Int("dim", 512, "embedding dimension D")
	batch := flag.Int("batch", 256, "batch B (B id pairs + B instances per step)")
	in := flag.Int("in", 1024, "mlp backbone: input length of the synthetic samples")
	hidden := flag.String("hidden", "1024", "mlp backbone: hidden layer widths (comma-separated)")
	backbone := flag.String("backbone", "mlp", "backbone: mlp (synthetic feature vectors) or irresnet (1×32×32; --in is then 1024)")
	nFactor := flag.Float64("n-factor", 10, "labels are drawn from N = n-factor·Q identities")
	precision := flag.String("precision", "fp32,tf32", "cuBLAS precisions to run: fp32 and/or tf32")
	warmup := flag.Int("warmup", 3, "untimed warm-up steps per configuration")
	steps := flag.Int("steps", 20, "timed steps per configuration (median reported)")
	stepBudget := flag.Duration("step-budget", 20*time.Second, "at most this long of timed steps per configuration (at least 2 steps)")
	gemmTime := flag.Duration("gemm-time", 500*time.Millisecond, "how long each sgemm shape is repeated")
	budget := flag.Duration("budget", 4*time.Minute, "stop starting new configurations after this long")
	gpu := flag.Int("gpu", 0, "GPU ordinal")
	poolBytes := flag.Int64("gpu-memory", 0, "device memory reserved by the backend in bytes (0: 80% of the free memory)")
	blockSize := flag.Int("block-size", 0, "threads per block of the custom kernels (0: the backend's default)")
	seed := flag.Uint64("seed", 1, "random seed")
	out := flag.String("out", "", "also write the table to this file")
	flag.Parse()

	qs, err := benchutil.ParseCounts(*qList)
	if err != nil {
		fatal(fmt.Errorf("--q: %w", err))
	}
	var hs []int
	for _, f := range strings.Split(*hidden, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		h, err := strconv.Atoi(f)
		if err != nil || h <= 0 {
			fatal(fmt.Errorf("--hidden %q: want positive widths", *hidden))
		}
		hs = append(hs, h)
	}
	var precs []string
	for _, p := range strings.Split(*precision, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if p != "fp32" && p != "tf32" {
			fatal(fmt.Errorf("--precision: unknown %q (fp32, tf32)", p))
		}
		precs = append(precs, p)
	}
	if *backbone == "irresnet" {
		*in = 32 * 32
	}
	if *dim <= 0 || *batch < 2 || *steps < 1 || *warmup < 0 || *in <= 0 {
		fatal(fmt.Errorf("--dim, --in and --steps must be positive, --batch ≥ 2"))
	}
	c := config{Dim: *dim, Batch: *batch, In: *in, Hidden: hs, Backbone: *backbone, Qs: qs, NFactor: *nFactor,
		Warmup: *warmup, Steps: *steps, StepBudget: *stepBudget, GemmTime: *gemmTime, Seed: *seed}

	var ptx string
	open := func(tf32 bool) (kernels.Backend, error) {
		be, err := cuda.New(cuda.Options{Device: *gpu, TF32: tf32, PoolBytes: *poolBytes, BlockSize: *blockSize})
		if err != nil {
			return nil, err
		}
		ptx = be.PTXArch()
		return be, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), *budget)
	defer cancel()
	start := time.Now()
	rows := run(ctx, c, precs, open, os.Stderr)
	name := "cuda"
	for _, r := range rows {
		if r.Backend != "" {
			name = r.Backend
			break
		}
	}
	mach := fmt.Sprintf("backend %s (PTX %s, GPU %d); host %d cores; %s %s/%s", name, ptx, *gpu, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	var sb strings.Builder
	render(&sb, c, rows, mach, "go run -tags cuda ./benchmarks/gpu "+strings.Join(os.Args[1:], " "), time.Since(start))
	fmt.Print(sb.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(sb.String()), 0o644); err != nil {
			fatal(err)
		}
	}
	for _, r := range rows {
		if r.Failed != "" {
			os.Exit(1)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gpu:", err)
	os.Exit(2)
}
