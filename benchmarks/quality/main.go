// Command quality prints the learning-quality table of issue 16 from
// evaluated runs: one row per run (ours from 'ffc train --offline',
// PyTorch's from 'go run ./benchmarks/torchref train' + 'ffc eval'), the
// two baselines every evaluation carries (the untrained network of the
// same seed and raw pixels, on the same probes and pairs), and what each
// trained row adds to both.
//
//	go run ./benchmarks/quality "ours FFC=runs/ffc" "PyTorch FC=runs/torch-fc" > table.md
//
// A run folder holds eval.json (ffc eval) or summary.json (ffc train
// --offline --eval); its settings.json gives the head and the budget. The
// rows must share the evaluation (the same probes and pairs): a run whose
// probe or pair counts differ from the first is refused.
//
// A row may name several runs of one head, comma-separated (the seeds of
// one recipe): its figures are their mean ± sample standard deviation, in
// points, and its train time their mean.
//
//	go run ./benchmarks/quality "ours FC=runs/fc,runs/fc-s2,runs/fc-s3"
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// row is one evaluated run, or the mean of several (runs > 1).
type row struct {
	label string
	set   settings.Settings
	ev    engine.EvalResult
	// trainS is the training time in seconds (0: unknown).
	trainS float64
	// runs is how many runs the row averages; sd holds the sample
	// standard deviation of each of figures' values when runs > 1.
	runs int
	sd   []float64
}

// summary is the part of summary.json (ffc train --offline) read here.
type summary struct {
	Train *struct {
		ElapsedNS int64 `json:"elapsed_ns"`
	} `json:"train"`
	Eval *engine.EvalResult `json:"eval"`
}

// load reads the run in dir.
func load(label, dir string) (row, error) {
	r := row{label: label, runs: 1}
	var err error
	if r.set, err = settings.ReadFile(dir); err != nil {
		return r, err
	}
	var s summary
	if b, err := os.ReadFile(filepath.Join(dir, "summary.json")); err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			return r, fmt.Errorf("%s: summary.json: %w", dir, err)
		}
		if s.Train != nil {
			r.trainS = float64(s.Train.ElapsedNS) / 1e9
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "eval.json")); err == nil {
		var ev engine.EvalResult
		if err := json.Unmarshal(b, &ev); err != nil {
			return r, fmt.Errorf("%s: eval.json: %w", dir, err)
		}
		s.Eval = &ev
	}
	if b, err := os.ReadFile(filepath.Join(dir, "torch-train.json")); err == nil {
		var t struct {
			ElapsedS float64 `json:"elapsed_s"`
		}
		if err := json.Unmarshal(b, &t); err != nil {
			return r, fmt.Errorf("%s: torch-train.json: %w", dir, err)
		}
		r.trainS = t.ElapsedS
	}
	if s.Eval == nil {
		return r, fmt.Errorf("%s: no evaluation (eval.json, or summary.json of a run with --eval)", dir)
	}
	r.ev = *s.Eval
	return r, nil
}

// loadRow reads the runs in dirs, of one head and evaluated alike, as one
// row: the mean of their figures, with the standard deviation.
func loadRow(label string, dirs []string) (row, error) {
	var rs []row
	for _, dir := range dirs {
		r, err := load(label, dir)
		if err != nil {
			return row{}, err
		}
		if len(rs) > 0 {
			if err := sameEval(rs[0].ev, r.ev); err != nil {
				return row{}, fmt.Errorf("%s: %s: %w", label, dir, err)
			}
			if r.set.Head != rs[0].set.Head {
				return row{}, fmt.Errorf("%s: %s: head %s, the first run's %s", label, dir, r.set.Head, rs[0].set.Head)
			}
		}
		rs = append(rs, r)
	}
	if len(rs) == 1 {
		return rs[0], nil
	}
	m := rs[0]
	m.runs = len(rs)
	m.ev.TAR = append([]engine.ROCPoint(nil), m.ev.TAR...)
	vals := make([][]float64, len(rs))
	m.trainS = 0
	known := true // a run of unknown train time leaves the row's unknown
	for i, r := range rs {
		vals[i] = figures(r.ev)
		m.trainS += r.trainS / float64(len(rs))
		known = known && r.trainS > 0
	}
	if !known {
		m.trainS = 0
	}
	mean, sd := meanSD(vals)
	setFigures(&m.ev, mean)
	m.sd = sd
	return m, nil
}

// figures are the values a row shows: top-1, tail top-1, TAR at each of
// engine.FARs (NaN where the run lacks it, or has no tail probes).
func figures(ev engine.EvalResult) []float64 {
	tail := ev.TailTop1
	if ev.TailQueries == 0 {
		tail = math.NaN()
	}
	f := []float64{ev.Top1, tail}
	for _, far := range engine.FARs {
		v, ok := tarAt(ev, far)
		if !ok {
			v = math.NaN()
		}
		f = append(f, v)
	}
	return f
}

// setFigures writes f (as figures returns them) into ev.
func setFigures(ev *engine.EvalResult, f []float64) {
	ev.Top1, ev.TailTop1 = f[0], f[1]
	for i, far := range engine.FARs {
		for j := range ev.TAR {
			if ev.TAR[j].FAR == far {
				ev.TAR[j].TAR = f[2+i]
			}
		}
	}
}

