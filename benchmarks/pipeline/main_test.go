package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for q, want := range map[float64]time.Duration{0.5: 3, 0.99: 5, 1: 5, 0: 1, 0.2: 1, 0.21: 2} {
		if got := quantile(ds, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

func TestBottleneck(t *testing.T) {
	var rows []sample
	for i := range 6 {
		rows = append(rows, sample{t: time.Duration(i) * time.Second, pairs: int64(100 * i), instances: int64(300 * i)})
	}
	if got := bottleneck(rows); !strings.HasPrefix(got, "producer-bound on id pairs") || !strings.Contains(got, "produced 100 pairs/s and 300 instances/s") {
		t.Errorf("bottleneck = %q", got)
	}
	for i := range rows {
		rows[i].heldByID, rows[i].heldInstances = true, true
	}
	if got := bottleneck(rows); !strings.HasPrefix(got, "consumer-bound") {
		t.Errorf("bottleneck = %q", got)
	}
}

// TestOptions checks the defaults derived from trainers/settings and the
// refusal of settings the trainer would refuse.
func TestOptions(t *testing.T) {
	raw := rawFlags{hidden: "512", stacks: "embedded", phases: "s3get, fresh", level: "warn", freshLeads: "256, 4096"}
	good := options{batch: 64, dim: 128, ckptEvery: 50, freshBackbone: "irresnet", freshBatch: 32, freshCkptEvery: 4}
	o, err := good.finish(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.pool != 3*64 || o.freshPool != 3*32 || len(o.freshLeads) != 2 || o.freshLeads[0] != 256 || o.freshLeads[1] != 4096 ||
		len(o.hidden) != 1 || o.logLevel != slog.LevelWarn ||
		strings.Join(o.phases, ",") != "s3get,fresh" || strings.Join(o.stacks, ",") != "embedded" {
		t.Errorf("options = %+v", o)
	}
	if s := o.settings(4); s.Backbone != "mlp" || s.Batch != 64 || s.Pool != 192 || s.CheckpointEvery != 4 {
		t.Errorf("settings = %+v", s)
	}
	if s := o.freshSettings(); s.Backbone != "irresnet" || s.Dim != 128 || s.Batch != 32 || s.Pool != 0 || s.CheckpointEvery != 4 {
		t.Errorf("fresh settings = %+v", s)
	}
	with := func(f func(*options)) options { x := good; f(&x); return x }
	for _, bad := range []struct {
		o   options
		raw rawFlags
	}{
		{with(func(o *options) { o.batch = 63 }), raw},               // odd batch
		{with(func(o *options) { o.pool = 64 }), raw},                // pool < 1.5·batch
		{with(func(o *options) { o.freshBatch = 31 }), raw},          // odd fresh batch
		{with(func(o *options) { o.freshBackbone = "resnet" }), raw}, // unknown backbone
		{good, rawFlags{hidden: "512", stacks: "embedded", phases: "nope", level: "warn", freshLeads: "256"}},
		{good, rawFlags{hidden: "x", stacks: "embedded", phases: "fresh", level: "warn", freshLeads: "256"}},
		{good, rawFlags{hidden: "512", stacks: "embedded", phases: "fresh", level: "warn", freshLeads: "256,x"}},
		{good, rawFlags{hidden: "512", stacks: "embedded", phases: "fresh", level: "warn", freshLeads: ""}},
	} {
		if _, err := bad.o.finish(bad.raw); err == nil {
			t.Errorf("finish(%+v, %+v): no error", bad.o, bad.raw)
		}
	}
}

// smokeOptions are the tiny sizes of the smoke tests, with phases.
func smokeOptions(phases ...string) options {
	return options{duration: 2 * time.Second, warmup: time.Second, ids: 30, newIDs: 3, batch: 8, dim: 16, pool: 24, hidden: []int{32},
		lead: 512, ckptEvery: 8, freshLeads: []int{64}, freshBackbone: "mlp", freshBatch: 8, freshPool: 24, freshCkptEvery: 4,
		freshBacklog: 5 * time.Second, partitions: 2, concurrency: 4,
		pollInterval: 100 * time.Millisecond, freshTimeout: 20 * time.Second, threads: 1, consumeMsgs: 2000,
		phases: phases, logLevel: slog.LevelError}
}

// TestSmoke runs every phase at a tiny size on the embedded stack.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline for about 20 s")
	}
	o := smokeOptions("s3get", "disabled", "consume", "enabled", "fresh")
	rep := &report{w: io.Discard}
	res, err := runStack(context.Background(), o, "embedded", rep)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.buf.String())
	}
	if len(res) != 5 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res[1:4] {
		if !(r.samplesPerSec > 0) || !(r.imagesPerSec >= r.samplesPerSec) {
			t.Errorf("%s: %+v", r.phase, r)
		}
	}
	if f := res[4]; f.phase != "fresh" || f.lead != 64 || f.timeouts != 0 || f.got != 3 || f.of != 3 || f.p50 <= 0 || f.p99 < f.p50 || f.max < f.p99 {
		t.Errorf("fresh: %+v", f)
	}
	for _, want := range []string{"GETs/s", "| t (s) | produced pairs/s", "trainers.Trainer with ConsumeOnly", "Consume only", "engine step", "announcement → center"} {
		if !strings.Contains(rep.buf.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestSmokeSecure runs the consume and fresh phases on the secure stack:
// the topic fill as admin, the producer, the trainer (Kafka and NATS) and
// the replica as their roles, on ACLs provisioned for the phases' names.
func TestSmokeSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline for about 10 s")
	}
	rep := &report{w: io.Discard}
	res, err := runStack(context.Background(), smokeOptions("consume", "fresh"), secureStack, rep)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.buf.String())
	}
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	if c := res[0]; c.stack != secureStack || c.phase != "consume" || !(c.samplesPerSec > 0) || !(c.fillPerSec > 0) {
		t.Errorf("consume: %+v", c)
	}
	if f := res[1]; f.phase != "fresh" || f.timeouts != 0 || f.got != 3 || f.p50 <= 0 {
		t.Errorf("fresh: %+v", f)
	}
}

