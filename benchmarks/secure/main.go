// Command secure measures what security costs the pipeline: the same
// `ffc demo` run (embedded stack, synthetic identities, the small mlp
// backbone so that the pipeline, not the model, limits the rate) in
// plaintext and with --secure (TLS on every connection, SASL/SCRAM and
// ACLs on Kafka, nkey users with subject permissions on NATS, HTTPS to
// S3, a role per part), alternating in one run, and prints a table of
// trained samples/s.
//
//	go run ./benchmarks/secure --rounds 3 --steps 300
//	go run ./benchmarks/secure --ffc bin/ffc --out benchmarks/secure/RESULTS.md
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
)

type options struct {
	ffc, out, backbone        string
	rounds, steps, batch, ids int
	dim, threads              int
}

// summary is what the benchmark reads of `ffc demo --json`.
type summary struct {
	Steps             int     `json:"steps"`
	TrainingSeconds   float64 `json:"training_seconds"`
	SamplesPerSecond  float64 `json:"samples_per_second"`
	ProducedPairs     int64   `json:"produced_pairs"`
	ProducedInstances int64   `json:"produced_instances"`
}

func main() {
	var o options
	flag.StringVar(&o.ffc, "ffc", "", "ffc binary (default: built from this checkout into a temporary folder)")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs plaintext then secure")
	flag.IntVar(&o.steps, "steps", 300, "trainer steps per run")
	flag.IntVar(&o.batch, "batch", 64, "batch B (B id pairs + B instances per step)")
	flag.IntVar(&o.ids, "ids", 1000, "synthetic identities")
	flag.IntVar(&o.dim, "dim", 32, "embedding dimension")
	flag.IntVar(&o.threads, "threads", 1, "trainer compute threads")
	flag.StringVar(&o.backbone, "backbone", "mlp", "backbone")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "secure:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "ffc-bench-secure-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if o.ffc == "" {
		o.ffc = filepath.Join(tmp, "ffc")
		// The build tags of the CPU backend, as make build chooses them.
		tags, err := exec.CommandContext(ctx, "deploy/local/blas.sh").Output()
		if err != nil {
			return fmt.Errorf("deploy/local/blas.sh (run from the repository root): %w", err)
		}
		build := exec.CommandContext(ctx, "go", "build", "-tags", strings.TrimSpace(string(tags)), "-o", o.ffc, "./cmd/ffc")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/ffc: %w", err)
		}
	}
	began := time.Now()
	load := benchutil.LoadAvg()
	rates := map[bool][]float64{}
	var rows []string
	for r := 1; r <= o.rounds; r++ {
		for _, secure := range []bool{false, true} {
			s, err := demo(ctx, o, tmp, secure)
			if err != nil {
				return err
			}
			rates[secure] = append(rates[secure], s.SamplesPerSecond)
			rows = append(rows, fmt.Sprintf("| %d | %s | %d | %.2f | %.1f |", r, mode(secure), s.Steps, s.TrainingSeconds, s.SamplesPerSecond))
			fmt.Fprintf(os.Stderr, "round %d %s: %.1f samples/s\n", r, mode(secure), s.SamplesPerSecond)
		}
	}
	var rep bytes.Buffer
	report(&rep, o, rows, rates, load, time.Since(began))
	fmt.Print(rep.String())
	if o.out != "" {
		return os.WriteFile(o.out, rep.Bytes(), 0o644)
	}
	return nil
}

func mode(secure bool) string {
	if secure {
		return "secure"
	}
	return "plaintext"
}

// demo runs one `ffc demo` and returns its summary.
func demo(ctx context.Context, o options, tmp string, secure bool) (summary, error) {
	args := []string{"demo", "--json", "--synthetic", "--synthetic-ids", strconv.Itoa(o.ids), "--data-dir", filepath.Join(tmp, "data"),
		"--backbone", o.backbone, "--dim", strconv.Itoa(o.dim), "--batch", strconv.Itoa(o.batch), "--steps", strconv.Itoa(o.steps),
		"--threads", strconv.Itoa(o.threads), "--new-ids", "0", "--remove-ids", "0", "--log-level", "warn"}
	if secure {
		args = append(args, "--secure")
	}
	cmd := exec.CommandContext(ctx, o.ffc, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return summary{}, fmt.Errorf("ffc %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	var s summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		return s, fmt.Errorf("ffc demo summary: %w", err)
	}
	return s, nil
}

func report(w io.Writer, o options, rows []string, rates map[bool][]float64, load string, took time.Duration) {
	fmt.Fprintf(w, "# Security overhead: `ffc demo` plaintext against `--secure`\n\n")
	fmt.Fprintf(w, "Command: `go run ./benchmarks/secure %s`\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(w, "Machine: %s, %.0f GiB, %s %s/%s; load average %s at the start, %s at the end; %s in all.\n\n",
		benchutil.CPUModel(), benchutil.MemTotalGiB(), runtime.Version(), runtime.GOOS, runtime.GOARCH, load, benchutil.LoadAvg(), took.Round(time.Second))
	fmt.Fprintf(w, "Each run: the embedded stack, %d synthetic IDs, %s backbone, D=%d, B=%d, %d steps, %d trainer thread(s); "+
		"samples/s = trained samples (2B per step) over the training time, as `ffc demo` reports it.\n\n", o.ids, o.backbone, o.dim, o.batch, o.steps, o.threads)
	fmt.Fprintln(w, "| round | mode | steps | training s | samples/s |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintln(w, r)
	}
	p, s := benchutil.Median(rates[false]), benchutil.Median(rates[true])
	fmt.Fprintf(w, "\nMedian samples/s: plaintext %.1f, secure %.1f; secure/plaintext = %.3f.\n", p, s, s/p)
}
