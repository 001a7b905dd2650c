package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

func evalOf(top1, tar4 float64) engine.EvalResult {
	return engine.EvalResult{Top1: top1, TailTop1: top1 / 2, Top1Queries: 10, Top1Classes: 10, TailQueries: 2, TailClasses: 2,
		OpenClasses: 3, GenuinePairs: 6, ImpostorPairs: 40, AllPairs: true,
		TAR: []engine.ROCPoint{{FAR: 1e-2, TAR: 0.9}, {FAR: 1e-3, TAR: 0.8}, {FAR: 1e-4, TAR: tar4}}}
}

func writeRun(t *testing.T, head string, file string, v any) string {
	t.Helper()
	dir := t.TempDir()
	set := settings.Defaults(settings.Offline)
	set.Head, set.Steps = head, 860
	if err := settings.WriteFile(dir, set); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRender: a row per run with its figures and what it adds to the
// baselines (from the run that carries them), the baselines' rows, and a
// run evaluated on other pairs refused.
func TestRender(t *testing.T) {
	ours := evalOf(0.99, 0.95)
	ours.Baselines = map[string]*engine.EvalResult{"untrained": new(evalOf(0.5, 0.10)), "raw_pixels": new(evalOf(0.6, 0.20))}
	a := writeRun(t, "ffc", "summary.json", map[string]any{"train": map[string]any{"elapsed_ns": 12e9}, "eval": ours})
	b := writeRun(t, "fc", "eval.json", evalOf(0.97, 0.75))
	var rows []row
	for label, dir := range map[string]string{"ours FFC": a, "PyTorch FC": b} {
		r, err := load(label, dir)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	var out strings.Builder
	if err := render(&out, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| ours FFC | ffc | 860 | 12 s | 99.00% | 49.50% | 90.00% | 80.00% | 95.00% | +49.00 / +85.00 | +39.00 / +75.00 |",
		"| PyTorch FC | fc | 860 | — | 97.00% |",
		"| baseline: raw pixels | — | 0 | — | 60.00% |",
		"6 genuine and 40 impostor pairs (every pair)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	other := evalOf(0.9, 0.9)
	other.ImpostorPairs = 41
	c := writeRun(t, "pfc", "eval.json", other)
	r, err := load("other", c)
	if err != nil {
		t.Fatal(err)
	}
	if err := render(&out, append(rows, r)); err == nil {
		t.Error("a run on other pairs accepted")
	}
	if _, err := load("none", t.TempDir()); err == nil {
		t.Error("a folder without a run accepted")
	}
}

// TestRenderSeeds: a row of several runs shows their mean ± sample
// standard deviation and mean train time; runs of another head or
// evaluated on other pairs are refused.
func TestRenderSeeds(t *testing.T) {
	a := writeRun(t, "fc", "summary.json", map[string]any{"train": map[string]any{"elapsed_ns": 10e9}, "eval": evalOf(0.90, 0.70)})
	b := writeRun(t, "fc", "summary.json", map[string]any{"train": map[string]any{"elapsed_ns": 20e9}, "eval": evalOf(0.94, 0.74)})
	r, err := loadRow("ours FC", []string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := render(&out, []row{r}); err != nil {
		t.Fatal(err)
	}
	// top-1 92 ± 2.83 (sd of 90 and 94), tail 46 ± 1.41, TAR@1e-4 72 ± 2.83.
	want := "| ours FC (mean of 2 runs) | fc | 860 | 15 s | 92.00% ± 2.83 | 46.00% ± 1.41 | 90.00% ± 0.00 | 80.00% ± 0.00 | 72.00% ± 2.83 |"
	if !strings.Contains(out.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, out.String())
	}
	other := evalOf(0.9, 0.9)
	other.GenuinePairs = 7
	for name, dir := range map[string]string{
		"another head": writeRun(t, "ffc", "eval.json", evalOf(0.9, 0.7)),
		"other pairs":  writeRun(t, "fc", "eval.json", other),
	} {
		if _, err := loadRow("ours FC", []string{a, dir}); err == nil {
			t.Errorf("%s accepted in one row", name)
		}
	}
	noTail := evalOf(0.9, 0.7)
	noTail.TailQueries, noTail.TailClasses, noTail.TailTop1 = 0, 0, 0
	out.Reset()
	if err := render(&out, []row{{label: "no tail", ev: noTail, runs: 1}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| 90.00% | — | 90.00% |") {
		t.Errorf("a run without tail probes: want tail top-1 —:\n%s", out.String())
	}
	c := writeRun(t, "fc", "eval.json", evalOf(0.9, 0.7)) // no train time
	r, err = loadRow("ours FC", []string{a, c})
	if err != nil {
		t.Fatal(err)
	}
	if r.trainS != 0 {
		t.Errorf("train time %v with a run of unknown time: want unknown (0)", r.trainS)
	}
}