// TestHistogramQuantile checks the bucket estimate against
// hand-computed values (linear within the bucket; the highest finite
// bound past it).
func TestHistogramQuantile(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Buckets: []float64{1, 2, 4}})
	reg.MustRegister(h)
	if got := histogramQuantile(reg, "x_seconds", 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
	for _, v := range []float64{0.5, 0.5, 1.5, 1.5} {
		h.Observe(v)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, time.Second}, {0.99, 1980 * time.Millisecond}, {0.25, 500 * time.Millisecond}} {
		if got := histogramQuantile(reg, "x_seconds", c.q); (got - c.want).Abs() > time.Microsecond {
			t.Errorf("q %v: %v, want %v", c.q, got, c.want)
		}
	}
	for range 4 {
		h.Observe(10)
	}
	if got, n := histogramQuantile(reg, "x_seconds", 0.99), histogramCount(reg, "x_seconds"); got != 4*time.Second || n != 8 {
		t.Errorf("past the last bucket: %v over %d, want 4s over 8", got, n)
	}
}

// TestPickStacks checks --stacks: embedded-secure is accepted, alone or
// beside embedded, auto stays embedded without the real services, and
// unknown stacks (or real without its environment) are refused.
func TestPickStacks(t *testing.T) {
	for _, k := range []string{"FFC_KAFKA_BROKERS", "FFC_NATS_URL", "FFC_S3_ENDPOINT"} {
		t.Setenv(k, "")
	}
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"auto", "embedded", true},
		{"embedded", "embedded", true},
		{"embedded-secure", "embedded-secure", true},
		{"embedded, embedded-secure", "embedded,embedded-secure", true},
		{"secure", "", false},
		{"embedded,real", "", false},
		{"both", "", false},
	} {
		got, err := pickStacks(c.in)
		if (err == nil) != c.ok || strings.Join(got, ",") != c.want {
			t.Errorf("pickStacks(%q) = %q, %v; want %q (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

// TestRatios checks the pairing of the secure stack's results with the
// embedded stack's: by phase and lead, each phase's own measures, those
// zero on either side left out, the real stack ignored.
func TestRatios(t *testing.T) {
	all := []result{
		{stack: "embedded", phase: "s3get", getsPerSec: 4000},
		{stack: "embedded", phase: "consume", samplesPerSec: 1000, fillPerSec: 2000},
		{stack: "embedded", phase: "enabled", samplesPerSec: 800},
		{stack: "embedded", phase: "fresh", lead: 256, got: 3, p50: 100 * time.Millisecond, p99: 200 * time.Millisecond},
		{stack: "embedded", phase: "fresh", lead: 4096, got: 3, p50: time.Second, p99: time.Second},
		{stack: "real", phase: "enabled", samplesPerSec: 100},
		{stack: secureStack, phase: "s3get", getsPerSec: 2000},
		{stack: secureStack, phase: "consume", samplesPerSec: 500},
		{stack: secureStack, phase: "enabled", samplesPerSec: 400},
		{stack: secureStack, phase: "disabled", samplesPerSec: 400},
		{stack: secureStack, phase: "fresh", lead: 4096, got: 3, p50: 2 * time.Second, p99: 3 * time.Second},
	}
	want := []ratio{
		{phase: "S3 GET", measure: "GETs/s", plain: 4000, secure: 2000},
		{phase: "consume", measure: "samples/s", plain: 1000, secure: 500},
		{phase: "enabled", measure: "samples/s", plain: 800, secure: 400},
		{phase: "fresh, lead 4096", measure: "announcement → center p50", plain: 1, secure: 2, latency: true},
		{phase: "fresh, lead 4096", measure: "announcement → center p99", plain: 1, secure: 3, latency: true},
	}
	got := ratios(all)
	if len(got) != len(want) {
		t.Fatalf("ratios = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ratio %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if r := got[0].of(); r != 0.5 {
		t.Errorf("S3 GET ratio %v, want 0.5", r)
	}
	if ratios(all[:6]) != nil {
		t.Error("ratios without the secure stack")
	}
}
