package main

import (
	"strings"
	"testing"
)

// Every head runs end to end at a tiny size, and an impossible one is
// refused with the message the table shows.
func TestMeasureSmoke(t *testing.T) {
	base := config{N: 1000, Q: 64, Dim: 16, Batch: 8, Warmup: 1, Steps: 2, Rate: 0.1, Backend: "cpu", Headroom: 0}
	for _, head := range []string{"fc", "pfc", "ffc"} {
		c := base
		c.Head = head
		r := measure(c)
		if r.Refused != "" || r.Failed != "" {
			t.Fatalf("%s: %+v", head, r)
		}
		if len(r.Steps) != 2 || !(r.StepMS > 0) || r.PeakRSS <= 0 || r.Estimate <= 0 {
			t.Fatalf("%s: %+v", head, r)
		}
	}
	c := base
	c.Head, c.N, c.Dim = "fc", 1<<30, 1<<12
	r := measure(c)
	if !strings.HasPrefix(r.Refused, "needs ") || !strings.Contains(r.Refused, "GiB available") {
		t.Fatalf("huge FC: %+v", r)
	}
	c.Backend = "nope"
	c.N = 10
	if r := measure(c); r.Failed == "" {
		t.Fatal("unknown backend accepted")
	}
}

func TestRenderRatios(t *testing.T) {
	ffc := result{StepMS: 10, PeakRSS: 100 << 20, Estimate: 1}
	rows := []row{
		{n: 1_000_000, q: 10_000, head: "FFC", r: ffc, ffc: &ffc},
		{n: 1_000_000, q: 10_000, head: "FC", r: result{StepMS: 400, PeakRSS: 3 << 30, Estimate: 1}, ffc: &ffc},
		{n: 10_000_000, q: 100_000, head: "FC", r: result{Refused: "needs 85.9 GiB, 18.3 GiB available"}, ffc: &ffc},
	}
	out := render(rows, "machine", "cmd", 0.1, 5, 1, 2, 200, 4, 0)
	for _, want := range []string{"| 1M | 10k | FFC | 10.0 |", "| 1M | (10k) | FC | 400.0 | 3.00 GiB | 0 MiB | 40× | 31× |", "refused: needs 85.9 GiB", "FC/FFC time 40.0× (met), memory 30.7× (met)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
