package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/chart"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

type trainFlags struct {
	offline       bool
	data          string
	out           string
	head          string
	backbone      string
	dim           int
	batch         int
	pool          int
	topK          int
	dual          bool
	steps         int
	lr            float64
	momentum      float64
	wd            float64
	schedule      string
	warmup        int
	margin        string
	scale         float64
	m             float64
	ema           float64
	pfcRate       float64
	ckptEvery     int
	logEvery      int
	seed          uint64
	threads       int
	evalAfter     bool
	impostorPairs int
	maxSteps      int
	dev           deviceFlags
	stream        streamFlags
}

func newTrainCmd(a *app) *cobra.Command {
	f := &trainFlags{}
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model: streaming from Kafka, or --offline from a local data set",
		Long: `Streaming (default): train consumes samples.byid and samples.instance as a
Kafka consumer group (--group), runs FFC steps, publishes every class-center
change on NATS (centers.<model>.<id>, centers.<model>.step.<run>), and every
--checkpoint-every steps or --checkpoint-interval writes a checkpoint to
object storage (model, optimizer, pool, LRU, pos bits, step and the Kafka
offsets it covers) before committing those offsets. On start it restores the
newest complete checkpoint and seeks to its offsets. It needs real
--kafka-brokers, --nats-url and --s3-endpoint; 'ffc demo' runs the whole
pipeline on embedded servers.

Offline (--offline): the FFC trainer — or the full FC / Partial FC baselines
on the same backbone and kernels — over the train split of a local data set
(built by 'ffc data glyphs' or 'ffc data synth'), printing loss, images/s,
pool occupancy and ETA, and writing checkpoints (probe.params,
gallery.params, model.json), the loss curve (curve.json, loss.png) and, with
--eval, the evaluation (summary.json, roc.png) to --out.

Each FFC step takes B id pairs (id loader: uniform over identities) and B
instances (instance loader: uniform over images), so x = [a1; h1] and
y = [a2; h2]; --dual-loader=false (offline) uses 2·B instances instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runTrain(cmd, a, f) },
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.offline, "offline", false, "train from a local data set instead of streaming from Kafka")
	fs.StringVar(&f.data, "data", ".cache/ffc-data/glyphs-ci", "data set folder (images.bin, index.bin, manifest.json)")
	fs.StringVar(&f.out, "out", "runs/latest", "output folder for checkpoints, curve.json and summary.json")
	fs.StringVar(&f.head, "head", "ffc", "head: ffc, fc (full softmax over N classes) or pfc (Partial FC)")
	fs.StringVar(&f.backbone, "backbone", "irresnet", "backbone: irresnet (1×32×32 yardstick) or mlp")
	fs.IntVar(&f.dim, "dim", 512, "embedding dimension D (128 for quick runs)")
	fs.IntVar(&f.batch, "batch", 64, "batch B (FFC: B id pairs + B instances per step)")
	fs.IntVar(&f.pool, "pool", 0, "FFC pool slots Q (0: max(3·batch, 10% of train classes))")
	fs.IntVar(&f.topK, "topk", 0, "top-K for fresh IDs (0: min(max(int(0.0002·Q), 3), 10))")
	fs.BoolVar(&f.dual, "dual-loader", true, "FFC: id loader + instance loader; false: instances only")
	fs.IntVar(&f.steps, "steps", 300, "training steps")
	fs.Float64Var(&f.lr, "lr", 0.1, "base learning rate")
	fs.Float64Var(&f.momentum, "momentum", 0.9, "SGD momentum (Nesterov)")
	fs.Float64Var(&f.wd, "weight-decay", 1e-4, "SGD weight decay")
	fs.StringVar(&f.schedule, "schedule", "step", "learning-rate schedule: step (×0.1 at 60% and 85% of the steps) or poly")
	fs.IntVar(&f.warmup, "warmup", 0, "linear warm-up steps")
	fs.StringVar(&f.margin, "margin", "cosface", "margin: cosface or arcface")
	fs.Float64Var(&f.scale, "scale", 32, "softmax scale s")
	fs.Float64Var(&f.m, "m", 0, "margin m (0: 0.4 for cosface, 0.5 for arcface)")
	fs.Float64Var(&f.ema, "ema", 0.99, "gallery moving-average momentum m")
	fs.Float64Var(&f.pfcRate, "pfc-rate", 0.1, "Partial FC sample rate")
	fs.IntVar(&f.ckptEvery, "checkpoint-every", 0, "checkpoint every N steps (offline 0: only at the end; streaming 0: every 50)")
	fs.IntVar(&f.logEvery, "log-every", 10, "progress line every N steps (streaming: every N seconds)")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed (initialisation, loaders, pool)")
	addThreadsFlag(fs, &f.threads)
	fs.BoolVar(&f.evalAfter, "eval", true, "evaluate (top-1, TAR@FAR) after training")
	fs.IntVar(&f.impostorPairs, "impostor-pairs", 200000, "impostor pairs for TAR@FAR in the evaluation")
	fs.IntVar(&f.maxSteps, "max-steps", 0, "streaming: stop after this many steps in this run (0: until Ctrl-C)")
	f.dev.addFlags(fs)
	f.stream.addFlags(fs)
	return cmd
}

func marginOf(kind string, s, m float64) (kernels.Margin, error) {
	switch strings.ToLower(kind) {
	case "cosface":
		if m == 0 {
			m = 0.4
		}
		return kernels.Margin{Kind: kernels.CosFace, S: float32(s), M: float32(m)}, nil
	case "arcface":
		if m == 0 {
			m = 0.5
		}
		return kernels.Margin{Kind: kernels.ArcFace, S: float32(s), M: float32(m)}, nil
	}
	return kernels.Margin{}, fmt.Errorf("--margin %q: want cosface or arcface", kind)
}

func runTrain(cmd *cobra.Command, a *app, f *trainFlags) error {
	if err := f.dev.check(); err != nil {
		return err
	}
	if !f.offline {
		return runStreamTrain(cmd.Context(), a, f)
	}
	ds, err := dataset.Open(f.data)
	if err != nil {
		return fmt.Errorf("train: open data set %s: %w (build one with 'ffc data glyphs' or 'ffc data synth')", f.data, err)
	}
	defer ds.Close()
	if ds.ImageSize() != 32 && f.backbone == "irresnet" {
		return fmt.Errorf("train: the irresnet backbone takes 32×32 images; %s has %d×%d", f.data, ds.ImageSize(), ds.ImageSize())
	}
	ix := engine.TrainIndex(ds)
	classes := len(ds.Classes())
	if f.pool == 0 {
		f.pool = max(3*f.batch, (len(ix.Labels)+9)/10)
	}
	margin, err := marginOf(f.margin, f.scale, f.m)
	if err != nil {
		return err
	}
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	sched := nn.Schedule{Kind: f.schedule, BaseLR: f.lr, WarmupSteps: f.warmup, TotalSteps: f.steps, Gamma: 0.1, Milestones: []int{f.steps * 6 / 10, f.steps * 85 / 100}}
	opts := engine.Options{
		Backbone: f.backbone, InLen: ds.ImageSize() * ds.ImageSize(), Dim: f.dim, Head: f.head,
		Batch: f.batch, Pool: f.pool, TopK: f.topK, Classes: classes, PFCRate: f.pfcRate,
		Margin: margin, EMA: float32(f.ema),
		SGD:      nn.SGD{Momentum: float32(f.momentum), WeightDecay: float32(f.wd), Nesterov: true},
		Schedule: sched, Seed: f.seed, Log: a.log,
	}
	e, err := engine.New(be, opts)
	if err != nil {
		return err
	}
	defer e.Close()
	out := a.stdout
	fmt.Fprintf(out, "train: %s head, %s backbone (D=%d) on %s: %d train classes, %d images; backend %s\n",
		f.head, f.backbone, f.dim, f.data, len(ix.Labels), ds.Len(), be.Name())
	if f.head == engine.HeadFFC {
		fmt.Fprintf(out, "train: pool Q=%d slots (%.1f%% of train classes), batch B=%d, dual loader %v\n", f.pool, 100*float64(f.pool)/float64(len(ix.Labels)), f.batch, f.dual)
	}
	if err := engine.WriteModel(f.out, engine.ModelOf(opts)); err != nil {
		return err
	}
	res, err := engine.Train(cmd.Context(), e, ds, engine.TrainOptions{
		Steps: f.steps, DualLoader: f.dual, LogEvery: f.logEvery, Progress: out,
		CheckpointDir: f.out, CheckpointEvery: f.ckptEvery, Seed: f.seed,
	})
	if werr := writeJSON(filepath.Join(f.out, "curve.json"), res.Curve); werr != nil {
		err = errors.Join(err, werr)
	}
	if len(res.Curve) > 0 {
		if werr := writeLossPNG(filepath.Join(f.out, "loss.png"), f.head, res.Curve); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	fmt.Fprintf(out, "train: %d steps (%d skipped) in %s, %.0f images/s; loss %.4f → %.4f\n",
		res.Steps, res.Skipped, res.Elapsed.Round(1e6), res.ImagesPerS, res.FirstLoss, res.LastLoss)
	summary := map[string]any{"train": res, "model": engine.ModelOf(opts), "backend": be.Name()}
	if f.evalAfter {
		ev, err := engine.Evaluate(cmd.Context(), e, ds, engine.EvalOptions{ImpostorPairs: f.impostorPairs, Seed: f.seed})
		if err != nil {
			return err
		}
		printEval(a, ev)
		summary["eval"] = ev
		if err := writeROCPNG(filepath.Join(f.out, "roc.png"), ev); err != nil {
			return err
		}
	}
	return writeJSON(filepath.Join(f.out, "summary.json"), summary)
}

func printEval(a *app, ev engine.EvalResult) {
	fmt.Fprintf(a.stdout, "eval: top-1 %.2f%% on %d held-out images of %d classes (chance %.3f%%)\n", 100*ev.Top1, ev.Top1Queries, ev.Top1Classes, 100*ev.ChanceTop1)
	for _, p := range ev.TAR {
		fmt.Fprintf(a.stdout, "eval: TAR %.2f%% at FAR %.0e (threshold %.3f; %d genuine, %d impostor pairs of %d open-set classes)\n", 100*p.TAR, p.FAR, p.Threshold, ev.GenuinePairs, ev.ImpostorPairs, ev.OpenClasses)
	}
}

// writeLossPNG draws the loss curve.
func writeLossPNG(path, head string, curve []engine.Point) error {
	s := chart.Series{Name: head + " loss"}
	for _, p := range curve {
		s.X, s.Y = append(s.X, float64(p.Step)), append(s.Y, p.Loss)
	}
	return writePNG(path, func(w io.Writer) error {
		return chart.Lines(w, chart.Options{Title: "training loss (" + head + ")", XLabel: "step", YLabel: "loss"}, s)
	})
}

// writeROCPNG draws TAR against FAR on a log axis; without open-set pairs
// there is nothing to draw.
func writeROCPNG(path string, ev engine.EvalResult) error {
	if len(ev.ROC) == 0 {
		return nil
	}
	s := chart.Series{Name: "open-set ROC"}
	for _, p := range ev.ROC {
		s.X, s.Y = append(s.X, p.FAR), append(s.Y, p.TAR)
	}
	return writePNG(path, func(w io.Writer) error {
		return chart.Lines(w, chart.Options{Title: fmt.Sprintf("verification ROC: %d genuine, %d impostor pairs", ev.GenuinePairs, ev.ImpostorPairs), XLabel: "FAR", YLabel: "TAR", LogX: true, YMin: 0, YMax: 1}, s)
	})
}

func writePNG(path string, draw func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := draw(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

type evalFlags struct {
	data, checkpoint, out string
	threads, impostors    int
	seed                  uint64
	dev                   deviceFlags
}

func newEvalCmd(a *app) *cobra.Command {
	f := &evalFlags{}
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a checkpoint: closed-set top-1 and open-set TAR@FAR",
		Long: `eval loads the probe network of a checkpoint folder written by 'ffc train'
and measures, on a local data set:
  - closed-set top-1: held-out images (whole fonts never trained on) against
    class centers averaged from the enrolled train images;
  - open-set verification: TAR at FAR 1e-2, 1e-3 and 1e-4 on pairs of images
    from classes never trained on.
It prints the numbers and writes eval.json (with the ROC points) to --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.dev.check(); err != nil {
				return err
			}
			ds, err := dataset.Open(f.data)
			if err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			defer ds.Close()
			m, err := engine.ReadModel(f.checkpoint)
			if err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			be, err := newBackend(a.log, f.threads, f.dev)
			if err != nil {
				return err
			}
			defer be.Close()
			// An engine with a minimal head: only the probe is used.
			e, err := engine.New(be, engine.Options{Backbone: m.Backbone, Dim: m.Dim, InLen: m.InLen, Hidden: m.Hidden,
				Head: engine.HeadFFC, Batch: 64, Pool: 96, Log: a.log})
			if err != nil {
				return err
			}
			defer e.Close()
			if err := e.LoadProbe(f.checkpoint); err != nil {
				return fmt.Errorf("eval: %w", err)
			}
			ev, err := engine.Evaluate(cmd.Context(), e, ds, engine.EvalOptions{ImpostorPairs: f.impostors, Seed: f.seed})
			if err != nil {
				return err
			}
			printEval(a, ev)
			out := f.out
			if out == "" {
				out = f.checkpoint
			}
			if err := writeROCPNG(filepath.Join(out, "roc.png"), ev); err != nil {
				return err
			}
			return writeJSON(filepath.Join(out, "eval.json"), ev)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.data, "data", ".cache/ffc-data/glyphs-ci", "data set folder")
	fs.StringVar(&f.checkpoint, "checkpoint", "runs/latest", "checkpoint folder (model.json, probe.params)")
	fs.StringVar(&f.out, "out", "", "folder for eval.json (default: the checkpoint folder)")
	addThreadsFlag(fs, &f.threads)
	fs.IntVar(&f.impostors, "impostor-pairs", 200000, "impostor pairs sampled for TAR@FAR")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed for the impostor pairs")
	f.dev.addFlags(fs)
	return cmd
}