// meanSD is the column-wise mean and sample standard deviation of vals.
func meanSD(vals [][]float64) (mean, sd []float64) {
	n := float64(len(vals))
	mean, sd = make([]float64, len(vals[0])), make([]float64, len(vals[0]))
	for j := range mean {
		for _, v := range vals {
			mean[j] += v[j] / n
		}
		for _, v := range vals {
			sd[j] += (v[j] - mean[j]) * (v[j] - mean[j]) / (n - 1)
		}
		sd[j] = math.Sqrt(sd[j])
	}
	return mean, sd
}

// sameEval reports whether b was evaluated on a's probes and pairs.
func sameEval(a, b engine.EvalResult) error {
	if a.Top1Queries != b.Top1Queries || a.GenuinePairs != b.GenuinePairs || a.ImpostorPairs != b.ImpostorPairs || a.TailQueries != b.TailQueries {
		return fmt.Errorf("evaluated on %d probes (%d tail), %d genuine and %d impostor pairs; the first row on %d (%d), %d and %d",
			b.Top1Queries, b.TailQueries, b.GenuinePairs, b.ImpostorPairs, a.Top1Queries, a.TailQueries, a.GenuinePairs, a.ImpostorPairs)
	}
	return nil
}

func pct(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }

func tarAt(ev engine.EvalResult, far float64) (float64, bool) {
	for _, p := range ev.TAR {
		if p.FAR == far {
			return p.TAR, true
		}
	}
	return 0, false
}

// cells are a result's figures: top-1, tail top-1, TAR at each of FARs,
// each with ± its standard deviation in points when sd is given.
func cells(ev engine.EvalResult, sd []float64) []string {
	var c []string
	for i, v := range figures(ev) {
		switch {
		case math.IsNaN(v):
			c = append(c, "—")
		case sd != nil:
			c = append(c, fmt.Sprintf("%s ± %.2f", pct(v), 100*sd[i]))
		default:
			c = append(c, pct(v))
		}
	}
	return c
}

// gain is what a trained row adds to a baseline at TAR@1e-4 and top-1.
func gain(ev, base engine.EvalResult) string {
	last := engine.FARs[len(engine.FARs)-1]
	t, _ := tarAt(ev, last)
	b, _ := tarAt(base, last)
	return fmt.Sprintf("%+.2f / %+.2f", 100*(ev.Top1-base.Top1), 100*(t-b))
}

// render writes the table.
func render(w io.Writer, rows []row) error {
	if len(rows) == 0 {
		return errors.New("no runs")
	}
	first := rows[0].ev
	for _, r := range rows[1:] {
		if err := sameEval(first, r.ev); err != nil {
			return fmt.Errorf("%s: %w", r.label, err)
		}
	}
	fmt.Fprintf(w, "Probes: %d held-out images of %d classes (tail: %d of %d classes with ≤ %d images); open set: %d classes, %d genuine and %d impostor pairs (%s).\n\n",
		first.Top1Queries, first.Top1Classes, first.TailQueries, first.TailClasses, engine.TailMaxImages, first.OpenClasses, first.GenuinePairs, first.ImpostorPairs, map[bool]string{true: "every pair", false: "sampled"}[first.AllPairs])
	fmt.Fprintln(w, "| run | head | steps | train time | top-1 | tail top-1 | TAR@1e-2 | TAR@1e-3 | TAR@1e-4 | vs untrained (top-1 / TAR@1e-4, points) | vs raw pixels |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	var base map[string]*engine.EvalResult
	for _, r := range rows {
		if base == nil && r.ev.Baselines["untrained"] != nil && r.ev.Baselines["raw_pixels"] != nil {
			base = r.ev.Baselines
		}
	}
	for _, r := range rows {
		vsU, vsP := "—", "—"
		if base != nil {
			vsU, vsP = gain(r.ev, *base["untrained"]), gain(r.ev, *base["raw_pixels"])
		}
		t := "—"
		if r.trainS > 0 {
			t = fmt.Sprintf("%.0f s", r.trainS)
		}
		label := r.label
		if r.runs > 1 {
			label = fmt.Sprintf("%s (mean of %d runs)", label, r.runs)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", label, r.set.Head, r.set.Steps, t, strings.Join(cells(r.ev, r.sd), " | "), vsU, vsP)
	}
	if base != nil {
		for _, name := range []string{"untrained", "raw_pixels"} {
			fmt.Fprintf(w, "| baseline: %s | — | 0 | — | %s | — | — |\n", strings.ReplaceAll(name, "_", " "), strings.Join(cells(*base[name], nil), " | "))
		}
	}
	return nil
}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./benchmarks/quality LABEL=RUN_DIR[,RUN_DIR...] ...")
		flag.PrintDefaults()
	}
	flag.Parse()
	var rows []row
	for _, arg := range flag.Args() {
		label, dirs, ok := strings.Cut(arg, "=")
		if !ok {
			dirs, label = arg, filepath.Base(filepath.Clean(arg))
		}
		r, err := loadRow(label, strings.Split(dirs, ","))
		if err != nil {
			fmt.Fprintln(os.Stderr, "quality:", err)
			os.Exit(2)
		}
		rows = append(rows, r)
	}
	if err := render(os.Stdout, rows); err != nil {
		fmt.Fprintln(os.Stderr, "quality:", err)
		os.Exit(2)
	}
}
