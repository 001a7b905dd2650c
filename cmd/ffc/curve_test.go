package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCurve: train --snapshot-every keeps the snapshots, and curve
// evaluates them with the evaluation of 'ffc train --eval': with every
// train image in the centers, its last point is the run's own final
// evaluation and its step-0 point the untrained baseline, exactly.
func TestCurve(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--hidden", "32", "--dim", "16", "--batch", "4",
		"--steps", "4", "--snapshot-every", "2", "--impostor-pairs", "100000", "--out", dir, "--log-level", "warn"); err != nil {
		t.Fatalf("train: %v", err)
	}
	png1 := filepath.Join(t.TempDir(), "fig", "learning.png")
	if err := os.MkdirAll(filepath.Dir(png1), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, nil, "curve", "--data", data, "--center-images", "0", "--impostor-pairs", "100000", "--out", png1, "--log-level", "warn", dir); err != nil {
		t.Fatalf("curve: %v", err)
	}
	var curves []Curve
	b, err := os.ReadFile(filepath.Join(filepath.Dir(png1), "learning.json"))
	if err == nil {
		err = json.Unmarshal(b, &curves)
	}
	if err != nil || len(curves) != 1 {
		t.Fatalf("learning.json: %d curves, %v", len(curves), err)
	}
	c := curves[0]
	if c.Label != "ffc" || len(c.Points) != 3 || c.Points[0].Step != 0 || c.Points[1].Step != 2 || c.Points[2].Step != 4 {
		t.Fatalf("curve %+v: want label ffc and steps 0, 2, 4", c)
	}
	s := readSummary(t, dir)
	last, first, u := c.Points[2], c.Points[0], s.Eval.Baselines["untrained"]
	if last.Top1 != s.Eval.Top1 || last.TailTop1 != s.Eval.TailTop1 || len(last.TAR) != 3 || last.TAR[2] != s.Eval.TAR[2] {
		t.Errorf("last point %+v, the run's evaluation top-1 %v tail %v TAR %+v", last, s.Eval.Top1, s.Eval.TailTop1, s.Eval.TAR)
	}
	if u == nil || first.Top1 != u.Top1 || first.TAR[2] != u.TAR[2] {
		t.Errorf("step-0 point %+v, the untrained baseline %+v", first, u)
	}
	// A second curve keeps the points of the run's learning.json (here
	// marked), except for a snapshot rewritten since.
	lj := filepath.Join(dir, "learning.json")
	var kept Curve
	if b, err = os.ReadFile(lj); err == nil {
		err = json.Unmarshal(b, &kept)
	}
	if err != nil || len(kept.Points) != 3 {
		t.Fatalf("%s: %+v, %v", lj, kept, err)
	}
	kept.Points[1].Top1, kept.Points[2].Top1 = -1, -1
	if b, err = json.Marshal(kept); err == nil {
		err = os.WriteFile(lj, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(snapshotDir(dir, 4), "probe.params"), later, later); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, nil, "curve", "--data", data, "--center-images", "0", "--impostor-pairs", "100000", "--out", png1, "--log-level", "warn", dir); err != nil {
		t.Fatalf("curve again: %v", err)
	}
	if b, err = os.ReadFile(lj); err == nil {
		err = json.Unmarshal(b, &kept)
	}
	if err != nil || kept.Points[1].Top1 != -1 || kept.Points[2].Top1 != last.Top1 {
		t.Errorf("second curve %+v, %v: want step 2 kept (-1) and step 4 evaluated again (%v)", kept.Points, err, last.Top1)
	}

	f, err := os.Open(png1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("learning.png: %v", err)
	}

	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--steps", "1", "--snapshot-every", "-1",
		"--out", filepath.Join(t.TempDir(), "neg"), "--log-level", "warn"); err == nil {
		t.Error("--snapshot-every -1: no error")
	}
	// A curve over some of a run's snapshots: a folder with its settings
	// and links to those.
	some := filepath.Join(t.TempDir(), "some")
	if err := os.MkdirAll(filepath.Join(some, "snapshots"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err = os.ReadFile(filepath.Join(dir, "settings.json")); err == nil {
		err = os.WriteFile(filepath.Join(some, "settings.json"), b, 0o644)
	}
	if err == nil {
		err = os.Symlink(snapshotDir(dir, 2), snapshotDir(some, 2))
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, nil, "curve", "--data", data, "--center-images", "0", "--impostor-pairs", "100000", "--out", filepath.Join(t.TempDir(), "s.png"), "--log-level", "warn", some); err != nil {
		t.Fatalf("curve over links: %v", err)
	}
	var sub Curve
	if b, err = os.ReadFile(filepath.Join(some, "learning.json")); err == nil {
		err = json.Unmarshal(b, &sub)
	}
	if err != nil || len(sub.Points) != 2 || sub.Points[1].Step != 2 || sub.Points[1].TAR[2] != c.Points[1].TAR[2] {
		t.Errorf("curve over a linked snapshot: %+v, %v; want steps 0 and 2 as the run's own", sub.Points, err)
	}

	// A run without snapshots, and labels that do not match the runs.
	bare := filepath.Join(t.TempDir(), "bare")
	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--hidden", "32", "--dim", "16", "--batch", "4",
		"--steps", "1", "--eval=false", "--out", bare, "--log-level", "warn"); err != nil {
		t.Fatalf("train: %v", err)
	}
	for name, args := range map[string][]string{
		"no snapshots":  {bare},
		"labels":        {"--labels", "a,b", dir},
		"center images": {"--center-images", "-1", dir},
		"network":       {"--network", "teacher", dir},
	} {
		args = append([]string{"curve", "--data", data, "--out", filepath.Join(t.TempDir(), "x.png"), "--log-level", "warn"}, args...)
		if _, _, err := run(t, nil, args...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
