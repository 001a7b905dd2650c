package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// config is what the benchmark measures; the backend is opened per
// precision by open.
type config struct {
	Dim, Batch, In int
	Hidden         []int
	Backbone       string
	Qs             []int
	// NFactor: labels are drawn from N = NFactor·Q identities.
	NFactor float64
	Warmup  int
	Steps   int
	// StepBudget bounds the timed steps of one configuration (at least 2
	// run).
	StepBudget time.Duration
	// GemmTime is how long each sgemm shape is repeated.
	GemmTime time.Duration
	Seed     uint64
}

// opener opens a backend; tf32 selects TF32 tensor-op math in the matrix
// products.
type opener func(tf32 bool) (kernels.Backend, error)

// row is one (precision, Q) measurement.
type row struct {
	Precision string
	Q         int
	Backend   string
	Failed    string

	StepMS, StepMinMS float64 // median and fastest timed step
	Steps             int
	SamplesPerS       float64
	Loss              float64
	InitS             float64

	HeadMS, HeadGFLOPS float64 // FFC head alone: insert + loss (both logit sets when refreshed)
	HeadSets           float64 // logit sets per Loss, averaged
	GemmNT, GemmNN     float64 // cuBLAS GFLOP/s: cos = P·poolᵀ (n×Q×D), dP = dcos·pool (n×D×Q)
	GemmErr            string
}

// rowsPerPass is the number of features per FFC pass: B id-pair images and
// B/2 instances in each half of the dual batch.
func rowsPerPass(b int) int { return b + b/2 }

// samplesPerStep: 2·B pair images and 2·(B/2) instances.
func samplesPerStep(b int) int { return 2*b + 2*(b/2) }

// run measures every precision and pool size; it writes progress to log.
func run(ctx context.Context, c config, precisions []string, open opener, log io.Writer) []row {
	var rows []row
	for _, p := range precisions {
		be, err := open(p == "tf32")
		if err != nil {
			for _, q := range c.Qs {
				rows = append(rows, row{Precision: p, Q: q, Failed: "backend: " + err.Error()})
			}
			fmt.Fprintf(log, "gpu: %s: backend: %v\n", p, err)
			continue
		}
		for _, q := range c.Qs {
			if ctx.Err() != nil {
				rows = append(rows, row{Precision: p, Q: q, Failed: "time budget exhausted"})
				continue
			}
			fmt.Fprintf(log, "gpu: %s Q=%s ... ", p, benchutil.Count(q))
			r := measure(ctx, be, c, q)
			r.Precision, r.Backend = p, be.Name()
			if r.Failed != "" {
				fmt.Fprintf(log, "failed: %s\n", r.Failed)
			} else {
				fmt.Fprintf(log, "%.2f ms/step (%d steps), %.0f samples/s; head %.2f ms %.0f GFLOP/s; sgemm %.0f / %.0f GFLOP/s\n",
					r.StepMS, r.Steps, r.SamplesPerS, r.HeadMS, r.HeadGFLOPS, r.GemmNT, r.GemmNN)
			}
			rows = append(rows, r)
		}
		if err := be.Close(); err != nil {
			fmt.Fprintf(log, "gpu: %s: close: %v\n", p, err)
		}
	}
	return rows
}

// measure runs one pool size: full engine steps, then the head alone, then
// sgemm on the head's shapes, each freeing its memory before the next.
func measure(ctx context.Context, be kernels.Backend, c config, q int) (r row) {
	r.Q = q
	n := rowsPerPass(c.Batch)
	if q < n {
		r.Failed = fmt.Sprintf("Q = %d is below the %d features one pass inserts", q, n)
		return r
	}
	defer func() {
		if p := recover(); p != nil {
			r.Failed = fmt.Sprintf("panic: %v", p)
		}
	}()
	if err := stepTimes(ctx, be, c, q, &r); err != nil {
		r.Failed = err.Error()
		return r
	}
	if err := headTimes(ctx, be, c, q, &r); err != nil {
		r.Failed = "head: " + err.Error()
		return r
	}
	var err error
	if r.GemmNT, r.GemmNN, err = gemmRates(be, c, q); err != nil {
		r.GemmErr = err.Error()
	}
	return r
}

