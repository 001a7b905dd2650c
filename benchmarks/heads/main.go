// Command heads measures the step time and the peak memory of the three
// classification heads side by side — FFC (Dynamic Class Pool of Q slots),
// full FC and Partial FC (N×D weights) — for a list of class counts N, and
// prints their ratios (SPEC section 5: "head step time and memory: FFC vs FC
// vs Partial FC at the same N, as ratios in one run").
//
//	go run ./benchmarks/heads                       # the default sweep, ~3–5 min on 2 cores
//	go run ./benchmarks/heads --n 10k,100k --steps 3
//
// Every configuration (N, Q, head) runs in a child process (this binary
// re-executed with --child) so that its peak RSS (VmHWM of
// /proc/self/status, read at the end of the child) is its own. Before
// allocating, a child estimates the head's memory and refuses when it would
// not fit in MemAvailable minus a headroom (--headroom-gib), printing
// "refused: needs X GiB, Y GiB available" as that cell's result.
//
// One step is, for FC and Partial FC, Loss + Step on B random L2-normalised
// features with random labels in [0, N); for FFC (centers.NewPool +
// centers.NewFFC), BeginPass + Insert of 1.5·B gallery features + Loss of
// the B probe features, where the gallery labels are the first B/2 probe
// labels twice (inserted, then refreshed) and B/2 other random labels: half
// the probe rows are held (margin softmax over Q), half fresh (top-K), and
// both logit sets are computed (the second only in its refreshed
// columns). The step time is the median over --steps timed steps after
// --warmup untimed ones; configurations whose matrix products exceed
// --big-gflop per step run --big-steps timed steps instead.
//
// The results are printed as a markdown table and written to --out
// (benchmarks/heads/RESULTS.md by default) with the command and machine.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// config is one child run.
type config struct {
	Head     string  `json:"head"` // ffc, fc, pfc
	N        int     `json:"n"`
	Q        int     `json:"q"` // FFC only
	Dim      int     `json:"dim"`
	Batch    int     `json:"batch"`
	Warmup   int     `json:"warmup"`
	Steps    int     `json:"steps"`
	Rate     float64 `json:"rate"`
	Backend  string  `json:"backend"`
	Threads  int     `json:"threads"`
	Headroom float64 `json:"headroom_gib"`
}

// result is what a child reports (one JSON line prefixed with resultTag).
type result struct {
	Refused  string    `json:"refused,omitempty"`
	Failed   string    `json:"failed,omitempty"`
	Backend  string    `json:"backend,omitempty"`
	StepMS   float64   `json:"step_ms"`
	Steps    []float64 `json:"steps_ms,omitempty"`
	PeakRSS  int64     `json:"peak_rss"`
	Estimate int64     `json:"estimate"`
	Loss     float64   `json:"loss"`
	InitS    float64   `json:"init_s"`
}

const resultTag = "HEADS-RESULT "

const gib = 1 << 30

// baseline is the memory a child needs besides the head's own estimate:
// the Go runtime, OpenBLAS's buffers, the features and their gradient.
func baseline(c config) int64 {
	return 32<<20 + 4*int64(c.Batch)*int64(c.Dim)*4
}

// estimate is the bytes the configuration needs.
func estimate(c config) int64 {
	var head int64
	switch c.Head {
	case "fc":
		head = centers.FCMemory(c.N, c.Dim, c.Batch)
	case "pfc":
		head = centers.PFCMemory(c.N, c.Dim, c.Batch, c.Rate)
	case "ffc":
		head = centers.FFCMemory(c.Q, c.Dim, c.Batch, 3*c.Batch/2)
	}
	return head + baseline(c)
}

// gflopPerStep is the matrix-product work of one step (for picking the
// step count and for reporting).
func gflopPerStep(c config) float64 {
	bd := 2 * float64(c.Batch) * float64(c.Dim)
	switch c.Head {
	case "fc":
		return 3 * bd * float64(c.N) / 1e9
	case "pfc":
		return 3 * bd * float64(min(c.N, max(int(math.Ceil(c.Rate*float64(c.N))), c.Batch))) / 1e9
	case "ffc":
		// Two B×Q×D products (the second logit set differs from the first
		// only in the refreshed columns) and the small refreshed ones.
		return (2*bd*float64(c.Q) + 2*bd*float64(3*c.Batch/2)) / 1e9
	}
	return 0
}

