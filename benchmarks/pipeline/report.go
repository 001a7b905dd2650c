package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/benchmarks/internal/benchutil"
	"github.com/prometheus/client_golang/prometheus"
)

// report prints to stdout and keeps a copy for --out.
type report struct {
	buf bytes.Buffer
	w   io.Writer
}

func (r *report) printf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.buf.WriteString(s)
	_, _ = io.WriteString(r.w, s)
}

// result is one phase's outcome.
type result struct {
	stack, phase  string
	samplesPerSec float64
	imagesPerSec  float64
	note          string
	p50, p99      time.Duration
	timeouts      int
}

// header prints the title, the command, the machine and the settings.
func (r *report) header(o options, args []string) {
	r.printf("# Pipeline throughput, lag and freshness\n\n")
	r.printf("Command: `go run ./benchmarks/pipeline %s`\n\n", strings.Join(args, " "))
	r.printf("Machine: %s; load average %s at the start\n\n", machine(), benchutil.LoadAvg())
	r.printf("Date: %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	r.printf("Settings: %d IDs (2–8 PNGs of 32×32 each), batch B = %d (B id pairs + B instances), %d partitions per topic, %d producer fetch workers per stream; producer lead %d and checkpoint/commit every %d steps (fresh phase: lead %d, checkpoint every %d steps); trainer: mlp backbone (hidden %v), D = %d, pool %d, %s; throughput measured over %s after %s of warm-up\n\n",
		o.ids, o.batch, o.partitions, o.concurrency, o.lead, o.ckptEvery, o.freshLead, o.freshCkptEvery, o.hidden, o.dim, o.pool, threadsOf(o.threads), o.duration, o.warmup)
}

// summary prints the table of every phase of every stack and the SPEC
// targets.
func (r *report) summary(all []result, began time.Time) {
	r.printf("## Summary\n\n")
	r.printf("| stack | phase | samples/s | images/s | notes |\n|---|---|---:|---:|---|\n")
	for _, x := range all {
		sps, ips := "—", "—"
		if x.phase == "s3get" {
			x.phase = "S3 GET"
		}
		if x.samplesPerSec > 0 {
			sps, ips = fmt.Sprintf("%.0f", x.samplesPerSec), fmt.Sprintf("%.0f", x.imagesPerSec)
		}
		r.printf("| %s | %s | %s | %s | %s |\n", x.stack, x.phase, sps, ips, x.note)
	}
	r.printf("\nTargets (SPEC): ≥ %d samples/s with the step disabled (32×32 images, this 2-core machine); freshness p99 ≤ %s on the embedded stack.\n",
		targetSamplesPerSec, targetFreshP99)
	for _, x := range all {
		switch {
		case x.phase == "disabled" && x.samplesPerSec > 0:
			r.printf("- %s, step disabled: %.0f samples/s: %s.\n", x.stack, x.samplesPerSec, met(x.samplesPerSec >= targetSamplesPerSec))
		case x.phase == "fresh" && x.p99 > 0:
			r.printf("- %s, freshness p99 %s: %s.\n", x.stack, x.p99.Round(time.Millisecond), met(x.p99 <= targetFreshP99 && x.timeouts == 0))
		}
	}
	r.printf("\nLoad average %s at the end; the whole run took %s.\n", benchutil.LoadAvg(), time.Since(began).Round(time.Second))
}

// printSeries prints the per-second series of a phase.
func (r *report) printSeries(rows []sample) {
	r.printf("| t (s) | produced pairs/s | produced instances/s | consumed samples/s | lag byid | lag instance | held by flow control |\n|---:|---:|---:|---:|---:|---:|---|\n")
	var prev sample
	for _, x := range rows {
		dt := (x.t - prev.t).Seconds()
		var held []string
		if x.heldByID {
			held = append(held, "byid")
		}
		if x.heldInstances {
			held = append(held, "instance")
		}
		r.printf("| %.0f | %.0f | %.0f | %.0f | %d | %d | %s |\n", x.t.Seconds(), float64(x.pairs-prev.pairs)/dt, float64(x.instances-prev.instances)/dt,
			float64(x.consumed-prev.consumed)/dt, x.lagByID, x.lagInst, strings.Join(held, ", "))
		prev = x
	}
	r.printf("\n")
}

func threadsOf(n int) string {
	if n == 0 {
		return "all cores"
	}
	return fmt.Sprintf("%d threads", n)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// bottleneck says which side held the throughput, from the second half of
// the series. The lag is end − committed offset, so it includes what was
// consumed since the last commit: a consumer-bound pipeline is one whose
// producer spent most samples held by flow control at the lead.
func bottleneck(rows []sample) string {
	if len(rows) < 4 {
		return ""
	}
	tail := rows[len(rows)/2-1:]
	a, z := tail[0], tail[len(tail)-1]
	dt := (z.t - a.t).Seconds()
	pairs, inst := float64(z.pairs-a.pairs)/dt, float64(z.instances-a.instances)/dt
	held := 0
	for _, x := range tail[1:] {
		if x.heldByID || x.heldInstances {
			held++
		}
	}
	rates := fmt.Sprintf("produced %.0f pairs/s and %.0f instances/s", pairs, inst)
	switch {
	case 2*held > len(tail)-1:
		return "consumer-bound: the producer was held by flow control at most samples; " + rates
	case pairs < inst:
		return "producer-bound on id pairs (2 S3 GETs each; a batch takes pairs and instances in equal numbers); " + rates
	default:
		return "producer-bound; " + rates
	}
}

// quantile is the nearest-rank quantile q of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(k, len(s)-1))]
}

// histogram returns the sum and count of a histogram in reg (the
// trainer's Config.Registry).
func histogram(reg prometheus.Gatherer, name string) (sum, count float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				sum += h.GetSampleSum()
				count += float64(h.GetSampleCount())
			}
		}
	}
	return sum, count
}
