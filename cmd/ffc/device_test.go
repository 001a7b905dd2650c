package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "8GiB": 8 << 30, "8 GiB": 8 << 30, "8gib": 8 << 30, "500MB": 500e6, "1.5e9": 1.5e9,
		"1536MiB": 1536 << 20, "2T": 2e12, "4096": 4096, "1KiB": 1024, "10b": 10,
	} {
		var b byteSize
		if err := b.Set(in); err != nil {
			t.Errorf("Set(%q): %v", in, err)
			continue
		}
		if int64(b) != want {
			t.Errorf("Set(%q) = %d, want %d", in, int64(b), want)
		}
	}
	for _, in := range []string{"", "GiB", "8 parsecs", "-1GiB", "1e30", "x8"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, int64(b))
		}
	}
	for v, want := range map[int64]string{0: "0", 8 << 30: "8GiB", 1536 << 20: "1536MiB", 1000: "1000"} {
		b := byteSize(v)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", v, got, want)
		}
	}
}

// TestDeviceFlags: every command that computes has the device flags, with
// documented help, and an unknown device is refused before any work.
func TestDeviceFlags(t *testing.T) {
	for _, c := range [][]string{{"train"}, {"eval"}, {"demo"}} {
		out, _, err := run(t, nil, append(c, "--help")...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"--device", "--gpu ", "--tf32", "--gpu-memory", "make cuda", "8GiB"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q", c[0], want)
			}
		}
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"train", "--offline", "--data", dir, "--device", "bogus"},
		{"train", "--device", "bogus"}, // streaming: refused before the missing addresses
		{"eval", "--data", dir, "--device", "bogus"},
		{"demo", "--check-only", "--device", "bogus"},
	} {
		_, _, err := run(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), `--device "bogus": want cpu or cuda`) {
			t.Errorf("%v: err = %v, want --device rejected", args, err)
		}
	}
	_, _, err := run(t, nil, "train", "--offline", "--data", dir, "--gpu-memory", "lots")
	if err == nil || !strings.Contains(err.Error(), "gpu-memory") {
		t.Errorf("--gpu-memory lots: err = %v, want it rejected", err)
	}
	_, _, err = run(t, map[string]string{"FFC_GPU_MEMORY": "lots"}, "eval", "--data", dir)
	if err == nil || !strings.Contains(err.Error(), "FFC_GPU_MEMORY") {
		t.Errorf("FFC_GPU_MEMORY=lots: err = %v, want the variable named", err)
	}
}

// TestDeviceDefaultCPU trains two offline steps on the default device, on
// --device cpu given explicitly over FFC_DEVICE=bogus (the flag beats the
// environment), and with the GPU flags set from the environment (ignored
// on the CPU).
func TestDeviceDefaultCPU(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	train := []string{"train", "--offline", "--data", data, "--backbone", "mlp", "--dim", "16", "--batch", "4", "--pool", "12",
		"--steps", "2", "--eval=false", "--log-level", "warn"}
	for name, c := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"default":             {nil, nil},
		"flag over env":       {map[string]string{"FFC_DEVICE": "bogus"}, []string{"--device", "cpu"}},
		"gpu flags from env":  {map[string]string{"FFC_GPU": "1", "FFC_TF32": "true", "FFC_GPU_MEMORY": "8GiB"}, nil},
		"env device is used":  {map[string]string{"FFC_DEVICE": "CPU"}, nil},
		"yaml file (via env)": {map[string]string{"FFC_CONFIG": writeConfig(t, "train:\n  device: cpu\n  gpu-memory: 1GiB\n")}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			args := append(append([]string{}, train...), "--out", dir)
			out, _, err := run(t, c.env, append(args, c.args...)...)
			if err != nil {
				t.Fatalf("train: %v\n%s", err, out)
			}
			s := readSummary(t, dir)
			if !strings.HasPrefix(s.Backend, "cpu-") || s.Train.Steps != 2 {
				t.Errorf("summary.json %+v: want 2 steps on a cpu backend", s)
			}
		})
	}
	// The environment and the file are applied: a bad device there is
	// refused.
	if _, _, err := run(t, map[string]string{"FFC_DEVICE": "bogus"}, train...); err == nil || !strings.Contains(err.Error(), "--device") {
		t.Errorf("FFC_DEVICE=bogus: err = %v, want --device rejected", err)
	}
	cfg := writeConfig(t, "train:\n  device: bogus\n")
	if _, _, err := run(t, nil, append([]string{"--config", cfg}, train...)...); err == nil || !strings.Contains(err.Error(), "--device") {
		t.Errorf("device: bogus in the file: err = %v, want --device rejected", err)
	}
}