func main() {
	f := parseFlags()
	if f.child != "" {
		if err := benchutil.RunChild(f.child, resultTag, measure); err != nil {
			fatal(err)
		}
		return
	}
	s, err := newSweep(f)
	if err != nil {
		fatal(err)
	}
	start, loadStart := time.Now(), benchutil.LoadAvg()
	rows, backendName := s.runAll()
	if backendName == "" {
		backendName = f.backend
	}
	report := render(rows, machine(backendName, loadStart), benchutil.Command("heads"), f.rate, f.steps, f.warmup, f.bigSteps, f.bigGFlop, f.headroom, time.Since(start))
	fmt.Print(report)
	if f.out != "" {
		if err := os.WriteFile(f.out, []byte(report), 0o644); err != nil {
			fatal(err)
		}
		fmt.Fprintf(os.Stderr, "heads: wrote %s\n", f.out)
	}
}

type row struct {
	n, q int
	head string
	r    result
	ffc  *result
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "heads:", err)
	os.Exit(2)
}

// spawn runs one configuration in a child process and parses its report.
func spawn(self string, c config, timeout time.Duration) result {
	js, _ := json.Marshal(c)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "--child", string(js))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	for _, line := range strings.Split(stdout.String(), "\n") {
		if s, ok := strings.CutPrefix(line, resultTag); ok {
			var r result
			if jerr := json.Unmarshal([]byte(s), &r); jerr == nil {
				return r
			}
		}
	}
	msg := strings.TrimSpace(stderr.String())
	if len(msg) > 300 {
		msg = "…" + msg[len(msg)-300:]
	}
	switch {
	case ctx.Err() != nil:
		return result{Failed: fmt.Sprintf("timed out after %v", timeout)}
	case err != nil:
		return result{Failed: fmt.Sprintf("%v: %s", err, msg)}
	}
	return result{Failed: "no result from the child: " + msg}
}

// measure runs configuration c in this (child) process.
func measure(c config) (r result) {
	r.Estimate = estimate(c)
	avail, err := memAvailable()
	if err != nil {
		r.Failed = err.Error()
		return r
	}
	usable := avail - int64(c.Headroom*gib)
	if r.Estimate > usable {
		r.Refused = fmt.Sprintf("needs %.1f GiB, %.1f GiB available (MemAvailable %.1f GiB − %.0f GiB headroom)",
			float64(r.Estimate)/gib, math.Max(0, float64(usable)/gib), float64(avail)/gib, c.Headroom)
		return r
	}
	if c.Backend != "cpu" && c.Backend != "cpu-go" {
		r.Failed = fmt.Sprintf("unknown backend %q (cpu, cpu-go)", c.Backend)
		return r
	}
	be, err := cpu.New(cpu.Options{Threads: c.Threads, PureGoGEMM: c.Backend == "cpu-go"})
	if err != nil {
		r.Failed = err.Error()
		return r
	}
	r.Backend = be.Name()
	t0 := time.Now()
	step, err := setup(be, c)
	if err != nil {
		r.Failed = err.Error()
		return r
	}
	r.InitS = time.Since(t0).Seconds()
	for i := 0; i < c.Warmup+c.Steps; i++ {
		t := time.Now()
		loss, err := step()
		if err == nil {
			err = be.Sync()
		}
		if err != nil {
			r.Failed = fmt.Sprintf("step %d: %v", i, err)
			return r
		}
		r.Loss = loss
		if i >= c.Warmup {
			r.Steps = append(r.Steps, float64(time.Since(t).Microseconds())/1e3)
		}
	}
	r.StepMS = benchutil.Median(r.Steps)
	if r.PeakRSS, err = vmHWM(); err != nil {
		r.Failed = err.Error()
	}
	return r
}

