package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/ffc-stream/ffc/centers"
)

// flags are the command-line settings.
type flags struct {
	child                     string
	nList, qFixed, heads      string
	qFrac, bigGFlop, rate     float64
	dim, batch, steps, warmup int
	bigSteps, threads         int
	backend, out              string
	headroom                  float64
	timeout                   time.Duration
}

// parseFlags defines the flags and parses the command line.
func parseFlags() flags {
	var f flags
	flag.StringVar(&f.child, "child", "", "internal: run one configuration (JSON) and report it")
	flag.StringVar(&f.nList, "n", "10k,100k,1M,10M", "class counts N (comma-separated; k and M suffixes allowed)")
	flag.Float64Var(&f.qFrac, "q-frac", 0.01, "FFC pool size as a fraction of N (0 to skip)")
	flag.StringVar(&f.qFixed, "q-fixed", "100k", "also an FFC pool of this fixed size (0 to skip)")
	flag.IntVar(&f.dim, "dim", 512, "feature dimension D")
	flag.IntVar(&f.batch, "batch", 256, "batch size B (probe features per step)")
	flag.IntVar(&f.steps, "steps", 5, "timed steps per configuration (median reported)")
	flag.IntVar(&f.warmup, "warmup", 1, "untimed warm-up steps per configuration")
	flag.IntVar(&f.bigSteps, "big-steps", 2, "timed steps for configurations above --big-gflop")
	flag.Float64Var(&f.bigGFlop, "big-gflop", 200, "matrix-product GFLOP per step above which --big-steps applies")
	flag.Float64Var(&f.rate, "rate", centers.DefaultPFCRate, "Partial FC sample rate")
	flag.StringVar(&f.backend, "backend", "cpu", "compute backend: cpu (OpenBLAS when linked, else pure Go) or cpu-go (pure-Go GEMM)")
	flag.IntVar(&f.threads, "threads", 0, "backend threads (0 = GOMAXPROCS)")
	flag.Float64Var(&f.headroom, "headroom-gib", 4, "memory left free: a configuration needing more than MemAvailable minus this is refused")
	flag.StringVar(&f.heads, "heads", "fc,pfc,ffc", "heads to run")
	flag.StringVar(&f.out, "out", "benchmarks/heads/RESULTS.md", "write the results here (empty: do not write)")
	flag.DurationVar(&f.timeout, "child-timeout", 10*time.Minute, "limit for one configuration")
	flag.Parse()
	return f
}

// sweep is the parent's plan: every class count, pool size and head to run
// in child processes.
type sweep struct {
	flags
	ns    []int           // class counts N
	fixed int             // fixed FFC pool size; 0 for none
	want  map[string]bool // heads to run
	self  string          // this binary, re-executed for each child
	base  config          // the settings common to all children
}

// newSweep checks the flags and makes the plan.
func newSweep(f flags) (*sweep, error) {
	s := &sweep{flags: f, want: map[string]bool{}}
	var err error
	if s.ns, err = benchutil.ParseCounts(f.nList); err != nil {
		return nil, err
	}
	if f.qFixed != "" && f.qFixed != "0" {
		q, err := benchutil.ParseCounts(f.qFixed)
		if err != nil || len(q) != 1 {
			return nil, fmt.Errorf("--q-fixed %q: want one count", f.qFixed)
		}
		s.fixed = q[0]
	}
	for _, h := range strings.Split(f.heads, ",") {
		h = strings.TrimSpace(h)
		if h != "fc" && h != "pfc" && h != "ffc" {
			return nil, fmt.Errorf("--heads: unknown head %q", h)
		}
		s.want[h] = true
	}
	if f.dim <= 0 || f.batch <= 1 || f.steps < 1 || f.warmup < 0 || f.bigSteps < 1 {
		return nil, errors.New("--dim, --batch, --steps, --big-steps must be positive (batch ≥ 2)")
	}
	if s.self, err = os.Executable(); err != nil {
		return nil, err
	}
	s.base = config{Dim: f.dim, Batch: f.batch, Warmup: f.warmup, Rate: f.rate, Backend: f.backend, Threads: f.threads, Headroom: f.headroom}
	return s, nil
}

// runAll runs every configuration and returns the table rows, grouped by N
// and then pool size, and the backend name the children reported last.
func (s *sweep) runAll() (rows []row, backendName string) {
	for _, n := range s.ns {
		var fc, pfc *result
		if s.want["fc"] {
			fc = s.runHead("fc", n, 0)
		}
		if s.want["pfc"] {
			pfc = s.runHead("pfc", n, 0)
		}
		for _, q := range s.poolSizes(n) {
			var ffc *result
			if s.want["ffc"] {
				ffc = s.runFFC(n, q)
			}
			for _, x := range []struct {
				head string
				r    *result
			}{{"FFC", ffc}, {"FC", fc}, {"Partial FC", pfc}} {
				if x.r != nil {
					rows = append(rows, row{n: n, q: q, head: x.head, r: *x.r, ffc: ffc})
					if x.r.Backend != "" {
						backendName = x.r.Backend
					}
				}
			}
		}
	}
	return rows, backendName
}

// poolSizes are the FFC pool sizes Q to run at n classes: the --q-frac
// share of n and the --q-fixed size, without repeats.
func (s *sweep) poolSizes(n int) []int {
	var qs []int
	if s.qFrac > 0 {
		qs = append(qs, max(1, int(math.Round(s.qFrac*float64(n)))))
	}
	if s.fixed > 0 && !slices.Contains(qs, s.fixed) {
		qs = append(qs, s.fixed)
	}
	return qs
}

// runFFC runs the FFC head at n classes and pool size q, refusing pools
// smaller than 1.5·B.
func (s *sweep) runFFC(n, q int) *result {
	if lim := 3 * s.batch / 2; q < lim {
		r := result{Refused: fmt.Sprintf("Q = %d is below 1.5·B = %d: the pool would evict IDs within the step that inserted them", q, lim)}
		fmt.Fprintf(os.Stderr, "heads: ffc N=%d Q=%d refused: %s\n", n, q, r.Refused)
		return &r
	}
	return s.runHead("ffc", n, q)
}

// runHead runs one configuration in a child process, with --big-steps
// timed steps when it is big, and logs its outcome on stderr.
func (s *sweep) runHead(head string, n, q int) *result {
	c := s.base
	c.Head, c.N, c.Q = head, n, q
	c.Steps = s.steps
	if gflopPerStep(c) > s.bigGFlop {
		c.Steps = min(s.steps, s.bigSteps)
	}
	what := fmt.Sprintf("%s N=%d", c.Head, c.N)
	if c.Head == "ffc" {
		what += fmt.Sprintf(" Q=%d", c.Q)
	}
	fmt.Fprintf(os.Stderr, "heads: %s, %d+%d steps ... ", what, c.Warmup, c.Steps)
	t0 := time.Now()
	r := spawn(s.self, c, s.timeout)
	switch {
	case r.Refused != "":
		fmt.Fprintf(os.Stderr, "refused: %s\n", r.Refused)
	case r.Failed != "":
		fmt.Fprintf(os.Stderr, "failed: %s\n", r.Failed)
	default:
		fmt.Fprintf(os.Stderr, "%.1f ms/step, peak RSS %s (setup %.1f s, total %.0f s)\n", r.StepMS, human(r.PeakRSS), r.InitS, time.Since(t0).Seconds())
	}
	return &r
}
