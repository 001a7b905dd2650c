// Command torchref measures our training step beside a PyTorch
// implementation of the same backbone and the same step (issue 15, "Engine
// speed"; SPEC section 5: the authors' FFC on PyTorch runs the yardstick at
// about 160 probe images/s on 2 cores, and our CPU engine aims at 1.5× that).
//
//	go run ./benchmarks/torchref                          # 20 steps after 3 warm-up, 1 and 2 threads, ~4 min on 2 cores
//	go run ./benchmarks/torchref --steps 5 --warmup 1 --threads 2
//	go run ./benchmarks/torchref --quick                   # seconds: tiny batch, to see that it runs
//	go run ./benchmarks/torchref train --protocol last-image --out runs/torch-fc   # PyTorch full-FC training (train.go)
//
// It first measures the sgemm ceiling of the machine on each thread count
// (OpenBLAS with its own threads; our kernels/cpu Gemm as the engine runs
// it, single-threaded OpenBLAS on bands split across goroutines; and
// torch.mm), then runs, at each thread count and for each mode, our step
// and the PyTorch one, each in its own child process (this binary
// re-executed with --child, and torchref.py, embedded in the binary, under
// the Python that has torch):
//
//   - ffc: trainers/engine StepFFC, the IR-ResNet yardstick with the FFC
//     head: two passes, each a gallery forward (train-mode BatchNorm, no
//     gradient) of 1.5·B rows, a pool insert, a probe forward and backward
//     of 1.5·B rows against the pool (CosFace over Q slots, top-K for fresh
//     IDs), the first pass rolled back; the gallery's moving average and
//     one SGD step (momentum 0.9, Nesterov, weight decay on conv and linear
//     weights). torchref.py does the same passes in the same order;
//   - fc: StepPlain with the full FC head (CosFace over N classes, N×D
//     weights trained by the same SGD) on B images.
//
// Inputs are random images in [−1, 1]; labels are drawn uniformly from N
// IDs (B ids for the id pairs, B instances), so with Q = N/10 (the
// trainer's default pool) the pool's hits, fresh IDs and refreshes mix as
// in training. Each child times its steps alone (inputs are made outside
// the timed region), reports the median step, the process CPU time over
// the timed steps and its peak RSS (getrusage ru_maxrss, the same measure
// on both sides) as one JSON line.
//
// The table gives images/s (probe images: 3·B per FFC step, B per FC
// step), ours ÷ PyTorch, images per CPU-second, the achieved GFLOP/s (the
// backbone's convolution and linear FLOPs, trainers/nn's FLOPs(), training
// = 3·forward − the stem's input gradient, plus the FFC gallery forwards
// and the heads' matrix products) as a fraction of the sgemm ceiling, and
// peak RSS; it is printed as markdown and written to --out
// (benchmarks/torchref/RESULTS.md by default) with the command and machine.
//
// The machines are shared: before each child the parent waits (up to
// --wait-quiet) for the rest of the machine to be idle, measures the cores
// others kept busy while the child ran (/proc/stat), runs a contended
// child again (--retries, --contended) and shows the least contended run
// with that measure, so a row that competed for its cores says so.
//
// PyTorch comes from Debian's python3-torch (1.13): /usr/bin/python3, or
// the interpreter named by --python or FFC_TORCH_PYTHON. Without it the
// PyTorch rows say why.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
)

//go:embed torchref.py
var torchScript []byte

// resultTag prefixes the result line of a Go child.
const resultTag = "TORCHREF-RESULT "

// Implementations.
const (
	implOurs  = "ours"
	implTorch = "pytorch"
)

// config is the settings of one child run; the PyTorch child gets the
// same as flags.
type config struct {
	Mode        string  `json:"mode"` // ffc, fc or sgemm
	Threads     int     `json:"threads"`
	Batch       int     `json:"batch"`
	Dim         int     `json:"dim"`
	Pool        int     `json:"pool"`
	Classes     int     `json:"classes"`
	Steps       int     `json:"steps"`
	Warmup      int     `json:"warmup"`
	Seed        uint64  `json:"seed"`
	LR          float64 `json:"lr"`
	WeightDecay float64 `json:"weight_decay"`
	SgemmSize   int     `json:"sgemm_size"`
	SgemmReps   int     `json:"sgemm_reps"`
}