// setup builds the head and its inputs and returns one step.
func setup(be kernels.Backend, c config) (func() (float64, error), error) {
	rng := rand.New(rand.NewPCG(1, uint64(c.N)))
	b, d := c.Batch, c.Dim
	p, err := benchutil.UnitBuffer(be, rng, b, d)
	if err != nil {
		return nil, err
	}
	dp, err := be.Alloc(b * d)
	if err != nil {
		return nil, err
	}
	labels := make([]int64, b)
	randomLabels := func(dst []int64) {
		for i := range dst {
			dst[i] = int64(rng.IntN(c.N))
		}
	}
	margin := kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}
	sgd := kernels.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true}
	const lr = 0.1
	switch c.Head {
	case "fc", "pfc":
		var h centers.Head
		if c.Head == "fc" {
			h, err = centers.NewFC(be, centers.FCOptions{Classes: c.N, Dim: d, Margin: margin, MaxBatch: b, SGD: sgd, Seed: 1})
		} else {
			h, err = centers.NewPFC(be, centers.PFCOptions{Classes: c.N, Dim: d, Margin: margin, MaxBatch: b, SGD: sgd, Seed: 1, Rate: c.Rate})
		}
		if err != nil {
			return nil, err
		}
		// Touch the momentum: training touches every row of it sooner or
		// later (Partial FC only the sampled rows per step), so steady-state
		// RSS includes all of it.
		var v kernels.Buffer
		if fc, ok := h.(*centers.FC); ok {
			v = fc.Momentum()
		} else {
			v = h.(*centers.PFC).Momentum()
		}
		if err := be.Fill(c.N*d, 0, v); err != nil {
			return nil, err
		}
		return func() (float64, error) {
			randomLabels(labels)
			out, err := h.Loss(p, labels, dp)
			if err != nil {
				return 0, err
			}
			return out.Loss, h.Step(lr)
		}, nil
	case "ffc":
		ins := 3 * b / 2
		pool, err := centers.NewPool(be, centers.PoolOptions{Slots: c.Q, Dim: d, MaxBatch: ins, Seed: 1})
		if err != nil {
			return nil, err
		}
		h, err := centers.NewFFC(be, pool, centers.FFCOptions{Margin: margin, MaxBatch: b})
		if err != nil {
			return nil, err
		}
		g, err := benchutil.UnitBuffer(be, rng, ins, d)
		if err != nil {
			return nil, err
		}
		gl := make([]int64, ins)
		return func() (float64, error) {
			randomLabels(labels)
			copy(gl, labels[:b/2])
			copy(gl[b/2:], labels[:b/2])
			randomLabels(gl[b:])
			if err := pool.BeginPass(); err != nil {
				return 0, err
			}
			if _, err := pool.Insert(g, gl); err != nil {
				return 0, err
			}
			out, err := h.Loss(p, labels, dp)
			return out.Total, err
		}, nil
	}
	return nil, fmt.Errorf("unknown head %q", c.Head)
}

// procField returns the value in kB of a "Name:   123 kB" line of a /proc
// file, in bytes.
func procField(path, name string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			fs := strings.Fields(v)
			if len(fs) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %s: %w", path, name, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, name)
}

func memAvailable() (int64, error) { return procField("/proc/meminfo", "MemAvailable") }

func vmHWM() (int64, error) { return procField("/proc/self/status", "VmHWM") }

