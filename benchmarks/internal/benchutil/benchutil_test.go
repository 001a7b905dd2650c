package benchutil

import (
	"slices"
	"testing"
)

func TestParseCounts(t *testing.T) {
	got, err := ParseCounts("10k, 100k,1M,10M,384")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{10_000, 100_000, 1_000_000, 10_000_000, 384}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "x", "0", "-5k", "1e12"} {
		if _, err := ParseCounts(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, n := range []int{384, 10_000, 1_500_000} {
		back, err := ParseCounts(Count(n))
		if err != nil || back[0] != n {
			t.Errorf("Count(%d) = %q reads back as %v, %v", n, Count(n), back, err)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := slices.Clone(c.v)
		if got := Median(c.v); got != c.want {
			t.Errorf("Median(%v) = %g, want %g", c.v, got, c.want)
		}
		if !slices.Equal(c.v, in) {
			t.Errorf("Median changed its input to %v", c.v)
		}
	}
}