// half is the rows of each instance half: x = [a1; h1] has Batch + half
// rows.
func (c config) half() int { return (c.Batch + 1) / 2 }

// imagesPerStep is the probe images of one step: both FFC passes run the
// probe on Batch + half rows; an FC step on Batch.
func (c config) imagesPerStep() int {
	if c.Mode == "ffc" {
		return 2 * (c.Batch + c.half())
	}
	return c.Batch
}

// torchArgs are the flags of torchref.py for c.
func (c config) torchArgs() []string {
	a := []string{"--mode", c.Mode, "--threads", strconv.Itoa(c.Threads), "--seed", strconv.FormatUint(c.Seed, 10)}
	if c.Mode == "sgemm" {
		return append(a, "--sgemm-size", strconv.Itoa(c.SgemmSize), "--sgemm-reps", strconv.Itoa(c.SgemmReps))
	}
	return append(a, "--steps", strconv.Itoa(c.Steps), "--warmup", strconv.Itoa(c.Warmup),
		"--batch", strconv.Itoa(c.Batch), "--dim", strconv.Itoa(c.Dim), "--pool", strconv.Itoa(c.Pool),
		"--classes", strconv.Itoa(c.Classes), "--lr", strconv.FormatFloat(c.LR, 'g', -1, 64),
		"--weight-decay", strconv.FormatFloat(c.WeightDecay, 'g', -1, 64))
}

// result is what a child reports, Go or PyTorch (the JSON of torchref.py).
type result struct {
	Impl          string    `json:"impl"`
	Mode          string    `json:"mode"`
	Threads       int       `json:"threads"`
	Backend       string    `json:"backend,omitempty"` // ours
	Torch         string    `json:"torch,omitempty"`   // PyTorch's version
	MKLDNN        bool      `json:"mkldnn,omitempty"`
	Python        string    `json:"python,omitempty"`
	ImagesPerStep int       `json:"images_per_step"`
	StepMS        float64   `json:"step_ms"`
	StepsMS       []float64 `json:"steps_ms,omitempty"`
	ImagesPerS    float64   `json:"images_per_s"`
	CPUSeconds    float64   `json:"cpu_seconds"`
	PeakRSS       int64     `json:"peak_rss_bytes"`
	Loss          float64   `json:"loss"`
	GFLOPS        float64   `json:"gflops,omitempty"` // sgemm: OpenBLAS's own threads; torch.mm
	// BackendGFLOPS is our backend's Gemm as the engine runs it (sgemm).
	BackendGFLOPS float64 `json:"backend_gflops,omitempty"`
	Failed        string  `json:"failed,omitempty"`
	// OtherCores is measured by the parent: the cores the rest of the
	// machine kept busy while the child ran (−1: unknown).
	OtherCores float64 `json:"-"`
	// Runs is the number of times the parent ran the child to get a run
	// that did not compete for its cores (see plan.attempts).
	Runs int `json:"-"`
}

// check validates a child's report against its configuration: a PyTorch
// step that does other work than ours must not pass for a comparison.
func (r result) check(c config) error {
	if r.Failed != "" {
		return errors.New(r.Failed)
	}
	if r.Mode != c.Mode {
		return fmt.Errorf("reported mode %q, want %q", r.Mode, c.Mode)
	}
	if r.Threads != c.Threads {
		return fmt.Errorf("ran on %d threads, want %d", r.Threads, c.Threads)
	}
	if c.Mode == "sgemm" {
		if !(r.GFLOPS > 0) {
			return fmt.Errorf("sgemm reported %g GFLOP/s", r.GFLOPS)
		}
		return nil
	}
	if r.ImagesPerStep != c.imagesPerStep() {
		return fmt.Errorf("reported %d probe images per step, want %d", r.ImagesPerStep, c.imagesPerStep())
	}
	if len(r.StepsMS) != c.Steps || !(r.StepMS > 0) || !(r.CPUSeconds >= 0) || r.PeakRSS <= 0 {
		return fmt.Errorf("incomplete report: %d step times (want %d), median %g ms, %g CPU s, peak RSS %d",
			len(r.StepsMS), c.Steps, r.StepMS, r.CPUSeconds, r.PeakRSS)
	}
	return nil
}