// machine describes the host: cores, CPU model, memory, load (the machine
// is shared: other work shows as load above the core count), backend.
func machine(backend, loadStart string) string {
	load := fmt.Sprintf(", load average %s at the start, %s at the end", loadStart, benchutil.LoadAvg())
	return fmt.Sprintf("%d cores (GOMAXPROCS %d), %s, %.0f GiB RAM%s; backend %s; %s %s/%s",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), benchutil.CPUModel(), benchutil.MemTotalGiB(), load, backend, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func human(b int64) string {
	switch {
	case b >= gib:
		return fmt.Sprintf("%.2f GiB", float64(b)/gib)
	default:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	}
}

func ratio(a, b float64) string {
	if !(a > 0 && b > 0) {
		return "—"
	}
	r := a / b
	if r >= 10 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

func render(rows []row, mach, cmd string, rate float64, steps, warmup, bigSteps int, bigGFlop, headroom float64, took time.Duration) string {
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format, a...) }
	benchutil.WriteHeader(&sb, "Head step time and memory: FFC vs FC vs Partial FC", cmd, mach, took)
	w("| N | Q | head | step ms | peak RSS | mem estimate | time ÷ FFC | RSS ÷ FFC |\n")
	w("|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, x := range rows {
		q := benchutil.Count(x.q)
		if x.head != "FFC" {
			q = "(" + q + ")"
		}
		var ms, rss, est, tr, mr string
		switch {
		case x.r.Refused != "":
			ms, rss, est, tr, mr = "refused: "+x.r.Refused, "—", "—", "—", "—"
			if x.r.Estimate > 0 {
				est = human(x.r.Estimate)
			}
		case x.r.Failed != "":
			ms, rss, est, tr, mr = "failed: "+x.r.Failed, "—", "—", "—", "—"
		default:
			ms = fmt.Sprintf("%.1f", x.r.StepMS)
			rss, est = human(x.r.PeakRSS), human(x.r.Estimate)
			tr, mr = "—", "—"
			if f := x.ffc; f != nil && f.Refused == "" && f.Failed == "" {
				tr, mr = ratio(x.r.StepMS, f.StepMS), ratio(float64(x.r.PeakRSS), float64(f.PeakRSS))
			}
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", benchutil.Count(x.n), q, x.head, ms, rss, est, tr, mr)
	}
	w("\n")
	w("- Each row is its own process; peak RSS is its VmHWM at the end (the whole process: Go runtime, OpenBLAS, features included; the FC/Partial FC momentum is touched once at start, as training eventually does). FC and Partial FC do not depend on Q: their rows repeat the same measurement next to each FFC pool size, in parentheses.\n")
	w("- Ratios are this head's step time (peak RSS) divided by FFC's at the same N and Q; FFC rows read 1.00×.\n")
	w("- A step: FC and Partial FC (rate %g, sampled classes = all positives + uniform others up to ceil(rate·N)) run Loss + SGD Step (momentum 0.9, Nesterov, wd 1e-4) on B random unit features with random labels; FFC runs BeginPass + Insert of 1.5·B gallery features (the first B/2 probe labels twice, so they are refreshed, + B/2 random labels) + Loss (half the rows held: margin softmax over Q; half fresh: top-K), both logit sets computed (the second only in its refreshed columns: centers.FFC). CosFace s=32 m=0.4.\n", rate)
	w("- Step ms is the median of %d timed steps after %d warm-up step(s); configurations above %.0f GFLOP of matrix products per step (FC at N ≥ 1M) time %d step(s) to stay within the run budget.\n", steps, warmup, bigGFlop, bigSteps)
	w("- Refusals: a configuration is refused when its estimate (the centers *Memory functions + ~40 MiB of process baseline) exceeds MemAvailable − %.0f GiB; FFC is refused when Q < 1.5·B, as the trainer does (SPEC section 2).\n", headroom)
	w("- The machine may be shared: a load average above the core count means other work competed for the cores during the run, and step times then vary between runs by 2× or more; the memory columns do not.\n")
	w("- SPEC target: FFC at N = 1M at least 10× faster and 20× smaller than FC. For reference, the matrix-product work of FC over FFC is about 3N/(2Q) (three B×N×D products against two B×Q×D ones: the second logit set differs from the first only in the refreshed columns), and the memory about 4N·D + B·N against 2Q·D + c·Q floats (c = centers.DefaultChunkRows, the probe rows whose logits are held at once, 64 at Q = 100k and B = 256): at Q = 10%% of N about 15× and 20×.\n")
	for _, x := range rows {
		if x.n != 1_000_000 || x.head != "FC" || x.ffc == nil || x.r.Refused != "" || x.r.Failed != "" || x.ffc.Refused != "" || x.ffc.Failed != "" {
			continue
		}
		t := x.r.StepMS / x.ffc.StepMS
		m := float64(x.r.PeakRSS) / float64(x.ffc.PeakRSS)
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		w("  - N = 1M, Q = %s: FC/FFC time %.1f× (%s), memory %.1f× (%s).\n", benchutil.Count(x.q), t, verdict(t >= 10), m, verdict(m >= 20))
	}
	return sb.String()
}
