package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// TestRunOnCPU drives the measurement and the table with the CPU backend on
// small shapes: what run.sh does on the GPU, minus the GPU.
func TestRunOnCPU(t *testing.T) {
	c := config{Dim: 32, Batch: 8, In: 64, Hidden: []int{32}, Backbone: "mlp", Qs: []int{6, 64, 1000}, NFactor: 10,
		Warmup: 1, Steps: 3, StepBudget: time.Second, GemmTime: 10 * time.Millisecond, Seed: 1}
	open := func(bool) (kernels.Backend, error) { return cpu.New(cpu.Options{Threads: 2}) }
	rows := run(context.Background(), c, []string{"fp32", "tf32"}, open, io.Discard)
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6", len(rows))
	}
	for _, r := range rows {
		if r.Q == 6 {
			if !strings.Contains(r.Failed, "below") {
				t.Errorf("Q=6: failed %q, want refused (below 1.5·B)", r.Failed)
			}
			continue
		}
		if r.Failed != "" || r.GemmErr != "" {
			t.Fatalf("%s Q=%d: %s %s", r.Precision, r.Q, r.Failed, r.GemmErr)
		}
		if !(r.StepMS > 0 && r.SamplesPerS > 0 && r.HeadGFLOPS > 0 && r.GemmNT > 0 && r.GemmNN > 0 && r.Steps == 3) {
			t.Errorf("%s Q=%d: %+v", r.Precision, r.Q, r)
		}
		if r.HeadSets < 1 || r.HeadSets > 2 {
			t.Errorf("head sets %.2f, want 1..2", r.HeadSets)
		}
	}
	var sb strings.Builder
	render(&sb, c, rows, "test", "go test", time.Second)
	for _, want := range []string{"| fp32 | 64 |", "| tf32 | 1k |", "failed: Q = 6", "samples/s"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	if testing.Verbose() {
		t.Log("\n" + sb.String())
	}
}
