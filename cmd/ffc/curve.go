package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/chart"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type curveFlags struct {
	data, out    string
	network      string
	labels       []string
	centerImages int
	impostors    int
	threads      int
	seed         uint64
	dev          deviceFlags
}

const curveLong = `curve evaluates the snapshots of training runs — the checkpoints that
'ffc train --offline --snapshot-every K' keeps in <run>/snapshots — and the
untrained network of each run's seed (step 0), and draws top-1 (solid) and
TAR@1e-4 (dashed) against step for every run in one figure (--out, PNG),
one color a run. The points are written beside it as JSON (same name,
.json), and to <run>/learning.json.

Each point is an evaluation on the run's protocol: exact TAR@FAR over every
open-set pair, and top-1 of the held-out images against class centers of
at most --center-images train images a class (the first by index; 0: all,
as 'ffc eval'), which keeps a point cheap. A run's points are kept in its
learning.json and reused by a later curve with the same options, for the
snapshots not rewritten since.`

func newCurveCmd(a *app) *cobra.Command {
	f := &curveFlags{}
	cmd := &cobra.Command{
		Use:   "curve RUN...",
		Short: "Learning curves: top-1 and TAR@1e-4 against step for training runs, in one PNG",
		Long:  curveLong,
		Args:  cobra.MinimumNArgs(1),
		RunE:  func(cmd *cobra.Command, runs []string) error { return runCurve(cmd.Context(), a, f, runs) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.data, "data", ".cache/ffc-data/glyphs-ci", "data set folder the runs trained on")
	fs.StringVar(&f.out, "out", "learning.png", "the figure (PNG); its points go beside it as .json")
	fs.StringSliceVar(&f.labels, "labels", nil, "a label per run, comma-separated (default: the run's head, or its folder's name when heads repeat)")
	fs.StringVar(&f.network, "network", netProbe, "network of the snapshots: probe, or gallery (the moving average; FFC runs only)")
	fs.IntVar(&f.centerImages, "center-images", 3, "train images averaged into each class center for top-1 (0: all)")
	fs.IntVar(&f.impostors, "impostor-pairs", engine.DefaultImpostorPairs, "TAR@FAR scores every open-set pair when there are at most this many impostor pairs (exact), else samples this many")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed for sampled impostor pairs")
	addThreadsFlag(fs, &f.threads)
	f.dev.addFlags(fs)
	return cmd
}

// CurvePoint is one evaluated snapshot of a run.
type CurvePoint struct {
	Step     int     `json:"step"`
	Top1     float64 `json:"top1"`
	TailTop1 float64 `json:"tail_top1"`
	// TAR at engine.FARs.
	TAR      []engine.ROCPoint `json:"tar_at_far"`
	AllPairs bool              `json:"all_pairs"`
}

// Curve is the learning curve of one run.
type Curve struct {
	Run      string `json:"run"`
	Label    string `json:"label"`
	Head     string `json:"head"`
	Network  string `json:"network"`
	Protocol string `json:"protocol"`
	// The evaluation's options: a later curve over the same run reuses
	// the points of one made with the same.
	Data          string       `json:"data"`
	CenterImages  int          `json:"center_images"`
	ImpostorPairs int          `json:"impostor_pairs"`
	Seed          uint64       `json:"seed"`
	Points        []CurvePoint `json:"points"`
}

func runCurve(ctx context.Context, a *app, f *curveFlags, runs []string) error {
	if f.centerImages < 0 {
		return fmt.Errorf("curve: --center-images %d: want ≥ 0", f.centerImages)
	}
	if err := checkNetwork(f.network); err != nil {
		return fmt.Errorf("curve: %w", err)
	}
	if len(f.labels) > 0 && len(f.labels) != len(runs) {
		return fmt.Errorf("curve: %d labels for %d runs", len(f.labels), len(runs))
	}
	if err := f.dev.check(); err != nil {
		return err
	}
	file, err := dataset.Open(f.data)
	if err != nil {
		return fmt.Errorf("curve: %w", err)
	}
	defer file.Close()
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	sets := make([]settings.Settings, len(runs))
	for k, run := range runs {
		if sets[k], err = settings.ReadFile(run); err != nil {
			return fmt.Errorf("curve: %w", err)
		}
	}
	labels := curveLabels(runs, sets, f.labels)
	var curves []Curve
	for k, run := range runs {
		c, err := runCurveOf(ctx, a, be, file, f, run, sets[k])
		if err != nil {
			return fmt.Errorf("curve: %s: %w", run, err)
		}
		c.Label = labels[k]
		if err := writeJSON(filepath.Join(run, "learning.json"), c); err != nil {
			return err
		}
		curves = append(curves, c)
	}
	if err := writeJSON(strings.TrimSuffix(f.out, filepath.Ext(f.out))+".json", curves); err != nil {
		return err
	}
	return writePNG(f.out, func(w io.Writer) error { return drawCurves(w, curves) })
}

// curveLabels is the given labels, or each run's head, or its folder's
// name where heads repeat.
func curveLabels(runs []string, sets []settings.Settings, given []string) []string {
	if len(given) > 0 {
		return given
	}
	heads := make([]string, len(runs))
	count := map[string]int{}
	for k, set := range sets {
		heads[k] = set.Head
		count[set.Head]++
	}
	for k, run := range runs {
		if count[heads[k]] > 1 {
			heads[k] = filepath.Base(filepath.Clean(run))
		}
	}
	return heads
}

// snapshotSteps lists the steps of the run's snapshots, ascending: the
// folders step-N (or links to them; a curve over some of a run's
// snapshots links those) that hold a probe.params.
func snapshotSteps(run string) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(run, "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("no snapshots (train with --snapshot-every): %w", err)
	}
	var steps []int
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "step-")
		if !ok {
			continue
		}
		s, err := strconv.Atoi(n)
		if err != nil || s <= 0 {
			continue
		}
		// A snapshot is a folder (or a link to one) with the probe's file.
		if _, err := os.Stat(filepath.Join(snapshotDir(run, s), engine.ProbeFile)); err != nil {
			continue
		}
		steps = append(steps, s)
	}
	slices.Sort(steps)
	return steps, nil
}