// flags are the command-line settings.
type flags struct {
	child, threads, modes, python, out string
	quick                              bool
	base                               config
	timeout, waitQuiet                 time.Duration
	retries                            int
	contended                          float64
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("torchref", flag.ContinueOnError)
	fs.StringVar(&f.child, "child", "", "internal: run one configuration (JSON) and report it")
	fs.StringVar(&f.threads, "threads", "1,2", "thread counts to compare at (comma-separated)")
	fs.StringVar(&f.modes, "modes", "ffc,fc", "steps to compare: ffc, fc")
	fs.IntVar(&f.base.Steps, "steps", 20, "timed steps per run (median reported)")
	fs.IntVar(&f.base.Warmup, "warmup", 3, "untimed warm-up steps per run")
	fs.IntVar(&f.base.Batch, "batch", 64, "B: id pairs (and instances) per FFC step, images per FC step")
	fs.IntVar(&f.base.Dim, "dim", 128, "D, the embedding size")
	fs.IntVar(&f.base.Pool, "pool", 1000, "Q, the FFC pool's slots")
	fs.IntVar(&f.base.Classes, "classes", 10000, "N: the FC head's classes and the IDs labels are drawn from")
	fs.Uint64Var(&f.base.Seed, "seed", 1, "seed of the weights, the pool and the inputs")
	fs.Float64Var(&f.base.LR, "lr", 0.1, "learning rate (constant)")
	fs.Float64Var(&f.base.WeightDecay, "weight-decay", 5e-4, "SGD weight decay (conv and linear weights, FC weights)")
	fs.IntVar(&f.base.SgemmSize, "sgemm-size", 2048, "S of the S×S×S sgemm ceiling")
	fs.IntVar(&f.base.SgemmReps, "sgemm-reps", 3, "timed sgemm repetitions (the best is reported)")
	fs.StringVar(&f.python, "python", "", "Python with torch (default: $FFC_TORCH_PYTHON, else /usr/bin/python3, else python3)")
	fs.BoolVar(&f.quick, "quick", false, "tiny settings (B 8, D 32, Q 24, N 200, 2 steps after 1, sgemm 256) to check that everything runs")
	fs.StringVar(&f.out, "out", "benchmarks/torchref/RESULTS.md", "write the results here (empty: do not write)")
	fs.DurationVar(&f.timeout, "child-timeout", 10*time.Minute, "limit for one child")
	fs.IntVar(&f.retries, "retries", 2, "run a child again, up to this many times, when others kept more than --contended cores busy during it (the least contended run is kept)")
	fs.Float64Var(&f.contended, "contended", 0.3, "others' busy cores above which a child's run counts as contended")
	fs.DurationVar(&f.waitQuiet, "wait-quiet", 2*time.Minute, "before each child, wait up to this long for the machine to be quiet (others' load under 0.15 cores for 2 s); 0: do not wait")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.quick {
		f.base.Batch, f.base.Dim, f.base.Pool, f.base.Classes = 8, 32, 24, 200
		f.base.Steps, f.base.Warmup, f.base.SgemmSize, f.base.SgemmReps = 2, 1, 256, 1
	}
	return f, nil
}

// plan is what the parent runs.
type plan struct {
	base    config
	threads []int
	modes   []string
	self    []string // the command that runs a Go child: self..., "--child", JSON
	python  string   // interpreter with torch ("" when none: pyErr says why)
	pyErr   error
	script  string // torchref.py on disk
	timeout time.Duration
	// waitQuiet bounds the wait for a quiet machine before each child.
	waitQuiet time.Duration
	// retries and contended: see attempts.
	retries   int
	contended float64
	log       func(format string, a ...any) // progress; nil: none
}

