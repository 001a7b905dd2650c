package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// writeTinySet writes a 32×32 data set of random images, classes × per
// images, every image train (the protocol decides).
func writeTinySet(t *testing.T, classes, per int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "set")
	w, err := dataset.Create(dir, 32)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	m := &dataset.Manifest{Kind: dataset.KindSynth}
	img := make([]byte, 32*32)
	for c := range classes {
		m.Classes = append(m.Classes, dataset.Class{ID: string(rune('a' + c)), Split: "train"})
		for s := range per {
			for i := range img {
				img[i] = byte(rng.IntN(256))
			}
			if err := w.Append(img, dataset.Meta{Class: c, Source: s, Split: dataset.SplitTrain}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Commit(m); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTrainDriver: torchref train writes a checkpoint our engine loads as
// one of its own (settings.json and probe.params with PyTorch's trained
// tensors): the embeddings our forward computes from it are torchref.py's
// from the same file, in eval mode, and torch-train.json reports every
// step.
func TestTrainDriver(t *testing.T) {
	data := writeTinySet(t, 12, 5)
	for name, args := range map[string][]string{
		"ffc head":     {"--head", "ffc"},
		"mlp backbone": {"--backbone", "mlp"},
		"arcface":      {"--margin", "arcface"},
		"argument":     {"extra"},
	} {
		args = append([]string{"--data", data, "--out", filepath.Join(t.TempDir(), "x"), "--python", "/nonexistent"}, args...)
		if err := runTrain(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	py := requireTorch(t)
	out := filepath.Join(t.TempDir(), "run")
	const steps, dim = 6, 16
	args := []string{"--data", data, "--protocol", "last-image", "--steps", "6", "--batch", "8", "--dim", "16", "--schedule", "cosine",
		"--warmup", "2", "--init", "uniform", "--wd-scope", "all", "--weight-decay", "5e-4", "--threads", "1", "--log-every", "2", "--python", py, "--out", out}
	if err := runTrain(context.Background(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	set, err := settings.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if set.Head != engine.HeadFC || set.Steps != steps || set.Protocol != engine.ProtocolLastImage || set.Init != "uniform" || set.WDScope != "all" {
		t.Errorf("settings.json %+v: want the given ones", set)
	}
	var res struct {
		Steps int       `json:"steps"`
		Curve []float64 `json:"curve"`
		Mode  string    `json:"mode"`
	}
	b, err := os.ReadFile(filepath.Join(out, "torch-train.json"))
	if err == nil {
		err = json.Unmarshal(b, &res)
	}
	if err != nil || res.Mode != "train" || res.Steps != steps || len(res.Curve) != steps {
		t.Fatalf("torch-train.json %+v, %v", res, err)
	}

	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	opts := set.Engine(settings.Offline, 0, slog.New(slog.DiscardHandler))
	opts.ProbeOnly = true
	e, err := engine.New(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.LoadProbe(out); err != nil {
		t.Fatal(err)
	}
	const n = 4
	rng := rand.New(rand.NewPCG(5, 6))
	xs := make([]float32, n*e.InLen())
	for i := range xs {
		xs[i] = float32(2*rng.Float64() - 1)
	}
	ours := make([]float32, n*dim)
	if err := e.Embed(xs, n, ours); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script, err := writeScript(dir)
	if err != nil {
		t.Fatal(err)
	}
	in, dump := filepath.Join(dir, "in.bin"), filepath.Join(dir, "out.bin")
	writeFloats(t, in, xs)
	cmd := exec.Command(py, script, "--threads", "1", "--dim", "16", "--weights", filepath.Join(out, engine.ProbeFile), "--input", in, "--dump-forward", dump)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	got := readFloats(t, dump)
	if len(got) != 2*n*dim {
		t.Fatalf("torchref.py wrote %d floats, want %d", len(got), 2*n*dim)
	}
	if d := maxAbsDiff(ours, got[:n*dim]); !(d < 1e-4) || math.IsNaN(d) {
		t.Fatalf("our eval embeddings from PyTorch's checkpoint differ from PyTorch's by %g", d)
	}
}