// runCurveOf evaluates the untrained network of the run's seed and each
// of its snapshots.
func runCurveOf(ctx context.Context, a *app, be kernels.Backend, file *dataset.Reader, f *curveFlags, run string, set settings.Settings) (Curve, error) {
	ds, err := engine.WithProtocol(file, strings.ToLower(set.Protocol))
	if err != nil {
		return Curve{}, err
	}
	steps, err := snapshotSteps(run)
	if err != nil {
		return Curve{}, err
	}
	e, err := probeEngine(be, set, settings.Offline, a.log)
	if err != nil {
		return Curve{}, err
	}
	defer e.Close()
	c := Curve{Run: run, Head: set.Head, Network: f.network, Protocol: set.Protocol, Data: f.data,
		CenterImages: f.centerImages, ImpostorPairs: f.impostors, Seed: f.seed}
	done := earlierPoints(run, c)
	opts := engine.EvalOptions{ImpostorPairs: f.impostors, Seed: f.seed, MaxCenterImages: f.centerImages}
	for _, step := range append([]int{0}, steps...) {
		if p, ok := done[step]; ok {
			c.Points = append(c.Points, p)
			fmt.Fprintf(a.stdout, "curve: %s step %d: top-1 %.2f%%%s (kept from learning.json)\n", run, step, 100*p.Top1, tarText(p.TAR))
			continue
		}
		if step > 0 {
			if err := loadParamsFile(networkFile(snapshotDir(run, step), f.network), be, e.Probe()); err != nil {
				return c, err
			}
		}
		ev, err := engine.Evaluate(ctx, e, ds, opts)
		if err != nil {
			return c, fmt.Errorf("step %d: %w", step, err)
		}
		p := CurvePoint{Step: step, Top1: ev.Top1, TailTop1: ev.TailTop1, TAR: ev.TAR, AllPairs: ev.AllPairs}
		c.Points = append(c.Points, p)
		fmt.Fprintf(a.stdout, "curve: %s step %d: top-1 %.2f%%%s\n", run, step, 100*p.Top1, tarText(p.TAR))
	}
	return c, nil
}

// earlierPoints are the points of the run's learning.json that an
// evaluation with c's options would give again: written with the same
// options, for snapshots not rewritten since.
func earlierPoints(run string, c Curve) map[int]CurvePoint {
	path := filepath.Join(run, "learning.json")
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	var old Curve
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &old) != nil {
		return nil
	}
	if old.Network != c.Network || old.Protocol != c.Protocol || old.Data != c.Data || old.CenterImages != c.CenterImages ||
		old.ImpostorPairs != c.ImpostorPairs || old.Seed != c.Seed {
		return nil
	}
	done := map[int]CurvePoint{}
	for _, p := range old.Points {
		if p.Step > 0 {
			snap, err := os.Stat(filepath.Join(snapshotDir(run, p.Step), engine.ProbeFile))
			if err != nil || snap.ModTime().After(st.ModTime()) {
				continue
			}
		}
		done[p.Step] = p
	}
	return done
}

func tarText(tar []engine.ROCPoint) string {
	var b strings.Builder
	for _, p := range tar {
		fmt.Fprintf(&b, ", TAR@%.0e %.2f%%", p.FAR, 100*p.TAR)
	}
	return b.String()
}

// drawCurves draws top-1 (solid) and TAR at the lowest FAR (dashed)
// against step, a color a run.
func drawCurves(w io.Writer, curves []Curve) error {
	var series []chart.Series
	for k, c := range curves {
		top1 := chart.Series{Name: c.Label + " top-1", Color: k + 1}
		tar := chart.Series{Name: c.Label + " TAR@1e-4", Color: k + 1, Dashed: true}
		for _, p := range c.Points {
			top1.X, top1.Y = append(top1.X, float64(p.Step)), append(top1.Y, p.Top1)
			if n := len(p.TAR); n > 0 {
				tar.Name = fmt.Sprintf("%s TAR@%.0e", c.Label, p.TAR[n-1].FAR)
				tar.X, tar.Y = append(tar.X, float64(p.Step)), append(tar.Y, p.TAR[n-1].TAR)
			}
		}
		series = append(series, top1, tar)
	}
	return chart.Lines(w, chart.Options{Title: "learning curves: top-1 (solid) and TAR at the lowest FAR (dashed)", XLabel: "step", YLabel: "rate", YMin: 0, YMax: 1}, series...)
}
