package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"syscall"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// rusage is the process's CPU time in seconds and its peak RSS in bytes
// (ru_maxrss, as torchref.py reads it).
func rusage() (cpuS float64, peak int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), ru.Maxrss << 10
}

// measure runs c on the CPU backend with c.Threads threads (the Go
// kernels, and the goroutines the backend splits each product across) and
// GOMAXPROCS = c.Threads, as PyTorch gets that many.
func measure(c config) result {
	r := result{Impl: implOurs, Mode: c.Mode, Threads: c.Threads}
	if c.Threads < 1 {
		r.Failed = fmt.Sprintf("threads %d", c.Threads)
		return r
	}
	runtime.GOMAXPROCS(c.Threads)
	var err error
	if c.Mode == "sgemm" {
		err = sgemms(c, &r)
	} else {
		err = steps(c, &r)
	}
	if err != nil {
		r.Failed = err.Error()
	}
	_, r.PeakRSS = rusage()
	return r
}

// sgemms measures the S×S×S product twice: on the backend as the engine
// runs it (OpenBLAS single-threaded, the product split across c.Threads
// goroutines), into BackendGFLOPS, and with OpenBLAS's own c.Threads
// threads (cpu.Options.BLASThreads), the machine's sgemm ceiling, into
// GFLOPS.
func sgemms(c config, r *result) error {
	for _, blas := range []bool{false, true} {
		be, err := cpu.New(cpu.Options{Threads: c.Threads, BLASThreads: blas})
		if err != nil {
			return err
		}
		g, err := sgemm(be, c)
		if err != nil {
			return err
		}
		if blas {
			r.GFLOPS = g
		} else {
			r.Backend, r.BackendGFLOPS = be.Name(), g
		}
	}
	return nil
}

// sgemm is the best GFLOP/s of an S×S×S product on be over c.SgemmReps
// after one untimed.
func sgemm(be kernels.Backend, c config) (float64, error) {
	s := c.SgemmSize
	rng := rand.New(rand.NewPCG(c.Seed, 7))
	var bufs [3]kernels.Buffer
	for i := range bufs {
		host := make([]float32, s*s)
		for j := range host {
			host[j] = float32(rng.NormFloat64())
		}
		var err error
		if bufs[i], err = be.Alloc(s * s); err != nil {
			return 0, err
		}
		if err := be.Upload(bufs[i], host); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, b := range bufs {
			be.Free(b)
		}
	}()
	best := math.Inf(1)
	for i := 0; i <= c.SgemmReps; i++ {
		t := time.Now()
		if err := be.Gemm(false, false, s, s, s, 1, bufs[0], bufs[1], 0, bufs[2]); err != nil {
			return 0, err
		}
		if err := be.Sync(); err != nil {
			return 0, err
		}
		if d := time.Since(t).Seconds(); i > 0 {
			best = min(best, d)
		}
	}
	return 2 * math.Pow(float64(s), 3) / best / 1e9, nil
}

// engineOptions are the engine settings of c: the IR-ResNet yardstick, the
// trainer's SGD (momentum 0.9, Nesterov, decay on conv and linear weights)
// at a constant rate, CosFace s = 32, m = 0.4 (the default margin).
func engineOptions(c config) engine.Options {
	o := engine.Options{
		Backbone: "irresnet", Dim: c.Dim, Head: engine.HeadFFC, Batch: c.Batch, Pool: c.Pool, Seed: c.Seed,
		SGD:      nn.SGD{Momentum: 0.9, WeightDecay: float32(c.WeightDecay), Nesterov: true},
		Schedule: nn.Schedule{Kind: "constant", BaseLR: c.LR},
	}
	if c.Mode == "fc" {
		o.Head, o.Pool, o.Classes = engine.HeadFC, 0, c.Classes
	}
	return o
}

// stepFunc makes the random inputs of one engine step of mode c.Mode and
// returns the step on them: images uniform in [−1, 1), labels drawn from
// c.Classes IDs; for ffc x = [a1; h1] and y = [a2; h2] (B ids, both images
// of a pair carrying the id, and two halves of B instances), as the dual
// loader makes them.
func stepFunc(c config, e *engine.Engine, rng *rand.Rand) func() (engine.StepStats, error) {
	images := func(rows int) []float32 {
		x := make([]float32, rows*e.InLen())
		for i := range x {
			x[i] = float32(2*rng.Float64() - 1)
		}
		return x
	}
	labels := func(n int) []int64 {
		l := make([]int64, n)
		for i := range l {
			l[i] = int64(rng.IntN(c.Classes))
		}
		return l
	}
	if c.Mode != "ffc" {
		x, l := images(c.Batch), labels(c.Batch)
		return func() (engine.StepStats, error) { return e.StepPlain(x, l) }
	}
	h := c.half()
	ids, inst := labels(c.Batch), labels(2*h)
	xl := append(append([]int64(nil), ids...), inst[:h]...)
	yl := append(append([]int64(nil), ids...), inst[h:]...)
	x, y := images(len(xl)), images(len(yl))
	return func() (engine.StepStats, error) { return e.StepFFC(x, xl, y, yl) }
}

// steps times c.Steps engine steps after c.Warmup on the backend's
// default threading and fills r.
func steps(c config, r *result) error {
	be, err := cpu.New(cpu.Options{Threads: c.Threads})
	if err != nil {
		return err
	}
	r.Backend = be.Name()
	e, err := engine.New(be, engineOptions(c))
	if err != nil {
		return err
	}
	defer e.Close()
	rng := rand.New(rand.NewPCG(c.Seed, 11))
	r.ImagesPerStep = c.imagesPerStep()
	var cpuS float64
	for i := 0; i < c.Warmup+c.Steps; i++ {
		step := stepFunc(c, e, rng)
		c0, _ := rusage()
		t := time.Now()
		st, err := step()
		if err == nil {
			err = be.Sync()
		}
		d := time.Since(t)
		c1, _ := rusage()
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		r.Loss = st.Loss
		if i >= c.Warmup {
			r.StepsMS = append(r.StepsMS, float64(d.Microseconds())/1e3)
			cpuS += c1 - c0
		}
	}
	r.StepMS = benchutil.Median(r.StepsMS)
	r.ImagesPerS = float64(r.ImagesPerStep) / (r.StepMS / 1e3)
	r.CPUSeconds = cpuS
	return nil
}
