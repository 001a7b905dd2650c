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
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// row is one evaluated run.
type row struct {
	label string
	set   settings.Settings
	ev    engine.EvalResult
	// trainS is the training time in seconds (0: unknown).
	trainS float64
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
	r := row{label: label}
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

// cells are a result's figures: top-1, tail top-1, TAR at each of FARs.
func cells(ev engine.EvalResult) []string {
	c := []string{pct(ev.Top1), pct(ev.TailTop1)}
	for _, far := range engine.FARs {
		if v, ok := tarAt(ev, far); ok {
			c = append(c, pct(v))
		} else {
			c = append(c, "—")
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
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", r.label, r.set.Head, r.set.Steps, t, strings.Join(cells(r.ev), " | "), vsU, vsP)
	}
	if base != nil {
		for _, name := range []string{"untrained", "raw_pixels"} {
			fmt.Fprintf(w, "| baseline: %s | — | 0 | — | %s | — | — |\n", strings.ReplaceAll(name, "_", " "), strings.Join(cells(*base[name]), " | "))
		}
	}
	return nil
}

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./benchmarks/quality LABEL=RUN_DIR ...")
		flag.PrintDefaults()
	}
	flag.Parse()
	var rows []row
	for _, arg := range flag.Args() {
		label, dir, ok := strings.Cut(arg, "=")
		if !ok {
			dir, label = arg, filepath.Base(filepath.Clean(arg))
		}
		r, err := load(label, dir)
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