func newPlan(f flags) (*plan, error) {
	p := &plan{base: f.base, timeout: f.timeout, waitQuiet: f.waitQuiet, retries: max(f.retries, 0), contended: f.contended}
	ts, err := benchutil.ParseCounts(f.threads)
	if err != nil {
		return nil, fmt.Errorf("--threads %q: %w", f.threads, err)
	}
	p.threads = ts
	for _, m := range strings.Split(f.modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "ffc", "fc":
			p.modes = append(p.modes, m)
		case "":
		default:
			return nil, fmt.Errorf("--modes: unknown mode %q (ffc, fc)", m)
		}
	}
	b := f.base
	var errs []error
	if len(p.modes) == 0 {
		errs = append(errs, errors.New("--modes: none given"))
	}
	if b.Steps < 1 || b.Warmup < 0 || b.Batch < 2 || b.Dim < 1 || b.Classes < 1 || b.SgemmSize < 1 || b.SgemmReps < 1 {
		errs = append(errs, fmt.Errorf("need --steps ≥ 1, --warmup ≥ 0, --batch ≥ 2, --dim ≥ 1, --classes ≥ 1, --sgemm-size ≥ 1, --sgemm-reps ≥ 1"))
	}
	if w := b.Batch + b.half(); b.Pool < w {
		errs = append(errs, fmt.Errorf("--pool %d is below the %d gallery features one FFC pass writes (1.5·batch)", b.Pool, w))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p.self = []string{exe}
	p.python, p.pyErr = torchPython(f.python)
	return p, nil
}

// torchPython returns an interpreter that imports torch: explicit, else
// $FFC_TORCH_PYTHON, else /usr/bin/python3 (Debian's python3-torch; the
// python3 first on PATH may be another one), else python3.
func torchPython(explicit string) (string, error) {
	cands := []string{explicit}
	if explicit == "" {
		cands = []string{os.Getenv("FFC_TORCH_PYTHON"), "/usr/bin/python3", "python3"}
	}
	var errs []error
	for _, py := range cands {
		if py == "" {
			continue
		}
		out, err := exec.Command(py, "-c", "import torch; print(torch.__version__)").CombinedOutput()
		if err == nil {
			return py, nil
		}
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		errs = append(errs, fmt.Errorf("%s: %v %s", py, err, msg))
	}
	return "", fmt.Errorf("no Python with torch (apt-get install python3-torch, or set FFC_TORCH_PYTHON): %w", errors.Join(errs...))
}

// writeScript puts the embedded torchref.py into dir.
func writeScript(dir string) (string, error) {
	path := filepath.Join(dir, "torchref.py")
	return path, os.WriteFile(path, torchScript, 0o644)
}

// sgemmRow is the ceiling at one thread count.
type sgemmRow struct {
	threads     int
	ours, torch result
}

// stepRow is one step measured on one side.
type stepRow struct {
	c    config
	impl string
	r    result
}

// runAll measures everything: the sgemm ceilings, then for each thread
// count and mode our step and PyTorch's, one after the other.
func (p *plan) runAll() ([]sgemmRow, []stepRow) {
	var sg []sgemmRow
	var rows []stepRow
	for _, t := range p.threads {
		c := p.base
		c.Mode, c.Threads = "sgemm", t
		sg = append(sg, sgemmRow{threads: t, ours: p.runGo(c), torch: p.runTorch(c)})
	}
	for _, t := range p.threads {
		for _, m := range p.modes {
			c := p.base
			c.Mode, c.Threads = m, t
			rows = append(rows, stepRow{c: c, impl: implOurs, r: p.runGo(c)}, stepRow{c: c, impl: implTorch, r: p.runTorch(c)})
		}
	}
	return sg, rows
}

func (p *plan) logf(format string, a ...any) {
	if p.log != nil {
		p.log(format, a...)
	}
}

// report logs one child's outcome.
func (p *plan) report(c config, r result) {
	switch {
	case r.Failed != "":
		p.logf("torchref: %s %s, %d thread(s): failed: %s", r.Impl, c.Mode, c.Threads, r.Failed)
	case c.Mode == "sgemm":
		p.logf("torchref: %s sgemm, %d thread(s): %.1f GFLOP/s (others' cores %s)", r.Impl, c.Threads, r.GFLOPS, cores(r.OtherCores))
	default:
		p.logf("torchref: %s %s, %d thread(s): %.1f images/s, %.1f ms a step (others' cores %s)", r.Impl, c.Mode, c.Threads, imagesPerS(r), r.StepMS, cores(r.OtherCores))
	}
}

