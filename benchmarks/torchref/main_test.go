package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// TestMain lets the test binary act as the Go child the driver re-executes
// ("--child JSON"), as the command does.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "--child" {
		if err := benchutil.RunChild(os.Args[2], resultTag, measure); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// requireTorch returns the Python with torch, or skips the test (fails it
// with FFC_REQUIRE_REAL=1, as CI sets).
func requireTorch(t *testing.T) string {
	t.Helper()
	py, err := torchPython("")
	if err != nil {
		if os.Getenv("FFC_REQUIRE_REAL") == "1" {
			t.Fatalf("FFC_REQUIRE_REAL=1: %v", err)
		}
		t.Skipf("PyTorch side not checked: %v", err)
	}
	return py
}

func writeFloats(t *testing.T, path string, v []float32) {
	t.Helper()
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFloats(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// forward runs net on x and returns a copy of its n×Dim output.
func forward(t *testing.T, be kernels.Backend, net nn.Net, x kernels.Buffer, n int, train bool) []float32 {
	t.Helper()
	y, err := net.Forward(x, n, train)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, n*net.Dim())
	if err := be.Download(out, y); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestParityWithTorch proves torchref.py's backbone is ours: our
// IR-ResNet (D = 128, seed 1) takes two SGD steps so that every tensor —
// BatchNorm statistics, gammas, betas, PReLU slopes, biases — is off its
// initial value, its parameter file is loaded by torchref.py by name, and
// the embeddings of the same inputs in eval mode (running statistics) and
// train mode (batch statistics) agree within 1e-4.
func TestParityWithTorch(t *testing.T) {
	const n, dim = 4, 128
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	net, err := nn.NewIRResNet(be, nn.IRResNetOptions{Dim: dim, MaxBatch: n, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	host := func(k int, scale float64) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32((2*rng.Float64() - 1) * scale)
		}
		return v
	}
	upload := func(v []float32) kernels.Buffer {
		b, err := be.Alloc(len(v))
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Upload(b, v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	opt := nn.SGD{Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true}
	for range 2 {
		x := upload(host(n*net.InLen(), 1))
		if err := nn.ZeroGrads(be, net.Params()); err != nil {
			t.Fatal(err)
		}
		forward(t, be, net, x, n, true)
		if err := net.Backward(upload(host(n*dim, 0.5))); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(be, net.Params(), 0.5); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	params := filepath.Join(dir, "params.bin")
	f, err := os.Create(params)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.SaveParams(f, be, nn.Tensors(net)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	xs := host(n*net.InLen(), 1)
	x := upload(xs)
	eval := forward(t, be, net, x, n, false)
	train := forward(t, be, net, x, n, true)
	if d := maxAbsDiff(eval, train); !(d > 1e-3) {
		t.Fatalf("eval and train embeddings differ by %g only: the running statistics would not be tested", d)
	}

	py := requireTorch(t)
	script, err := writeScript(dir)
	if err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(dir, "in.bin"), filepath.Join(dir, "out.bin")
	writeFloats(t, in, xs)
	cmd := exec.Command(py, script, "--threads", "1", "--dim", "128", "--weights", params, "--input", in, "--dump-forward", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	got := readFloats(t, out)
	if len(got) != 2*n*dim {
		t.Fatalf("torchref.py wrote %d floats, want %d", len(got), 2*n*dim)
	}
	de, dt := maxAbsDiff(eval, got[:n*dim]), maxAbsDiff(train, got[n*dim:])
	t.Logf("max |ours − PyTorch|: eval %.3g, train %.3g", de, dt)
	if !(de < 1e-4) || !(dt < 1e-4) {
		t.Fatalf("embeddings differ: eval by %g, train by %g (want < 1e-4)", de, dt)
	}
}

// TestCheckRefusesMismatch: a child that did other work than asked for is
// not compared.
func TestCheckRefusesMismatch(t *testing.T) {
	c := config{Mode: "ffc", Threads: 2, Batch: 64, Steps: 3}
	good := result{Mode: "ffc", Threads: 2, ImagesPerStep: 192, StepMS: 10, StepsMS: []float64{9, 10, 11}, CPUSeconds: 1, PeakRSS: 1 << 20}
	if err := good.check(c); err != nil {
		t.Fatalf("good report refused: %v", err)
	}
	for name, mutate := range map[string]func(*result){
		"images":  func(r *result) { r.ImagesPerStep = 128 },
		"threads": func(r *result) { r.Threads = 1 },
		"mode":    func(r *result) { r.Mode = "fc" },
		"steps":   func(r *result) { r.StepsMS = r.StepsMS[:2] },
		"rss":     func(r *result) { r.PeakRSS = 0 },
		"failed":  func(r *result) { r.Failed = "boom" },
	} {
		r := good
		mutate(&r)
		if err := r.check(c); err == nil {
			t.Errorf("%s: mismatched report accepted", name)
		}
	}
	if err := (result{Mode: "sgemm", Threads: 1}).check(config{Mode: "sgemm", Threads: 1}); err == nil {
		t.Error("sgemm without GFLOP/s accepted")
	}
}

func TestFlagsValidated(t *testing.T) {
	for _, args := range [][]string{
		{"--pool", "50"}, // below 1.5·64
		{"--modes", "ffc,pfc"},
		{"--threads", "0"},
		{"--steps", "0"},
	} {
		f, err := parseFlags(args)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if _, err := newPlan(f); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestRender checks the table's arithmetic on a constructed result set.
func TestRender(t *testing.T) {
	c := config{Batch: 64, Dim: 128, Pool: 1000, Classes: 10000, Steps: 10, Warmup: 1, SgemmSize: 2048, SgemmReps: 3, LR: 0.1, WeightDecay: 5e-4}
	ffc, fc := c, c
	ffc.Mode, ffc.Threads = "ffc", 2
	fc.Mode, fc.Threads = "fc", 2
	ten := func(ms float64) []float64 {
		v := make([]float64, 10)
		for i := range v {
			v[i] = ms
		}
		return v
	}
	sg := []sgemmRow{{threads: 2, ours: result{GFLOPS: 200, BackendGFLOPS: 190, OtherCores: 0.01}, torch: result{GFLOPS: 180, OtherCores: 0.02}}}
	rows := []stepRow{
		// 192 images in 0.8 s: 240/s; 1920 images in 16 CPU-s: 120/CPU-s.
		{c: ffc, impl: implOurs, r: result{ImagesPerStep: 192, StepMS: 800, StepsMS: ten(800), CPUSeconds: 16, PeakRSS: 3 << 29, OtherCores: 0.05}},
		// 160/s and 80/CPU-s: ours is 1.50× on both.
		{c: ffc, impl: implTorch, r: result{ImagesPerStep: 192, StepMS: 1200, StepsMS: ten(1200), CPUSeconds: 24, PeakRSS: 512 << 20, OtherCores: 1.2}},
		{c: fc, impl: implOurs, r: result{ImagesPerStep: 64, StepMS: 400, StepsMS: ten(400), CPUSeconds: 8, PeakRSS: 600 << 20, OtherCores: -1, Runs: 3}},
		{c: fc, impl: implTorch, r: result{Failed: "no Python with torch"}},
	}
	fl := flops{fwd: 1e8, stem: 1e6, ffcStep: 100e9, fcStep: 20e9}
	out := render(sg, rows, fl, "machine", "cmd", c, &plan{retries: 2, contended: 0.3}, 0)
	for _, want := range []string{
		"| 2 | 200.0 | 190.0 | 180.0 | 0.01 / 0.02 |",
		// 100 GFLOP in 0.8 s = 125 GFLOP/s, 62% of 200.
		"| 2 | ours | ffc | 240.0 | 800.0 | 1.50× | 120.0 | 1.50× | 125.0 | 62% | 1.50 GiB | 0.05 |",
		"| 2 | pytorch | ffc | 160.0 | 1200.0 | 1.00× | 80.0 | 1.00× | 83.3 | 42% | 512 MiB | 1.20 |",
		// No peer: no ratio; 20 GFLOP in 0.4 s = 50 GFLOP/s, 25%.
		"| 2 | ours | fc | 160.0 | 400.0 | — | 80.0 | — | 50.0 | 25% | 600 MiB | ? (best of 3 runs) |",
		"| 2 | pytorch | fc | failed: no Python with torch |",
		"ffc, 2 thread(s): 1.50× (met)",
		"training 299.0 = 3·forward",
		"192 per FFC step (two passes of 96), 64 per FC step",
		"ffc at 2 thread(s): 62.5% of the sgemm ceiling (aim ≥ 70%: NOT met)",
		"ffc at 2 thread(s): peak RSS 1.50 GiB against PyTorch's 512 MiB (aim: no higher: NOT met)",
		"fc at 2 thread(s): 25.0% of the sgemm ceiling (aim ≥ 70%: NOT met)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "  - fc, 2 thread(s)") {
		t.Errorf("a verdict for fc without a PyTorch result:\n%s", out)
	}
	rows[1].r.StepMS = 800 // PyTorch as fast: 1.00×, short of the aim
	if out := render(sg, rows, fl, "machine", "cmd", c, &plan{retries: 2, contended: 0.3}, 0); !strings.Contains(out, "ffc, 2 thread(s): 1.00× (NOT met)") {
		t.Errorf("no NOT met verdict:\n%s", out)
	}
}

// TestTargets checks the verdicts on issue 15's other aims: the speed-up
// from 1 to 2 threads beside PyTorch's and the ceiling's, the fraction of
// the ceiling, and peak RSS.
func TestTargets(t *testing.T) {
	c := config{Batch: 64, Mode: "ffc"}
	one, two := c, c
	one.Threads, two.Threads = 1, 2
	sg := []sgemmRow{{threads: 1, ours: result{GFLOPS: 100}}, {threads: 2, ours: result{GFLOPS: 150}}}
	rows := []stepRow{
		// 100 GFLOP a step: 1 s is 100 GFLOP/s, 100% of 1 thread's ceiling.
		{c: one, impl: implOurs, r: result{ImagesPerStep: 192, StepMS: 1000, PeakRSS: 400 << 20}},
		{c: one, impl: implTorch, r: result{ImagesPerStep: 192, StepMS: 2000, PeakRSS: 500 << 20}},
		// 0.55 s: 1.82× from 1 thread; 182 GFLOP/s is 121% of 150.
		{c: two, impl: implOurs, r: result{ImagesPerStep: 192, StepMS: 550, PeakRSS: 600 << 20}},
		{c: two, impl: implTorch, r: result{ImagesPerStep: 192, StepMS: 1250, PeakRSS: 500 << 20}},
	}
	targets := func() string {
		var sb strings.Builder
		writeTargets(func(f string, a ...any) { fmt.Fprintf(&sb, f, a...) }, sg, rows, flops{ffcStep: 100e9})
		return sb.String()
	}
	out := targets()
	for _, want := range []string{
		"ffc from 1 to 2 threads: 1.82× (aim ≥ 1.8×: met; PyTorch 1.60×; the sgemm ceiling itself 1.50×)",
		"ffc at 1 thread(s): 100.0% of the sgemm ceiling (aim ≥ 70%: met)",
		"ffc at 1 thread(s): peak RSS 400 MiB against PyTorch's 500 MiB (aim: no higher: met)",
		"ffc at 2 thread(s): peak RSS 600 MiB against PyTorch's 500 MiB (aim: no higher: NOT met)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rows[2].r.StepMS = 600 // 1.67×
	if out := targets(); !strings.Contains(out, "1.67× (aim ≥ 1.8×: NOT met") {
		t.Errorf("no NOT met verdict for the scaling:\n%s", out)
	}
}

// TestAttempts: a contended run is repeated, at most retries times, and
// the least contended successful run is kept.
func TestAttempts(t *testing.T) {
	p := &plan{retries: 2, contended: 0.3}
	seq := func(rs ...result) func() result {
		i := 0
		return func() result { i++; return rs[i-1] }
	}
	for _, c := range []struct {
		name   string
		runs   []result
		others float64
		n      int
		failed bool
	}{
		{"quiet first", []result{{OtherCores: 0.1}}, 0.1, 1, false},
		{"quiet second", []result{{OtherCores: 1}, {OtherCores: 0.2}}, 0.2, 2, false},
		{"always busy", []result{{OtherCores: 1}, {OtherCores: 0.5}, {OtherCores: 0.9}}, 0.5, 3, false},
		{"failure stops", []result{{OtherCores: 1}, {OtherCores: 0.1, Failed: "boom"}}, 1, 2, false},
		{"only failure", []result{{Failed: "boom"}}, 0, 1, true},
	} {
		r := p.attempts(config{Mode: "fc"}, implOurs, seq(c.runs...))
		if r.OtherCores != c.others || r.Runs != c.n || (r.Failed != "") != c.failed || r.Impl != implOurs {
			t.Errorf("%s: got %+v, want others %g after %d runs, failed %v", c.name, r, c.others, c.n, c.failed)
		}
	}
}

func TestOtherCores(t *testing.T) {
	if got := otherCores(100, 112, 4, 4); got != 2 {
		t.Errorf("12 busy CPU-s, 4 of them the child's, over 4 s: got %g cores, want 2", got)
	}
	if got := otherCores(100, 103, 4, 2); got != 0 {
		t.Errorf("clamped: got %g", got)
	}
	if got := otherCores(-1, 10, 1, 1); got != -1 {
		t.Errorf("unknown start: got %g", got)
	}
	if b, err := busyCPU(); err != nil || !(b > 0) {
		t.Errorf("busyCPU() = %g, %v", b, err)
	}
}

// TestDriverSmoke runs the whole driver at tiny settings on one thread:
// the sgemm ceilings and both steps of both implementations, each child
// parsed and checked.
func TestDriverSmoke(t *testing.T) {
	f, err := parseFlags([]string{"--quick", "--threads", "1", "--out", "", "--wait-quiet", "0", "--retries", "0"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlan(f)
	if err != nil {
		t.Fatal(err)
	}
	if p.script, err = writeScript(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	sg, rows := p.runAll()
	if len(sg) != 1 || len(rows) != 4 {
		t.Fatalf("%d sgemm rows, %d step rows; want 1 and 4", len(sg), len(rows))
	}
	if sg[0].ours.Failed != "" || !(sg[0].ours.GFLOPS > 0) || !(sg[0].ours.BackendGFLOPS > 0) {
		t.Fatalf("our sgemm: %+v", sg[0].ours)
	}
	for _, r := range rows {
		if r.impl != implOurs {
			continue
		}
		if r.r.Failed != "" || len(r.r.StepsMS) != 2 || r.r.Backend == "" {
			t.Fatalf("ours %s: %+v", r.c.Mode, r.r)
		}
	}
	fl, err := countFLOPs(p.base)
	if err != nil {
		t.Fatal(err)
	}
	out := render(sg, rows, fl, machine(sg, rows, "?"), "cmd", p.base, p, 0)
	if !strings.Contains(out, "| 1 | ours | ffc |") || !strings.Contains(out, "| 1 | ours | fc |") {
		t.Fatalf("report lacks our rows:\n%s", out)
	}

	requireTorch(t)
	if sg[0].torch.Failed != "" || !(sg[0].torch.GFLOPS > 0) {
		t.Fatalf("torch.mm: %+v", sg[0].torch)
	}
	for _, r := range rows {
		if r.impl == implTorch && (r.r.Failed != "" || len(r.r.StepsMS) != 2 || r.r.Torch == "") {
			t.Fatalf("PyTorch %s: %+v", r.c.Mode, r.r)
		}
	}
	for _, want := range []string{"| 1 | pytorch | ffc |", "| 1 | pytorch | fc |", "ffc, 1 thread(s):", "PyTorch 1."} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