// trainSummary is what train --offline writes to <out>/summary.json.
type trainSummary struct {
	Backend  string             `json:"backend"`
	Train    engine.TrainResult `json:"train"`
	Settings settings.Settings  `json:"settings"`
	Eval     *engine.EvalResult `json:"eval"`
}

func readSummary(t *testing.T, dir string) trainSummary {
	t.Helper()
	var s trainSummary
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	return s
}

// TestOfflineTrainThenEval: train --offline records its derived settings
// in the checkpoint folder; eval builds the same network from them.
func TestOfflineTrainThenEval(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--hidden", "32", "--dim", "16", "--batch", "4",
		"--steps", "3", "--schedule", "cosine", "--warmup", "1", "--wd-scope", "all", "--init", "uniform", "--eval=false", "--out", dir, "--log-level", "warn"); err != nil {
		t.Fatalf("train: %v", err)
	}
	set, err := settings.ReadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if set.Schedule != "cosine" || set.WDScope != "all" || set.Init != "uniform" {
		t.Errorf("settings.json schedule %q, wd scope %q, init %q: want cosine, all, uniform", set.Schedule, set.WDScope, set.Init)
	}
	if set.Backbone != "mlp" || set.Dim != 16 || set.InLen != 32*32 || len(set.Hidden) != 1 || set.Hidden[0] != 32 || set.Pool != settings.DefaultPool(4, 32) {
		t.Errorf("settings.json %+v: want the given architecture and the derived pool", set)
	}
	if s := readSummary(t, dir); s.Settings.Pool != set.Pool || s.Train.Steps != 3 {
		t.Errorf("summary.json %+v", s)
	}
	out := filepath.Join(t.TempDir(), "new", "eval") // eval creates it
	_, _, err = run(t, nil, "eval", "--data", data, "--checkpoint", dir, "--out", out, "--impostor-pairs", "1000", "--log-level", "warn")
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "roc.png")); err != nil {
		t.Errorf("roc.png: %v", err)
	}

	var ev engine.EvalResult
	b, err := os.ReadFile(filepath.Join(out, "eval.json"))
	if err == nil {
		err = json.Unmarshal(b, &ev)
	}
	if err != nil || ev.Top1Queries == 0 || ev.Network != "probe" {
		t.Fatalf("eval.json: %+v, %v", ev, err)
	}
	// The gallery network of the same checkpoint: another network, so
	// other scores on the same pairs.
	gout := filepath.Join(t.TempDir(), "gallery")
	if _, _, err := run(t, nil, "eval", "--data", data, "--checkpoint", dir, "--network", "gallery", "--out", gout, "--baselines=false", "--impostor-pairs", "1000", "--log-level", "warn"); err != nil {
		t.Fatalf("eval --network gallery: %v", err)
	}
	var gev engine.EvalResult
	b, err = os.ReadFile(filepath.Join(gout, "eval.json"))
	if err == nil {
		err = json.Unmarshal(b, &gev)
	}
	if err != nil || gev.Network != "gallery" || gev.GenuinePairs != ev.GenuinePairs || gev.TAR[0].Threshold == ev.TAR[0].Threshold {
		t.Errorf("gallery eval.json: %+v, %v; probe thresholds %+v", gev, err, ev.TAR)
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ffc.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUntrainedBaseline: --steps 0 writes the untrained network's
// checkpoint, which eval reads: the baseline of a training run.
func TestUntrainedBaseline(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--hidden", "32", "--dim", "16", "--batch", "4",
		"--steps", "0", "--impostor-pairs", "1000", "--out", dir, "--log-level", "warn"); err != nil {
		t.Fatalf("train --steps 0: %v", err)
	}
	s := readSummary(t, dir)
	if s.Train.Steps != 0 || s.Eval == nil || s.Eval.Top1Queries == 0 || !s.Eval.AllPairs {
		t.Fatalf("summary.json %+v: want 0 steps and an evaluation over every pair", s)
	}
	// The untrained baseline is the same network as the steps-0 one: the
	// same figures, exactly; raw pixels are evaluated on the same pairs.
	u, px := s.Eval.Baselines["untrained"], s.Eval.Baselines["raw_pixels"]
	if u == nil || px == nil {
		t.Fatalf("baselines %v: want untrained and raw_pixels", s.Eval.Baselines)
	}
	if u.Top1 != s.Eval.Top1 || len(u.TAR) != len(s.Eval.TAR) || u.TAR[2] != s.Eval.TAR[2] {
		t.Errorf("untrained baseline %+v differs from the steps-0 network %+v", u.TAR, s.Eval.TAR)
	}
	if px.Top1Queries != s.Eval.Top1Queries || px.GenuinePairs != s.Eval.GenuinePairs || px.ImpostorPairs != s.Eval.ImpostorPairs || px.Top1 <= px.ChanceTop1 {
		t.Errorf("raw pixels %+v: want the same probes and pairs, above chance", px)
	}
	if _, err := os.Stat(filepath.Join(dir, "probe.params")); err != nil {
		t.Errorf("untrained checkpoint: %v", err)
	}
}

