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
	// getsPerSec is the s3get phase's rate; fillPerSec the consume
	// phase's topic fill (messages/s).
	getsPerSec, fillPerSec float64
	note                   string
	// The fresh phase: the lead, whether the backlog was reached, the
	// announcement → center quantiles of the got of the of new IDs that
	// got a center, and the timeouts.
	lead          int
	backlog       bool
	p50, p99, max time.Duration
	got, of       int
	timeouts      int
}

// header prints the title, the command, the machine and the settings.
func (r *report) header(o options, args []string) {
	r.printf("# Pipeline throughput, lag and freshness\n\n")
	r.printf("Command: `go run ./benchmarks/pipeline %s`\n\n", strings.Join(args, " "))
	r.printf("Machine: %s; load average %s at the start\n\n", machine(), benchutil.LoadAvg())
	r.printf("Date: %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	r.printf("Throughput phases: %d IDs (2–8 PNGs of 32×32 each), batch B = %d (B id pairs + B instances), %d partitions per topic, %d producer fetch workers per stream; producer lead %d and checkpoint/commit every %d steps; trainer: mlp backbone (hidden %v), D = %d, pool %d, %s; throughput measured over %s after %s of warm-up\n\n",
		o.ids, o.batch, o.partitions, o.concurrency, o.lead, o.ckptEvery, o.hidden, o.dim, o.pool, threadsOf(o.threads), o.duration, o.warmup)
	r.printf("Fresh phase: %s backbone, D = %d, B = %d, pool %d, checkpoint every %d steps; producer leads %v (one run each); %d new IDs per lead, announced one at a time once the lag has reached %.0f%% of the lead; timeout %s\n\n",
		o.freshBackbone, o.dim, o.freshBatch, o.freshPool, o.freshCkptEvery, o.freshLeads, o.newIDs, 100*backlogShare, o.freshTimeout)
}

// summary prints the table of every phase of every stack and the SPEC
// targets.
func (r *report) summary(all []result, began time.Time) {
	r.printf("## Summary\n\n")
	r.printf("| stack | phase | samples/s | images/s | notes |\n|---|---|---:|---:|---|\n")
	for _, x := range all {
		sps, ips := "—", "—"
		x.phase = phaseLabel(x)
		if x.samplesPerSec > 0 {
			sps, ips = fmt.Sprintf("%.0f", x.samplesPerSec), fmt.Sprintf("%.0f", x.imagesPerSec)
		}
		r.printf("| %s | %s | %s | %s | %s |\n", x.stack, x.phase, sps, ips, x.note)
	}
	r.printf("\nTargets: ≥ %d samples/s with the step disabled (SPEC; 32×32 images, this 2-core machine); announcement → center on NATS p99 ≤ %s with backlog leads 256 and 4096, IR-ResNet, D = 128, B = 32, on the embedded stack and on the real services (fresh lane).\n",
		targetSamplesPerSec, targetFreshP99)
	for _, x := range all {
		switch {
		case x.phase == "disabled" && x.samplesPerSec > 0:
			r.printf("- %s, step disabled: %.0f samples/s: %s.\n", x.stack, x.samplesPerSec, met(x.samplesPerSec >= targetSamplesPerSec))
		case x.phase == "fresh":
			r.printf("- %s, fresh lane, lead %d: %s.\n", x.stack, x.lead, freshTarget(x))
		}
	}
	r.printRatios(ratios(all))
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

// freshTarget judges a fresh run against the p99 target: every new ID
// got its center, the p99 is within the target, and the backlog was
// there.
func freshTarget(x result) string {
	if x.got == 0 {
		return fmt.Sprintf("no center for any of the %d new IDs: NOT met", x.of)
	}
	s := fmt.Sprintf("announcement → center p99 %s, %d of %d got a center: %s", x.p99.Round(time.Millisecond), x.got, x.of,
		met(x.p99 <= targetFreshP99 && x.timeouts == 0))
	if !x.backlog {
		s += " (but the backlog did not reach 90 % of the lead: not a measurement at this lead)"
	}
	return s
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

// histogramQuantile estimates quantile q of a histogram in reg as
// Prometheus' histogram_quantile does: linear within the bucket that
// holds the rank (the highest finite bound when it is the +Inf bucket).
// The histogram is in seconds; 0 when it has no observation.
func histogramQuantile(reg prometheus.Gatherer, name string, q float64) time.Duration {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h == nil || h.GetSampleCount() == 0 {
			return 0
		}
		n := float64(h.GetSampleCount())
		rank, lo, below := q*n, 0.0, 0.0
		for _, bk := range h.GetBucket() {
			hi, cum := bk.GetUpperBound(), float64(bk.GetCumulativeCount())
			if cum >= rank && cum > below {
				return time.Duration((lo + (hi-lo)*(rank-below)/(cum-below)) * float64(time.Second))
			}
			lo, below = hi, cum
		}
		return time.Duration(lo * float64(time.Second))
	}
	return 0
}

// histogramCount is the number of observations of a histogram in reg.
func histogramCount(reg prometheus.Gatherer, name string) int {
	_, n := histogram(reg, name)
	return int(n)
}
