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
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type trainFlags struct {
	set           settings.Settings
	offline       bool
	data          string
	out           string
	logEvery      int
	snapshotEvery int
	evalAfter     bool
	impostorPairs int
	baselines     bool
	threads       int
	dev           deviceFlags
	stream        streamFlags
}

const trainLong = `Streaming (default): train consumes samples.byid and samples.instance as a
Kafka consumer group (--group), runs FFC steps, publishes every class-center
change on NATS (centers.<model>.<id>, centers.<model>.step.<run>), and every
--checkpoint-every steps or --checkpoint-interval writes a checkpoint to
object storage (model, optimizer, pool, LRU, pos bits, step, settings and the
Kafka offsets it covers) before committing those offsets. On start it
restores the newest complete checkpoint, keeps its pool size Q (a restart may
change --batch, not --pool) and seeks to its offsets. It needs real
--kafka-brokers, --nats-url and --s3-endpoint; 'ffc demo' runs the whole
pipeline on embedded servers.

Offline (--offline): the FFC trainer — or the full FC / Partial FC baselines
on the same backbone and kernels — over the train split of a local data set
(built by 'ffc data glyphs' or 'ffc data synth'), printing loss, images/s,
pool occupancy and ETA, and writing checkpoints (probe.params,
gallery.params, settings.json), the loss curve (curve.json, loss.png) and,
with --eval, the evaluation (summary.json, roc.png) to --out.

Each FFC step takes B id pairs (id loader: uniform over identities) and B
instances (instance loader: uniform over images), so x = [a1; h1] and
y = [a2; h2]; --dual-loader=false (offline) uses 2·B instances instead, and
--id-only B id pairs alone (x = a1, y = a2).

A flag of one mode given in the other is refused (from the environment or
a configuration file it is ignored with a warning).`

func newTrainCmd(a *app) *cobra.Command {
	f := &trainFlags{set: settings.Defaults(settings.Offline | settings.Streaming)}
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model: streaming from Kafka, or --offline from a local data set",
		Long:  trainLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runTrain(cmd, a, f) },
	}
	fs := cmd.Flags()
	settings.AddFlags(fs, settings.Offline|settings.Streaming, &f.set)
	fs.BoolVar(&f.offline, "offline", false, "train from a local data set instead of streaming from Kafka")
	fs.StringVar(&f.data, "data", ".cache/ffc-data/glyphs-ci", "data set folder (images.bin, index.bin, manifest.json)")
	fs.StringVar(&f.out, "out", "runs/latest", "output folder for checkpoints, settings.json, curve.json and summary.json")
	fs.IntVar(&f.logEvery, "log-every", 10, "progress line every N steps")
	fs.IntVar(&f.snapshotEvery, "snapshot-every", 0, "keep a checkpoint every N steps in <out>/snapshots/step-NNNNNN (probe.params, settings.json: 'ffc eval --checkpoint' and 'ffc curve' read them; 0: none)")
	fs.BoolVar(&f.evalAfter, "eval", true, "evaluate (top-1, TAR@FAR) after training")
	fs.IntVar(&f.impostorPairs, "impostor-pairs", engine.DefaultImpostorPairs, "evaluation: TAR@FAR scores every open-set pair when there are at most this many impostor pairs (exact), else samples this many")
	fs.BoolVar(&f.baselines, "baselines", true, "evaluation: also evaluate the untrained network of the same seed and raw pixels on the same images and pairs")
	for _, name := range []string{"data", "out", "log-every", "snapshot-every", "eval", "impostor-pairs", "baselines"} {
		settings.Annotate(fs, name, settings.Offline)
	}
	addThreadsFlag(fs, &f.threads)
	f.dev.addFlags(fs)
	f.stream.addFlags(fs)
	return cmd
}

func runTrain(cmd *cobra.Command, a *app, f *trainFlags) error {
	mode := settings.Streaming
	if f.offline {
		mode = settings.Offline
	}
	if err := a.checkModes(cmd, mode); err != nil {
		return err
	}
	if err := f.dev.check(); err != nil {
		return err
	}
	if f.snapshotEvery < 0 {
		return fmt.Errorf("train: --snapshot-every %d: want ≥ 0", f.snapshotEvery)
	}
	if !f.offline {
		return runStreamTrain(cmd.Context(), a, f)
	}
	return runOfflineTrain(cmd, a, f)
}