// TestOfflineHeadsOnTrainClasses: FC and Partial FC heads are built with a
// row per train class only (the synthetic set's open-set classes get none)
// and train: a label beyond the rows (a class number, not the dense train
// label) would fail the step.
func TestOfflineHeadsOnTrainClasses(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	for _, head := range []string{"fc", "pfc"} {
		dir := filepath.Join(t.TempDir(), head)
		if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--hidden", "32", "--dim", "16", "--batch", "4",
			"--head", head, "--steps", "4", "--baselines=false", "--impostor-pairs", "1000", "--out", dir, "--log-level", "warn"); err != nil {
			t.Fatalf("train --head %s: %v", head, err)
		}
		if s := readSummary(t, dir); s.Train.Steps != 4 || s.Train.Skipped != 0 {
			t.Errorf("--head %s: %+v, want 4 steps", head, s.Train)
		}
	}
}

// TestLastImageProtocol: --protocol last-image trains on the new split,
// records it in the checkpoint, and eval follows it: the last tenth of
// the classes open-set, one probe per other class with ≥ 4 images.
func TestLastImageProtocol(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	ds, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	perClass := map[int]int{}
	for i := range ds.Len() {
		perClass[ds.Meta(i).Class]++
	}
	nClasses := len(ds.Classes())
	ds.Close()
	open := (nClasses + 9) / 10
	probes := 0
	for c := 0; c < nClasses-open; c++ {
		if perClass[c] >= 4 {
			probes++
		}
	}
	dir := filepath.Join(t.TempDir(), "run")
	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--protocol", "last-image", "--backbone", "mlp", "--hidden", "32", "--dim", "16", "--batch", "4",
		"--steps", "3", "--baselines=false", "--impostor-pairs", "100000", "--out", dir, "--log-level", "warn"); err != nil {
		t.Fatalf("train: %v", err)
	}
	if set, err := settings.ReadFile(dir); err != nil || set.Protocol != "last-image" {
		t.Fatalf("settings.json protocol %q, %v", set.Protocol, err)
	}
	out := filepath.Join(t.TempDir(), "eval")
	if _, _, err := run(t, nil, "eval", "--data", data, "--checkpoint", dir, "--out", out, "--baselines=false", "--log-level", "warn"); err != nil {
		t.Fatalf("eval: %v", err)
	}
	var ev engine.EvalResult
	b, err := os.ReadFile(filepath.Join(out, "eval.json"))
	if err == nil {
		err = json.Unmarshal(b, &ev)
	}
	if err != nil || ev.Top1Queries != probes || ev.OpenClasses != open || ev.Top1Classes != nClasses-open || !ev.AllPairs {
		t.Errorf("eval.json %+v, %v: want %d probes, %d open-set and %d train classes, every pair", ev, err, probes, open, nClasses-open)
	}
}