// labelSource draws labels of N = NFactor·Q identities.
type labelSource struct {
	rng *rand.Rand
	n   int
}

func (s labelSource) fill(dst []int64) {
	for i := range dst {
		dst[i] = int64(s.rng.IntN(s.n))
	}
}

// batch is one synthetic dual batch: x = [a1; h1], y = [a2; h2].
type batch struct {
	x, y   []float32
	xl, yl []int64
}

func makeBatches(c config, q, count int) []batch {
	rng := rand.New(rand.NewPCG(c.Seed, uint64(q)))
	ls := labelSource{rng: rng, n: max(int(c.NFactor*float64(q)), 2*c.Batch)}
	n, half := rowsPerPass(c.Batch), c.Batch/2
	out := make([]batch, count)
	for i := range out {
		b := batch{x: make([]float32, n*c.In), y: make([]float32, n*c.In), xl: make([]int64, n), yl: make([]int64, n)}
		for j := range b.x {
			b.x[j], b.y[j] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		ls.fill(b.xl[:c.Batch])
		copy(b.yl, b.xl[:c.Batch]) // id pairs: the same labels in x and y
		ls.fill(b.xl[c.Batch : c.Batch+half])
		ls.fill(b.yl[c.Batch : c.Batch+half])
		out[i] = b
	}
	return out
}

// timeSteps runs c.Warmup untimed steps and then up to c.Steps timed ones,
// cycling through 4 synthetic batches of pool size q, and stops early (after
// at least 2 timed steps) once c.StepBudget is spent or ctx is done. step
// runs step i on b and drains the queue; timed says whether it is measured.
// It returns the timed steps' durations in ms, or the first step error.
func timeSteps(ctx context.Context, c config, q int, step func(i int, b batch, timed bool) error) ([]float64, error) {
	bs := makeBatches(c, q, 4)
	var times []float64
	start := time.Now()
	for i := 0; i < c.Warmup+c.Steps; i++ {
		if i == c.Warmup {
			start = time.Now()
		}
		if i >= c.Warmup+2 && (time.Since(start) > c.StepBudget || ctx.Err() != nil) {
			break
		}
		t := time.Now()
		if err := step(i, bs[i%len(bs)], i >= c.Warmup); err != nil {
			return nil, err
		}
		if i >= c.Warmup {
			times = append(times, ms(time.Since(t)))
		}
	}
	if len(times) == 0 {
		return nil, errors.New("no timed step")
	}
	return times, nil
}

// stepTimes times engine.StepFFC (host upload of the batch included, the
// queue drained with Sync after each step).
func stepTimes(ctx context.Context, be kernels.Backend, c config, q int, r *row) error {
	t0 := time.Now()
	e, err := engine.New(be, engine.Options{
		Backbone: c.Backbone, InLen: c.In, Hidden: c.Hidden, Dim: c.Dim, Head: engine.HeadFFC,
		Batch: c.Batch, Pool: q, Margin: kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4},
		SGD:      nn.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true},
		Schedule: nn.Schedule{Kind: "step", BaseLR: 0.1, TotalSteps: 1 << 30}, Seed: c.Seed,
	})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	defer e.Close()
	if err := be.Sync(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	r.InitS = time.Since(t0).Seconds()
	times, err := timeSteps(ctx, c, q, func(i int, b batch, timed bool) error {
		st, err := e.StepFFC(b.x, b.xl, b.y, b.yl)
		if err == nil {
			err = be.Sync()
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if timed {
			r.Loss = st.Loss
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.Steps, r.StepMS, r.StepMinMS = len(times), benchutil.Median(times), slices.Min(times)
	r.SamplesPerS = float64(samplesPerStep(c.Batch)) / (r.StepMS / 1e3)
	return nil
}

// headTimes times the FFC head alone as one engine pass uses it: BeginPass,
// Insert of n gallery features (the B pair labels, held afterwards, and B/2
// others) and Loss of n probe features.
func headTimes(ctx context.Context, be kernels.Backend, c config, q int, r *row) error {
	n, d := rowsPerPass(c.Batch), c.Dim
	pool, err := centers.NewPool(be, centers.PoolOptions{Slots: q, Dim: d, MaxBatch: n, Seed: c.Seed})
	if err != nil {
		return err
	}
	defer pool.Close()
	h, err := centers.NewFFC(be, pool, centers.FFCOptions{Margin: kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}, MaxBatch: n})
	if err != nil {
		return err
	}
	defer h.Close()
	rng := rand.New(rand.NewPCG(c.Seed+7, uint64(q)))
	p, err := benchutil.UnitBuffer(be, rng, n, d)
	if err != nil {
		return err
	}
	defer be.Free(p)
	g, err := benchutil.UnitBuffer(be, rng, n, d)
	if err != nil {
		return err
	}
	defer be.Free(g)
	dp, err := be.Alloc(n * d)
	if err != nil {
		return err
	}
	defer be.Free(dp)
	var sets float64
	times, err := timeSteps(ctx, c, q, func(_ int, b batch, timed bool) error {
		if err := pool.BeginPass(); err != nil {
			return err
		}
		if _, err := pool.Insert(g, b.yl); err != nil {
			return err
		}
		out, err := h.Loss(p, b.xl, dp)
		if err == nil {
			err = be.Sync()
		}
		if err != nil {
			return err
		}
		if timed {
			if out.Refreshed > 0 {
				sets += 2
			} else {
				sets++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.HeadMS = benchutil.Median(times)
	r.HeadSets = sets / float64(len(times))
	// Two products of 2·n·Q·D flops per logit set.
	r.HeadGFLOPS = r.HeadSets * 2 * gemmFlops(n, q, d) / (r.HeadMS / 1e3) / 1e9
	return nil
}

func gemmFlops(m, n, k int) float64 { return 2 * float64(m) * float64(n) * float64(k) }

// gemmRates measures the backend's Gemm (cuBLAS on the GPU) on the head's
// shapes: cos = P·poolᵀ (n×Q, inner D) and dP = dcos·pool (n×D, inner Q).
func gemmRates(be kernels.Backend, c config, q int) (nt, nn float64, err error) {
	n, d := rowsPerPass(c.Batch), c.Dim
	var bufs []kernels.Buffer
	defer func() {
		for _, b := range bufs {
			err = errors.Join(err, be.Free(b))
		}
	}()
	alloc := func(size int) (kernels.Buffer, error) {
		b, err := be.Alloc(size)
		if err == nil {
			bufs = append(bufs, b)
		}
		return b, err
	}
	rng := rand.New(rand.NewPCG(c.Seed+9, uint64(q)))
	p, err := benchutil.UnitBuffer(be, rng, n, d)
	if err != nil {
		return 0, 0, err
	}
	bufs = append(bufs, p)
	rows, err := alloc(q * d)
	if err != nil {
		return 0, 0, err
	}
	if err := be.Fill(q*d, 0.01, rows); err != nil {
		return 0, 0, err
	}
	cos, err := alloc(n * q)
	if err != nil {
		return 0, 0, err
	}
	dp, err := alloc(n * d)
	if err != nil {
		return 0, 0, err
	}
	rate := func(f func() error, flops float64) (float64, error) {
		for i := 0; i < 2; i++ { // warm-up
			if err := f(); err != nil {
				return 0, err
			}
		}
		if err := be.Sync(); err != nil {
			return 0, err
		}
		reps, t0 := 0, time.Now()
		for time.Since(t0) < c.GemmTime || reps < 3 {
			// Batches of 5 between syncs keep the queue full.
			for j := 0; j < 5; j++ {
				if err := f(); err != nil {
					return 0, err
				}
			}
			if err := be.Sync(); err != nil {
				return 0, err
			}
			reps += 5
		}
		return float64(reps) * flops / time.Since(t0).Seconds() / 1e9, nil
	}
	if nt, err = rate(func() error { return be.Gemm(false, true, n, q, d, 1, p, rows, 0, cos) }, gemmFlops(n, q, d)); err != nil {
		return 0, 0, fmt.Errorf("sgemm cos: %w", err)
	}
	if nn, err = rate(func() error { return be.Gemm(false, false, n, d, q, 1, cos, rows, 0, dp) }, gemmFlops(n, d, q)); err != nil {
		return nt, 0, fmt.Errorf("sgemm dP: %w", err)
	}
	return nt, nn, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// render prints the table and its notes.
func render(w io.Writer, c config, rows []row, machine, cmd string, took time.Duration) {
	fmt.Fprintf(w, "# FFC trainer step on the GPU\n\n")
	fmt.Fprintf(w, "Command: `%s`\n\n", cmd)
	fmt.Fprintf(w, "Machine: %s\n\n", machine)
	fmt.Fprintf(w, "Date: %s; the run took %.0f s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Seconds())
	fmt.Fprintf(w, "| precision | Q | samples/s | step ms (median) | step ms (min) | head ms | head GFLOP/s | sgemm GFLOP/s cos n×Q×D | sgemm GFLOP/s dP n×D×Q |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		if r.Failed != "" {
			fmt.Fprintf(w, "| %s | %s | failed: %s | | | | | | |\n", r.Precision, benchutil.Count(r.Q), strings.ReplaceAll(r.Failed, "|", "/"))
			continue
		}
		nt, nn := fmt.Sprintf("%.0f", r.GemmNT), fmt.Sprintf("%.0f", r.GemmNN)
		if r.GemmErr != "" {
			nt, nn = "failed: "+strings.ReplaceAll(r.GemmErr, "|", "/"), "—"
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.2f | %.2f | %.2f | %.0f | %s | %s |\n",
			r.Precision, benchutil.Count(r.Q), r.SamplesPerS, r.StepMS, r.StepMinMS, r.HeadMS, r.HeadGFLOPS, nt, nn)
	}
	n := rowsPerPass(c.Batch)
	hidden := make([]string, len(c.Hidden))
	for i, h := range c.Hidden {
		hidden[i] = strconv.Itoa(h)
	}
	fmt.Fprintf(w, "\n- A step is engine.StepFFC on a synthetic dual batch: %s backbone (%d inputs, hidden [%s], D = %d), B = %d, so %d rows per pass and %d samples per step (2·B id-pair images + 2·(B/2) instances); labels from N = %g·Q identities; CosFace s = 32, m = 0.4; SGD momentum 0.9 (Nesterov), wd 1e-4. The host upload of the batch is included; the GPU queue is drained (Sync) after every step.\n",
		c.Backbone, c.In, strings.Join(hidden, ","), c.Dim, c.Batch, n, samplesPerStep(c.Batch), c.NFactor)
	fmt.Fprintf(w, "- Step ms: median (and fastest) of up to %d timed steps after %d warm-up steps, at most %s of timed steps per row. samples/s = samples per step ÷ median step.\n", c.Steps, c.Warmup, c.StepBudget)
	fmt.Fprintf(w, "- Head: the FFC head alone as one pass uses it (pool BeginPass + Insert of %d gallery features + Loss of %d probe features: logits, margin softmax / fresh top-K, gradient); head GFLOP/s counts its matrix products only, 2 × 2·n·Q·D flops per logit set (two sets when the pass refreshed a class).\n", n, n)
	fmt.Fprintf(w, "- sgemm: the backend's Gemm (cuBLAS) alone, repeated for %s, on the head's shapes: cos = P·poolᵀ (%d×Q, inner D = %d, B transposed) and dP = dcos·pool (%d×%d, inner Q). The tf32 rows use a backend opened with TF32 tensor-op math.\n", c.GemmTime, n, c.Dim, n, c.Dim)
}
