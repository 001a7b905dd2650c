package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/chart"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

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
		Long: `eval loads the probe network of a checkpoint folder written by 'ffc train',
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
	fs.StringVar(&f.checkpoint, "checkpoint", "runs/latest", "checkpoint folder (settings.json, probe.params)")
	fs.StringVar(&f.out, "out", "", "folder for eval.json (default: the checkpoint folder)")
	addThreadsFlag(fs, &f.threads)
	fs.IntVar(&f.impostors, "impostor-pairs", 200000, "impostor pairs sampled for TAR@FAR")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed for the impostor pairs")
	f.dev.addFlags(fs)
	return cmd
}

func runEval(cmd *cobra.Command, a *app, f *evalFlags) error {
	if err := f.dev.check(); err != nil {
		return err
	}
	ds, err := dataset.Open(f.data)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer ds.Close()
	set, err := settings.ReadFile(f.checkpoint)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	opts := set.Engine(settings.Offline, 0, a.log)
	opts.ProbeOnly = true
	e, err := engine.New(be, opts)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	defer e.Close()
	if err := e.LoadProbe(f.checkpoint); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	out := f.out
	if out == "" {
		out = f.checkpoint
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("eval: --out: %w", err)
	}
	ev, err := evaluate(cmd, a, e, ds, f.impostors, f.seed, out)
	if err != nil {
		return err
	}
	return writeJSON(filepath.Join(out, "eval.json"), ev)
}

// evaluate runs the evaluation, prints it and draws roc.png into dir.
func evaluate(cmd *cobra.Command, a *app, e *engine.Engine, ds *dataset.Reader, impostors int, seed uint64, dir string) (engine.EvalResult, error) {
	ev, err := engine.Evaluate(cmd.Context(), e, ds, engine.EvalOptions{ImpostorPairs: impostors, Seed: seed, Progress: dataProgress(a.stderr)})
	if err != nil {
		return ev, err
	}
	fmt.Fprintf(a.stdout, "eval: top-1 %.2f%% on %d held-out images of %d classes (chance %.3f%%)\n", 100*ev.Top1, ev.Top1Queries, ev.Top1Classes, 100*ev.ChanceTop1)
	for _, p := range ev.TAR {
		fmt.Fprintf(a.stdout, "eval: TAR %.2f%% at FAR %.0e (threshold %.3f; %d genuine, %d impostor pairs of %d open-set classes)\n", 100*p.TAR, p.FAR, p.Threshold, ev.GenuinePairs, ev.ImpostorPairs, ev.OpenClasses)
	}
	return ev, writeROCPNG(filepath.Join(dir, "roc.png"), ev)
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
