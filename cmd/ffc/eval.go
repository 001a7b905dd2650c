package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/chart"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type evalFlags struct {
	net                netFlags
	data, out          string
	threads, impostors int
	centerImages       int
	baselines          bool
	protocol           string
	seed               uint64
	dev                deviceFlags
}

func newEvalCmd(a *app) *cobra.Command {
	f := &evalFlags{}
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a checkpoint: closed-set top-1 and open-set TAR@FAR",
		Long: `eval loads the probe network (or, --network gallery, the moving-average
gallery network of an FFC run) of a checkpoint folder written by 'ffc train',
built from the settings the checkpoint records (settings.json; model.json
for older ones), and measures, on a local data set:
  - closed-set top-1: held-out images (whole fonts never trained on) against
    class centers averaged from the enrolled train images;
  - open-set verification: TAR at FAR 1e-2, 1e-3 and 1e-4 on pairs of images
    from classes never trained on.
It prints the numbers and writes eval.json (with the ROC points) to --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runEval(cmd, a, f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.data, "data", ".cache/ffc-data/glyphs-ci", "data set folder")
	f.net.addFlags(fs)
	fs.StringVar(&f.out, "out", "", "folder for eval.json (default: the checkpoint folder)")
	addThreadsFlag(fs, &f.threads)
	fs.IntVar(&f.impostors, "impostor-pairs", engine.DefaultImpostorPairs, "TAR@FAR scores every open-set pair when there are at most this many impostor pairs (exact), else samples this many")
	fs.IntVar(&f.centerImages, "center-images", 0, "train images averaged into each class center for top-1, the first by index (0: all; fewer: a cheaper estimate, as 'ffc curve' makes)")
	fs.StringVar(&f.protocol, "protocol", "", "split: fonts or last-image (see ffc train --help; empty: the checkpoint's)")
	fs.BoolVar(&f.baselines, "baselines", true, "also evaluate the untrained network of the checkpoint's seed and raw pixels on the same images and pairs")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed for the impostor pairs")
	f.dev.addFlags(fs)
	return cmd
}

func runEval(cmd *cobra.Command, a *app, f *evalFlags) error {
	if err := f.dev.check(); err != nil {
		return err
	}
	if f.centerImages < 0 {
		return fmt.Errorf("eval: --center-images %d: want ≥ 0", f.centerImages)
	}
	file, err := dataset.Open(f.data)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer file.Close()
	set, err := f.net.check()
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	protocol := f.protocol
	if protocol == "" {
		protocol = set.Protocol // the checkpoint's
	}
	ds, err := engine.WithProtocol(file, strings.ToLower(protocol))
	if err != nil {
		return fmt.Errorf("eval: --%w", err)
	}
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	e, err := f.net.loadNet(be, a.log, set)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer e.Close()
	out := f.out
	if out == "" {
		out = f.net.checkpoint
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("eval: --out: %w", err)
	}
	ev, err := evaluate(cmd.Context(), a, evalJob{e: e, be: be, set: set, ds: ds, impostors: f.impostors, centerImages: f.centerImages, seed: f.seed, dir: out, baselines: f.baselines})
	if err != nil {
		return err
	}
	ev.Network = f.net.network
	return writeJSON(filepath.Join(out, "eval.json"), ev)
}

// probeEngine builds the network of set in mode m, as its seed starts it,
// in an engine without head, gallery or optimizer (ProbeOnly): what eval,
// export, embed and the untrained baselines run.
func probeEngine(be kernels.Backend, set settings.Settings, m settings.Mode, log *slog.Logger) (*engine.Engine, error) {
	opts := set.Engine(m, 0, log)
	opts.ProbeOnly = true
	return engine.New(be, opts)
}

// evalJob is one evaluation: the network, what builds its untrained
// twin (the backend and the settings, seed included), the data and where
// roc.png goes.
type evalJob struct {
	e         *engine.Engine
	be        kernels.Backend
	set       settings.Settings
	ds        engine.Images
	impostors int
	// centerImages bounds the train images of a class center (0: all).
	centerImages int
	seed         uint64
	dir          string
	baselines    bool // also evaluate the untrained network and raw pixels
}

// evaluate runs the evaluation (and its baselines), prints it and draws
// roc.png into the job's folder.
func evaluate(ctx context.Context, a *app, j evalJob) (engine.EvalResult, error) {
	opts := engine.EvalOptions{ImpostorPairs: j.impostors, Seed: j.seed, MaxCenterImages: j.centerImages, Progress: dataProgress(a.stderr)}
	ev, err := engine.Evaluate(ctx, j.e, j.ds, opts)
	if err != nil {
		return ev, err
	}
	fmt.Fprintf(a.stdout, "eval: top-1 %.2f%% on %d held-out images of %d classes (chance %.3f%%)\n", 100*ev.Top1, ev.Top1Queries, ev.Top1Classes, 100*ev.ChanceTop1)
	if ev.TailQueries > 0 {
		fmt.Fprintf(a.stdout, "eval: tail top-1 %.2f%% on %d held-out images of the %d classes with ≤ %d images\n", 100*ev.TailTop1, ev.TailQueries, ev.TailClasses, engine.TailMaxImages)
	}
	pairs := "sampled"
	if ev.AllPairs {
		pairs = "every pair"
	}
	for _, p := range ev.TAR {
		fmt.Fprintf(a.stdout, "eval: TAR %.2f%% at FAR %.0e (threshold %.3f; %d genuine, %d impostor pairs of %d open-set classes, %s)\n", 100*p.TAR, p.FAR, p.Threshold, ev.GenuinePairs, ev.ImpostorPairs, ev.OpenClasses, pairs)
	}
	if j.baselines {
		if ev.Baselines, err = baselinesOf(ctx, a, j, opts); err != nil {
			return ev, err
		}
		for _, name := range []string{"untrained", "raw_pixels"} {
			printBaseline(a.stdout, name, ev, *ev.Baselines[name])
		}
	}
	return ev, writeROCPNG(filepath.Join(j.dir, "roc.png"), ev)
}

// baselinesOf evaluates, on the same images and pairs, the untrained
// network of the job's settings and seed, and raw pixels.
func baselinesOf(ctx context.Context, a *app, j evalJob, opts engine.EvalOptions) (map[string]*engine.EvalResult, error) {
	e0, err := probeEngine(j.be, j.set, settings.Offline, a.log)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	defer e0.Close()
	untrained, err := engine.Evaluate(ctx, e0, j.ds, opts)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	all := make([]int, j.ds.Len())
	for i := range all {
		all[i] = i
	}
	px, err := engine.Pixels(j.ds, all)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	pixels, err := engine.EvaluateEmbeddings(j.be, px, j.ds.ImageSize()*j.ds.ImageSize(), j.ds, opts)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return map[string]*engine.EvalResult{"untrained": &untrained, "raw_pixels": &pixels}, nil
}

// printBaseline writes a baseline's figures and what training adds to it.
func printBaseline(w io.Writer, name string, ev, b engine.EvalResult) {
	fmt.Fprintf(w, "eval: baseline %s: top-1 %.2f%% (training adds %+.2f points)", strings.ReplaceAll(name, "_", " "), 100*b.Top1, 100*(ev.Top1-b.Top1))
	for k, p := range b.TAR {
		if k < len(ev.TAR) {
			fmt.Fprintf(w, "; TAR@%.0e %.2f%% (%+.2f)", p.FAR, 100*p.TAR, 100*(ev.TAR[k].TAR-p.TAR))
		}
	}
	fmt.Fprintln(w)
}

func rocSeries(name string, ev engine.EvalResult) chart.Series {
	s := chart.Series{Name: name}
	for _, p := range ev.ROC {
		s.X, s.Y = append(s.X, p.FAR), append(s.Y, p.TAR)
	}
	return s
}

// writeROCPNG draws TAR against FAR on a log axis; without open-set pairs
// there is nothing to draw.
func writeROCPNG(path string, ev engine.EvalResult) error {
	if len(ev.ROC) == 0 {
		return nil
	}
	series := []chart.Series{rocSeries("trained", ev)}
	for _, name := range []string{"untrained", "raw_pixels"} {
		if b := ev.Baselines[name]; b != nil && len(b.ROC) > 0 {
			series = append(series, rocSeries(strings.ReplaceAll(name, "_", " "), *b))
		}
	}
	return writePNG(path, func(w io.Writer) error {
		return chart.Lines(w, chart.Options{Title: fmt.Sprintf("verification ROC: %d genuine, %d impostor pairs", ev.GenuinePairs, ev.ImpostorPairs), XLabel: "FAR", YLabel: "TAR", LogX: true, YMin: 0, YMax: 1}, series...)
	})
}
