package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
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
	raw := rawFlags{hidden: "512", stacks: "embedded", phases: "s3get, fresh", level: "warn"}
	o, err := options{batch: 64, dim: 128, ckptEvery: 50, freshCkptEvery: 4}.finish(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.pool != 3*64 || o.freshLead != 2*64*4 || len(o.hidden) != 1 || o.logLevel != slog.LevelWarn ||
		strings.Join(o.phases, ",") != "s3get,fresh" || strings.Join(o.stacks, ",") != "embedded" {
		t.Errorf("options = %+v", o)
	}
	if s := o.settings(4); s.Backbone != "mlp" || s.Batch != 64 || s.Pool != 192 || s.CheckpointEvery != 4 {
		t.Errorf("settings = %+v", s)
	}
	for _, bad := range []struct {
		o   options
		raw rawFlags
	}{
		{options{batch: 63, dim: 128, ckptEvery: 50, freshCkptEvery: 4}, raw},           // odd batch
		{options{batch: 64, pool: 64, dim: 128, ckptEvery: 50, freshCkptEvery: 4}, raw}, // pool < 1.5·batch
		{options{batch: 64, dim: 128, ckptEvery: 50, freshCkptEvery: 4}, rawFlags{hidden: "512", stacks: "embedded", phases: "nope", level: "warn"}},
		{options{batch: 64, dim: 128, ckptEvery: 50, freshCkptEvery: 4}, rawFlags{hidden: "x", stacks: "embedded", phases: "fresh", level: "warn"}},
	} {
		if _, err := bad.o.finish(bad.raw); err == nil {
			t.Errorf("finish(%+v, %+v): no error", bad.o, bad.raw)
		}
	}
}

// TestSmoke runs every phase at a tiny size on the embedded stack.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline for about 20 s")
	}
	o := options{duration: 2 * time.Second, warmup: time.Second, ids: 30, newIDs: 3, batch: 8, dim: 16, pool: 24,
		lead: 512, freshLead: 64, ckptEvery: 8, freshCkptEvery: 4, partitions: 2, concurrency: 4,
		pollInterval: 100 * time.Millisecond, freshTimeout: 20 * time.Second, threads: 1, consumeMsgs: 2000,
		phases: []string{"s3get", "disabled", "consume", "enabled", "fresh"}, logLevel: slog.LevelError}
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
	if f := res[4]; f.timeouts != 0 || f.p50 <= 0 || f.p99 < f.p50 {
		t.Errorf("fresh: %+v", f)
	}
	for _, want := range []string{"GETs/s", "| t (s) | produced pairs/s", "trainers.Trainer with ConsumeOnly", "Consume only", "engine step", "first image → center"} {
		if !strings.Contains(rep.buf.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
