package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// specAim is SPEC section 5's aim: our CPU engine at ≥ 1.5× the PyTorch
// images/s on the same machine.
const specAim = 1.5

// flops is the work counted for GFLOP/s: the backbone's convolution and
// linear FLOPs (trainers/nn's FLOPs, as its BenchmarkIRResNet counts them)
// and the heads' matrix products.
type flops struct {
	fwd, stem float64 // one image's forward; the stem convolution's share
	ffcStep   float64 // one FFC step
	fcStep    float64 // one FC step
}

// train is one image's forward and backward: backward is twice the
// forward, less the stem's input gradient, which is not computed.
func (f flops) train() float64 { return 3*f.fwd - f.stem }

// perStep is the work of one step of mode.
func (f flops) perStep(mode string) float64 {
	if mode == "ffc" {
		return f.ffcStep
	}
	return f.fcStep
}

// countFLOPs builds the backbone of c and counts the work of both steps.
// FFC: two passes of n = B + B/2 rows, each a gallery forward and a probe
// forward and backward, and two logit sets of two n×Q×D products (logits,
// probe gradient). FC: B training images and three B×N×D products
// (logits, probe gradient, weight gradient).
func countFLOPs(c config) (flops, error) {
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		return flops{}, err
	}
	net, err := nn.NewIRResNet(be, nn.IRResNetOptions{Dim: c.Dim, MaxBatch: 1, Seed: c.Seed, ForwardOnly: true})
	if err != nil {
		return flops{}, err
	}
	stem, ok := net.Layers()[0].(*nn.Conv2d)
	if !ok {
		return flops{}, fmt.Errorf("the backbone's first layer is %T, not a convolution", net.Layers()[0])
	}
	f := flops{fwd: float64(net.FLOPs()), stem: float64(stem.FLOPs())}
	n, b, d := float64(c.Batch+c.half()), float64(c.Batch), float64(c.Dim)
	f.ffcStep = 2*n*(f.train()+f.fwd) + 2*2*2*(2*n*float64(c.Pool)*d)
	f.fcStep = b*f.train() + 3*(2*b*float64(c.Classes)*d)
	return f, nil
}

// machine describes the host, the backend and the PyTorch build.
func machine(sg []sgemmRow, rows []stepRow, loadStart string) string {
	backend, torch := "?", "not run"
	for _, r := range rows {
		if r.r.Failed != "" {
			continue
		}
		switch {
		case r.impl == implOurs && r.r.Backend != "":
			backend = r.r.Backend
		case r.impl == implTorch && r.r.Torch != "":
			torch = fmt.Sprintf("PyTorch %s (Python %s, oneDNN available: %v)", r.r.Torch, r.r.Python, r.r.MKLDNN)
		}
	}
	for _, s := range sg {
		if backend == "?" && s.ours.Backend != "" {
			backend = s.ours.Backend
		}
	}
	return fmt.Sprintf("%d cores, %s, %.0f GiB RAM, load average %s at the start, %s at the end; backend %s; %s %s/%s; %s",
		runtime.NumCPU(), benchutil.CPUModel(), benchutil.MemTotalGiB(), loadStart, benchutil.LoadAvg(),
		backend, runtime.Version(), runtime.GOOS, runtime.GOARCH, torch)
}