func (p *plan) runGo(c config) result {
	js, err := json.Marshal(c)
	if err != nil {
		return result{Failed: err.Error()}
	}
	args := append(append([]string(nil), p.self[1:]...), "--child", string(js))
	return p.attempts(c, implOurs, func() result {
		return p.spawn(c, p.self[0], args, func(line string) (string, bool) { return strings.CutPrefix(line, resultTag) })
	})
}

func (p *plan) runTorch(c config) result {
	if p.pyErr != nil {
		return result{Impl: implTorch, Failed: p.pyErr.Error()}
	}
	args := append([]string{p.script}, c.torchArgs()...)
	return p.attempts(c, implTorch, func() result {
		return p.spawn(c, p.python, args, func(line string) (string, bool) { return line, strings.HasPrefix(line, "{") })
	})
}

// attempts runs a child, and again (up to p.retries more times) while the
// rest of the machine kept more than p.contended cores busy during it; it
// keeps the least contended successful run, with the number of runs made.
func (p *plan) attempts(c config, impl string, run func() result) result {
	var best result
	n := 0
	for n <= p.retries {
		r := run()
		n++
		r.Impl = impl
		p.report(c, r)
		if best.Impl == "" || (best.Failed != "" && r.Failed == "") ||
			(r.Failed == "" && r.OtherCores >= 0 && (best.OtherCores < 0 || r.OtherCores < best.OtherCores)) {
			best = r
		}
		if r.Failed != "" || r.OtherCores < 0 || r.OtherCores <= p.contended {
			break
		}
	}
	best.Runs = n
	return best
}

// spawn runs a child, finds its JSON result line and checks it.
func (p *plan) spawn(c config, name string, args []string, pick func(string) (string, bool)) result {
	if p.waitQuiet > 0 {
		waitQuiet(p.waitQuiet, 2*time.Second, p.logf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	busy0, berr := busyCPU()
	if berr != nil {
		busy0 = -1
	}
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0).Seconds()
	others := -1.0
	if busy1, berr := busyCPU(); berr == nil && cmd.ProcessState != nil {
		others = otherCores(busy0, busy1, (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), wall)
	}
	r := result{OtherCores: others}
	found := false
	for _, line := range strings.Split(stdout.String(), "\n") {
		if s, ok := pick(line); ok {
			if jerr := json.Unmarshal([]byte(s), &r); jerr == nil {
				found = true
			}
		}
	}
	msg := strings.TrimSpace(stderr.String())
	if len(msg) > 300 {
		msg = "…" + msg[len(msg)-300:]
	}
	switch {
	case ctx.Err() != nil:
		return result{Failed: fmt.Sprintf("timed out after %v", p.timeout), OtherCores: others}
	case !found && err != nil:
		return result{Failed: fmt.Sprintf("%v: %s", err, msg), OtherCores: others}
	case !found:
		return result{Failed: "no result from the child: " + msg, OtherCores: others}
	}
	r.OtherCores = others
	if cerr := r.check(c); cerr != nil {
		r.Failed = cerr.Error()
	}
	return r
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "torchref:", err)
	os.Exit(2)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "train" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runTrain(ctx, os.Args[2:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, pflag.ErrHelp) {
			fatal(err)
		}
		return
	}
	f, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fatal(err)
	}
	if f.child != "" {
		if err := benchutil.RunChild(f.child, resultTag, measure); err != nil {
			fatal(err)
		}
		return
	}
	p, err := newPlan(f)
	if err != nil {
		fatal(err)
	}
	p.log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	if p.pyErr != nil {
		p.logf("torchref: the PyTorch side will not run: %v", p.pyErr)
	}
	dir, err := os.MkdirTemp("", "torchref-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	if p.script, err = writeScript(dir); err != nil {
		fatal(err)
	}
	start, loadStart := time.Now(), benchutil.LoadAvg()
	sg, rows := p.runAll()
	cmd := benchutil.Command("torchref")
	fl, err := countFLOPs(p.base)
	if err != nil {
		fatal(err)
	}
	report := render(sg, rows, fl, machine(sg, rows, loadStart), cmd, p.base, p, time.Since(start))
	fmt.Print(report)
	if f.out != "" {
		if err := os.WriteFile(f.out, []byte(report), 0o644); err != nil {
			fatal(err)
		}
		fmt.Fprintf(os.Stderr, "torchref: wrote %s\n", f.out)
	}
}
