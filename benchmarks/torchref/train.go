package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// trainUsage heads `torchref train --help`.
const trainUsage = `torchref train: the PyTorch full-FC row of issue 16's table.

It trains torchref.py's copy of the yardstick backbone with a full FC
(CosFace) head on the train split of a local data set, with the settings
'ffc train --offline --head fc' takes (the same flags and defaults, and
the same learning rate at every step, computed here by our schedule), and
writes a checkpoint folder that 'ffc eval' reads as it reads one of ours:

  go run ./benchmarks/torchref train --protocol last-image --steps 860 --out runs/torch-fc
  ffc eval --checkpoint runs/torch-fc

The images are read and scaled here (the engine's scaling) and handed to
PyTorch; instances are drawn in shuffled epochs as our instance loader
does. PyTorch starts from its own initialisation (--init uniform: torch's
default; kaiming: ours), with the same seed but not the same numbers.
torch-train.json in --out keeps the loss curve, the speed and the peak RSS.

Flags:
`

// trainJob is what one torchref train run needs.
type trainJob struct {
	set               settings.Settings
	data, out, python string
	threads, logEvery int
}

func parseTrainFlags(args []string, stderr io.Writer) (trainJob, error) {
	j := trainJob{set: settings.Defaults(settings.Offline)}
	j.set.Head = engine.HeadFC
	fs := pflag.NewFlagSet("torchref train", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, trainUsage); fs.PrintDefaults() }
	settings.AddFlags(fs, settings.Offline, &j.set)
	fs.StringVar(&j.data, "data", ".cache/ffc-data/glyphs-ci", "data set folder (ffc data glyphs)")
	fs.StringVar(&j.out, "out", "runs/torch-fc", "checkpoint folder: probe.params, settings.json, torch-train.json")
	fs.StringVar(&j.python, "python", "", "Python with torch (default: $FFC_TORCH_PYTHON, else /usr/bin/python3, else python3)")
	fs.IntVar(&j.threads, "threads", 0, "PyTorch's threads (0: all cores)")
	fs.IntVar(&j.logEvery, "log-every", 50, "a progress line every N steps")
	if err := fs.Parse(args); err != nil {
		return j, err
	}
	if fs.NArg() > 0 {
		return j, fmt.Errorf("train: unexpected arguments %q", fs.Args())
	}
	if j.threads <= 0 {
		j.threads = runtime.NumCPU()
	}
	return j, nil
}

// runTrain is `torchref train`.
func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	j, err := parseTrainFlags(args, stderr)
	if err != nil {
		return err
	}
	file, err := dataset.Open(j.data)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer file.Close()
	ds, err := engine.WithProtocol(file, j.set.Protocol)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	set, ix, err := j.set.DeriveOffline(ds)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if set.Head != engine.HeadFC || set.Backbone != "irresnet" || set.Margin != "cosface" || set.InLen != 32*32 {
		return fmt.Errorf("train: torchref.py trains the irresnet backbone on 32×32 images with a full FC CosFace head (got --head %s, --backbone %s, --margin %s, %d pixels)",
			set.Head, set.Backbone, set.Margin, set.InLen)
	}
	py, err := torchPython(j.python)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	tmp, err := os.MkdirTemp("", "torchref-train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	n, err := writeTrainInputs(tmp, ds, ix)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "torchref train: PyTorch full FC on %s (protocol %s): %d train classes, %d train images, %d steps of %d on %d threads\n",
		j.data, set.Protocol, len(ix.Labels), n, set.Steps, set.Batch, j.threads)
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		return err
	}
	defer be.Close()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := set.Engine(settings.Offline, 0, log)
	opts.ProbeOnly = true
	e, err := engine.New(be, opts)
	if err != nil {
		return err
	}
	defer e.Close()
	tensors := nn.Tensors(e.Probe())
	if err := writeTrainPlan(tmp, set, len(ix.Labels), tensors, log); err != nil {
		return err
	}
	res, err := runTorchTrain(ctx, py, tmp, j, set, len(ix.Labels), stderr)
	if err != nil {
		return err
	}
	if err := loadTrained(filepath.Join(tmp, "trained.f32"), be, tensors); err != nil {
		return err
	}
	if err := settings.WriteFile(j.out, set); err != nil {
		return err
	}
	if err := e.SaveCheckpoint(j.out); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(j.out, "torch-train.json"), res, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "torchref train: wrote %s; evaluate it with: ffc eval --data %s --checkpoint %s\n", j.out, j.data, j.out)
	return nil
}

