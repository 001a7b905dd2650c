package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// validate checks every demo flag before any work starts: a wrong value
// fails at once, not after the services, the data and the upload.
func (f *demoFlags) validate() error {
	if err := f.pipe.dev.check(); err != nil {
		return err
	}
	var errs []error
	// Validated now; derived again once the data set's classes are known.
	if _, err := f.pipe.set.Derive(settings.Demo, 0); err != nil {
		errs = append(errs, err)
	}
	p := f.pipe
	switch {
	case p.follow && p.steps > 0:
		errs = append(errs, errors.New("--follow runs until Ctrl-C, --steps stops after that many steps: give one of them"))
	case p.steps < 0:
		errs = append(errs, fmt.Errorf("--steps %d: want ≥ 0 (0: --duration)", p.steps))
	case p.steps == 0 && !p.follow && p.duration <= 0:
		errs = append(errs, fmt.Errorf("--duration %s: want > 0", p.duration))
	}
	if p.newAt < 0 || p.newAt > 1 {
		errs = append(errs, fmt.Errorf("--new-at %g: want a fraction in [0, 1]", p.newAt))
	}
	if p.newIDs < 0 {
		errs = append(errs, fmt.Errorf("--new-ids %d: want ≥ 0", p.newIDs))
	}
	if p.removeIDs < 0 || p.removeIDs > p.newIDs {
		errs = append(errs, fmt.Errorf("--remove-ids %d: want between 0 and --new-ids (%d)", p.removeIDs, p.newIDs))
	}
	if p.synthIDs <= 0 {
		errs = append(errs, fmt.Errorf("--synthetic-ids %d: want > 0", p.synthIDs))
	}
	if f.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: want > 0", f.timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// intro is the demo's first screen: what it runs, for how long, on which
// compute backend.
func (f *demoFlags) intro(out io.Writer) {
	p := f.pipe
	span := fmt.Sprintf("trains for %s (--duration)", p.duration)
	switch {
	case p.follow:
		span = "trains until Ctrl-C (--follow)"
	case p.steps > 0:
		span = fmt.Sprintf("trains %d steps (--steps)", p.steps)
	}
	fmt.Fprintf(out, "ffc demo: the streaming pipeline on this machine: images of identities in S3 → producer →\n"+
		"  Kafka → FFC trainer → class centers on NATS → a subscriber's replica. It checks the services,\n"+
		"  uploads the data set, %s, streams %d new IDs in part-way and removes %d,\n"+
		"  then prints a summary: what it learned against an untrained network, and how fast new IDs got centers.\n",
		span, p.newIDs, p.removeIDs)
	fmt.Fprintf(out, "  compute: %s\n", computeLine(p.dev, p.threads))
}

// computeInfo is the compute backend the demo, train and eval use, as
// the demo's first lines and its JSON say.
type computeInfo struct {
	Backend string `json:"backend"` // cpu-openblas, cpu-go or cuda
	Threads int    `json:"threads,omitempty"`
	// Note says why, when the backend is the slow fallback.
	Note string `json:"note,omitempty"`
}

func computeOf(d deviceFlags, threads int) computeInfo {
	if d.device == deviceCUDA {
		return computeInfo{Backend: "cuda"}
	}
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	if cpu.HaveOpenBLAS() {
		return computeInfo{Backend: "cpu-openblas", Threads: threads}
	}
	return computeInfo{Backend: "cpu-go", Threads: threads, Note: "this ffc was built with -tags noopenblas because OpenBLAS (libopenblas-dev) " +
		"or a C compiler was missing at build time; run deploy/local/blas.sh --install, then make build"}
}

// computeLine says which compute backend runs, and why when it is the
// slow one.
func computeLine(d deviceFlags, threads int) string {
	c := computeOf(d, threads)
	switch c.Backend {
	case "cuda":
		return fmt.Sprintf("CUDA, GPU %d (--device cuda)", d.gpu)
	case "cpu-openblas":
		return fmt.Sprintf("CPU, OpenBLAS matrix products (cgo), %d threads (--threads)", c.Threads)
	}
	return fmt.Sprintf("CPU, pure-Go matrix products, %d threads: SLOWER. %s", c.Threads, c.Note)
}