func runOfflineTrain(cmd *cobra.Command, a *app, f *trainFlags) error {
	file, err := dataset.Open(f.data)
	if err != nil {
		return fmt.Errorf("train: open data set %s: %w (build one with 'ffc data glyphs' or 'ffc data synth')", f.data, err)
	}
	defer file.Close()
	ds, err := engine.WithProtocol(file, strings.ToLower(f.set.Protocol))
	if err != nil {
		return fmt.Errorf("train: --%w", err)
	}
	set, ix, err := f.set.DeriveOffline(ds)
	if err != nil {
		return fmt.Errorf("train: %s: %w", f.data, err)
	}
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	// FC and PFC heads get a row per train class only (TrainIndex's labels).
	e, err := engine.New(be, set.Engine(settings.Offline, len(ix.Labels), a.log))
	if err != nil {
		return err
	}
	defer e.Close()
	out := a.stdout
	trainImages := 0
	for _, imgs := range ix.ByClass {
		trainImages += len(imgs)
	}
	fmt.Fprintf(out, "train: %s head, %s backbone (D=%d) on %s (protocol %s): %d train classes, %d train images (of %d in the set); backend %s\n",
		set.Head, set.Backbone, set.Dim, f.data, set.Protocol, len(ix.Labels), trainImages, ds.Len(), be.Name())
	if set.Head == engine.HeadFFC {
		loaders := map[[2]bool]string{{true, false}: "dual (id pairs + instances)", {true, true}: "id loader only", {false, false}: "instance loader only"}[[2]bool{set.DualLoader, set.IDOnly}]
		fmt.Fprintf(out, "train: pool Q=%d slots (%.1f%% of train classes), batch B=%d, loaders: %s\n", set.Pool, 100*float64(set.Pool)/float64(len(ix.Labels)), set.Batch, loaders)
	}
	if err := settings.WriteFile(f.out, set); err != nil {
		return err
	}
	res, err := engine.Train(cmd.Context(), e, ds, engine.TrainOptions{
		Steps: set.Steps, DualLoader: set.DualLoader, IDOnly: set.IDOnly, LogEvery: f.logEvery, Progress: out,
		CheckpointDir: f.out, CheckpointEvery: set.CheckpointEvery, Seed: set.Seed,
		SnapshotEvery: f.snapshotEvery, Snapshot: func(steps int) error { return writeSnapshot(e, set, f.out, steps) },
	})
	if werr := writeCurve(f.out, set.Head, res.Curve); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	fmt.Fprintf(out, "train: %d steps (%d skipped) in %s, %.0f images/s; loss %.4f → %.4f\n",
		res.Steps, res.Skipped, res.Elapsed.Round(1e6), res.ImagesPerS, res.FirstLoss, res.LastLoss)
	summary := map[string]any{"train": res, "settings": set, "backend": be.Name()}
	if f.evalAfter {
		ev, err := evaluate(cmd.Context(), a, evalJob{e: e, be: be, set: set, ds: ds, impostors: f.impostorPairs, seed: set.Seed, dir: f.out, baselines: f.baselines})
		if err != nil {
			return err
		}
		summary["eval"] = ev
	}
	return writeJSON(filepath.Join(f.out, "summary.json"), summary)
}

// snapshotDir is the folder of the snapshot after steps steps of the run
// in out.
func snapshotDir(out string, steps int) string {
	return filepath.Join(out, "snapshots", fmt.Sprintf("step-%06d", steps))
}

// writeSnapshot keeps the engine's checkpoint after steps steps, with the
// run's settings, so that 'ffc eval --checkpoint' reads it as it is.
func writeSnapshot(e *engine.Engine, set settings.Settings, out string, steps int) error {
	dir := snapshotDir(out, steps)
	if err := e.SaveCheckpoint(dir); err != nil {
		return err
	}
	return settings.WriteFile(dir, set)
}

// writeCurve writes curve.json and, when there is a curve, loss.png.
func writeCurve(dir, head string, curve []engine.Point) error {
	if err := writeJSON(filepath.Join(dir, "curve.json"), curve); err != nil {
		return err
	}
	if len(curve) == 0 {
		return nil
	}
	return writeLossPNG(filepath.Join(dir, "loss.png"), head, curve)
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