func human(b int64) string {
	const gib = 1 << 30
	if b >= gib {
		return fmt.Sprintf("%.2f GiB", float64(b)/gib)
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// ratio is a/b as "1.23×", or "—" when either is missing.
func ratio(a, b float64) string {
	if !(a > 0 && b > 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// perCPUSecond is the images a CPU-second of the process processed over
// the timed steps.
func perCPUSecond(r result) float64 {
	if !(r.CPUSeconds > 0) {
		return 0
	}
	return float64(r.ImagesPerStep*len(r.StepsMS)) / r.CPUSeconds
}

// imagesPerS is the images/s of the median step.
func imagesPerS(r result) float64 {
	if !(r.StepMS > 0) {
		return 0
	}
	return float64(r.ImagesPerStep) / (r.StepMS / 1e3)
}

// peer finds the other implementation's result of the same threads and
// mode.
func peer(rows []stepRow, x stepRow) *result {
	for i := range rows {
		y := &rows[i]
		if y.impl != x.impl && y.c.Threads == x.c.Threads && y.c.Mode == x.c.Mode && y.r.Failed == "" {
			return &y.r
		}
	}
	return nil
}

func ceiling(sg []sgemmRow, threads int) float64 {
	for _, s := range sg {
		if s.threads == threads && s.ours.Failed == "" {
			return s.ours.GFLOPS
		}
	}
	return 0
}

// cores formats OtherCores.
func cores(c float64) string {
	if c < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f", c)
}

// coresCell is OtherCores with the number of runs when there were several.
func coresCell(r result) string {
	if r.Runs > 1 {
		return fmt.Sprintf("%s (best of %d runs)", cores(r.OtherCores), r.Runs)
	}
	return cores(r.OtherCores)
}

func gflopsCell(r result) string {
	if r.Failed != "" {
		return "failed: " + r.Failed
	}
	return fmt.Sprintf("%.1f", r.GFLOPS)
}

func render(sg []sgemmRow, rows []stepRow, fl flops, mach, cmd string, c config, p *plan, took time.Duration) string {
	wait, contended, retries := p.waitQuiet, p.contended, p.retries
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	benchutil.WriteHeader(&sb, "Engine speed: our training step vs PyTorch, same backbone, same step", cmd, mach, took)
	w("Settings: IR-ResNet yardstick (1×32×32, widths 32/64/128), D = %d, B = %d, FFC pool Q = %s, FC classes N = %s (labels drawn from N IDs), CosFace s = 32 m = 0.4, SGD lr %g momentum 0.9 Nesterov weight decay %g; median of %d timed steps after %d warm-up.\n\n",
		c.Dim, c.Batch, benchutil.Count(c.Pool), benchutil.Count(c.Classes), c.LR, c.WeightDecay, c.Steps, c.Warmup)

	w("## sgemm ceiling (%d×%d×%d, best of %d)\n\n", c.SgemmSize, c.SgemmSize, c.SgemmSize, c.SgemmReps)
	w("| threads | OpenBLAS sgemm, its own threads (the ceiling), GFLOP/s | our kernels/cpu Gemm as the engine runs it, GFLOP/s | PyTorch torch.mm, GFLOP/s | others' cores (ours / PyTorch) |\n")
	w("|---:|---:|---:|---:|---:|\n")
	for _, s := range sg {
		be := "—"
		if s.ours.Failed == "" {
			be = fmt.Sprintf("%.1f", s.ours.BackendGFLOPS)
		}
		w("| %d | %s | %s | %s | %s / %s |\n", s.threads, gflopsCell(s.ours), be, gflopsCell(s.torch), coresCell(s.ours), coresCell(s.torch))
	}
	w("\n## Training step\n\n")
	w("| threads | impl | mode | images/s | step ms | ours ÷ PyTorch | images/CPU-s | ours ÷ PyTorch | GFLOP/s | of sgemm | peak RSS | others' cores |\n")
	w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range rows {
		if x.r.Failed != "" {
			w("| %d | %s | %s | failed: %s | — | — | — | — | — | — | — | %s |\n", x.c.Threads, x.impl, x.c.Mode, x.r.Failed, coresCell(x.r))
			continue
		}
		ips, ipc := imagesPerS(x.r), perCPUSecond(x.r)
		rs, rc := "—", "—"
		if p := peer(rows, x); p != nil {
			if x.impl == implOurs {
				rs, rc = ratio(ips, imagesPerS(*p)), ratio(ipc, perCPUSecond(*p))
			} else {
				rs, rc = "1.00×", "1.00×"
			}
		}
		gf := fl.perStep(x.c.Mode) / (x.r.StepMS / 1e3) / 1e9
		frac := "—"
		if ceil := ceiling(sg, x.c.Threads); ceil > 0 {
			frac = fmt.Sprintf("%.0f%%", 100*gf/ceil)
		}
		w("| %d | %s | %s | %.1f | %.1f | %s | %.1f | %s | %.1f | %s | %s | %s |\n",
			x.c.Threads, x.impl, x.c.Mode, ips, x.r.StepMS, rs, ipc, rc, gf, frac, human(x.r.PeakRSS), coresCell(x.r))
	}
	w("\n")
	w("- Each row is its own process. A step is timed alone (its inputs are made before it): **ffc** is trainers/engine StepFFC (ours) and its mirror in torchref.py: the gallery's moving average, then two passes, each a gallery forward (train-mode BatchNorm, no gradient) of 1.5·B = %d rows, the pool insert, a probe forward and backward of %d rows against the pool (CosFace over Q slots for held IDs, top-K for fresh ones, both logit sets), the first pass rolled back, then one SGD step; **fc** is StepPlain: probe forward and backward of B = %d rows, CosFace over N classes (weights normalised per step), SGD on the probe and the N×D weights.\n",
		c.Batch+c.half(), c.Batch+c.half(), c.Batch)
	w("- images/s counts probe images: %d per FFC step (two passes of %d), %d per FC step, over the median step. images/CPU-s divides the images of all timed steps by the process's user+system CPU time over them (busy-waiting BLAS and OpenMP threads count).\n",
		2*(c.Batch+c.half()), c.Batch+c.half(), c.Batch)
	w("- GFLOP/s counts the backbone's convolution and linear FLOPs (%.1f MFLOP per image forward; training %.1f = 3·forward − the stem's input gradient; an FFC probe image also has a gallery forward) plus the heads' matrix products: %.1f GFLOP per FFC step, %.1f per FC step, the same count for both implementations. \"of sgemm\" divides it by the OpenBLAS sgemm ceiling at the same thread count.\n",
		fl.fwd/1e6, fl.train()/1e6, fl.ffcStep/1e9, fl.fcStep/1e9)
	w("- Peak RSS is the child's ru_maxrss (the whole process: the Go runtime or the Python interpreter with torch loaded, the networks, activations, optimizer state, pool or FC weights).\n")
	w("- Ours runs with GOMAXPROCS and the backend's threads set to the thread count (the engine's default: OpenBLAS single-threaded, each product split across that many goroutines); PyTorch with torch.set_num_threads, one inter-op thread, and OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to it (Debian's torch does convolutions in oneDNN and other products in the pthread OpenBLAS).\n")
	w("- The machine may be shared. Each child started once the machine had been quiet (others' load under %.2f cores over 2 s), waiting up to %v (0: not waited for). \"others' cores\" is the CPU time the rest of the machine used while that child ran (/proc/stat's busy time less the child's own), per second of the child's run: near 0 the child had the machine to itself; at 1 or more it competed for its cores, its wall times are slower than they would be, and OpenMP's spinning threads (PyTorch) lose far more under contention than ours do. A child whose others' cores exceeded %.2f was run again, up to %d more times, and the least contended run is shown. Compare rows whose others' cores are near 0.\n", quietBelow, wait, contended, retries)
	w("- SPEC section 5 aims at ours ≥ %.1f× PyTorch's images/s on the same machine:\n", specAim)
	for _, x := range rows {
		if x.impl != implOurs || x.r.Failed != "" {
			continue
		}
		p := peer(rows, x)
		if p == nil {
			continue
		}
		q := imagesPerS(x.r) / imagesPerS(*p)
		verdict := "met"
		if q < specAim {
			verdict = "NOT met"
		}
		w("  - %s, %d thread(s): %.2f× (%s).\n", x.c.Mode, x.c.Threads, q, verdict)
	}
	writeTargets(w, sg, rows, fl)
	return sb.String()
}

// Issue 15's other aims for our step.
const (
	aimScaling = 1.8 // images/s at 2 threads over 1 thread
	aimCeiling = 0.7 // GFLOP/s over the sgemm ceiling at the same threads
)

// writeTargets writes issue 15's other aims for our rows: the speed-up
// from 1 to 2 threads (beside PyTorch's and the sgemm ceiling's own), the
// fraction of the sgemm ceiling, and peak RSS against PyTorch's.
func writeTargets(w func(string, ...any), sg []sgemmRow, rows []stepRow, fl flops) {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	find := func(impl, mode string, threads int) *result {
		for i := range rows {
			if x := &rows[i]; x.impl == impl && x.c.Mode == mode && x.c.Threads == threads && x.r.Failed == "" {
				return &x.r
			}
		}
		return nil
	}
	w("- Issue 15's other aims, for ours:\n")
	for _, mode := range []string{"ffc", "fc"} {
		o1, o2, p1, p2 := find(implOurs, mode, 1), find(implOurs, mode, 2), find(implTorch, mode, 1), find(implTorch, mode, 2)
		if o1 != nil && o2 != nil {
			q := imagesPerS(*o2) / imagesPerS(*o1)
			peers := ""
			if p1 != nil && p2 != nil {
				peers = fmt.Sprintf("; PyTorch %.2f×", imagesPerS(*p2)/imagesPerS(*p1))
			}
			if c1, c2 := ceiling(sg, 1), ceiling(sg, 2); c1 > 0 && c2 > 0 {
				peers += fmt.Sprintf("; the sgemm ceiling itself %.2f×", c2/c1)
			}
			w("  - %s from 1 to 2 threads: %.2f× (aim ≥ %.1f×: %s%s).\n", mode, q, aimScaling, verdict(q >= aimScaling), peers)
		}
		for i, x := range []*result{o1, o2} {
			threads := i + 1
			if x == nil {
				continue
			}
			if ceil := ceiling(sg, threads); ceil > 0 {
				f := fl.perStep(mode) / (x.StepMS / 1e3) / 1e9 / ceil
				w("  - %s at %d thread(s): %.1f%% of the sgemm ceiling (aim ≥ %.0f%%: %s).\n", mode, threads, 100*f, 100*aimCeiling, verdict(f >= aimCeiling))
			}
			if p := find(implTorch, mode, threads); p != nil && x.PeakRSS > 0 && p.PeakRSS > 0 {
				w("  - %s at %d thread(s): peak RSS %s against PyTorch's %s (aim: no higher: %s).\n", mode, threads, human(x.PeakRSS), human(p.PeakRSS), verdict(x.PeakRSS <= p.PeakRSS))
			}
		}
	}
}