// writeTrainInputs writes the train images of ds, scaled as the engine
// scales them, to inputs.f32, and their dense labels to labels.i32.
func writeTrainInputs(dir string, ds engine.Images, ix engine.Index) (int, error) {
	xf, err := os.Create(filepath.Join(dir, "inputs.f32"))
	if err != nil {
		return 0, err
	}
	defer xf.Close()
	var labels []byte
	xw := bufio.NewWriterSize(xf, 1<<20)
	buf := make([]byte, ds.ImageSize()*ds.ImageSize())
	var row []float32
	n := 0
	for c, imgs := range ix.ByClass {
		for _, i := range imgs {
			if _, err := ds.ReadImage(i, buf); err != nil {
				return 0, fmt.Errorf("train: read image %d: %w", i, err)
			}
			row = nn.AppendScaled(row[:0], buf)
			if err := binary.Write(xw, binary.LittleEndian, row); err != nil {
				return 0, err
			}
			labels = binary.LittleEndian.AppendUint32(labels, uint32(ix.Labels[c]))
			n++
		}
	}
	if err := xw.Flush(); err != nil {
		return 0, err
	}
	if err := xf.Close(); err != nil {
		return 0, err
	}
	return n, os.WriteFile(filepath.Join(dir, "labels.i32"), labels, 0o644)
}

// writeTrainPlan writes the rate of every step (our schedule) to
// lrs.f64 and our probe's tensor names and shapes, in file order, to
// tensors.json.
func writeTrainPlan(dir string, set settings.Settings, classes int, tensors []*nn.Param, log *slog.Logger) error {
	sched := set.Engine(settings.Offline, classes, log).Schedule
	var lrs []byte
	for s := range set.Steps {
		lrs = binary.LittleEndian.AppendUint64(lrs, math.Float64bits(sched.LR(s)))
	}
	if err := os.WriteFile(filepath.Join(dir, "lrs.f64"), lrs, 0o644); err != nil {
		return err
	}
	list := make([][2]any, len(tensors))
	for k, p := range tensors {
		list[k] = [2]any{p.Name, p.Shape}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "tensors.json"), b, 0o644)
}

// runTorchTrain runs torchref.py --mode train, its progress to stderr,
// and returns its result line.
func runTorchTrain(ctx context.Context, py, dir string, j trainJob, set settings.Settings, classes int, stderr io.Writer) ([]byte, error) {
	script, err := writeScript(dir)
	if err != nil {
		return nil, err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	args := []string{script, "--mode", "train", "--threads", strconv.Itoa(j.threads), "--seed", strconv.FormatUint(set.Seed, 10),
		"--steps", strconv.Itoa(set.Steps), "--batch", strconv.Itoa(set.Batch), "--dim", strconv.Itoa(set.Dim),
		"--classes", strconv.Itoa(classes), "--init", set.Init, "--weight-decay", f(set.WeightDecay), "--wd-scope", set.WDScope,
		"--momentum", f(set.Momentum), "--scale", f(set.Scale), "--margin", f(set.M), "--log-every", strconv.Itoa(j.logEvery),
		"--inputs", filepath.Join(dir, "inputs.f32"), "--labels", filepath.Join(dir, "labels.i32"), "--lrs", filepath.Join(dir, "lrs.f64"),
		"--tensors", filepath.Join(dir, "tensors.json"), "--params-out", filepath.Join(dir, "trained.f32")}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("train: torchref.py: %w", err)
	}
	res := bytes.TrimSpace(out.Bytes())
	if !json.Valid(res) {
		return nil, fmt.Errorf("train: torchref.py printed %q, not one JSON result", res)
	}
	return append(res, '\n'), nil
}

// loadTrained uploads the raw float32 tensors torchref.py wrote, in the
// order of tensors, into them.
func loadTrained(path string, be kernels.Backend, tensors []*nn.Param) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	total := 0
	for _, p := range tensors {
		total += p.N
	}
	if len(raw) != 4*total {
		return fmt.Errorf("train: %s: %d bytes, want %d (%d floats)", path, len(raw), 4*total, total)
	}
	vals := make([]float32, total)
	if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, vals); err != nil {
		return err
	}
	for _, p := range tensors {
		for _, v := range vals[:p.N] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("train: PyTorch's %s holds a non-finite value", p.Name)
			}
		}
		if err := be.Upload(p.W, vals[:p.N]); err != nil {
			return fmt.Errorf("train: %s: %w", p.Name, err)
		}
		vals = vals[p.N:]
	}
	return nil
}
