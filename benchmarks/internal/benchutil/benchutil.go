// Package benchutil holds what the benchmark programs share: parsing and
// printing counts like "10k" and "1M", the median of step times, random
// unit-norm rows on a backend, the child side of a one-process-per-
// configuration run, and the header of a report.
package benchutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/kernels"
)

// ParseCounts reads a comma-separated list of counts with optional k, M or
// G suffixes ("10k,100k,1M,10M").
func ParseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		mul := 1.0
		switch {
		case strings.HasSuffix(f, "k") || strings.HasSuffix(f, "K"):
			mul, f = 1e3, f[:len(f)-1]
		case strings.HasSuffix(f, "M"):
			mul, f = 1e6, f[:len(f)-1]
		case strings.HasSuffix(f, "G"):
			mul, f = 1e9, f[:len(f)-1]
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v*mul >= 1) || v*mul > math.MaxInt32 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, int(math.Round(v*mul)))
	}
	if len(out) == 0 {
		return nil, errors.New("no counts")
	}
	return out, nil
}

// Count prints n as ParseCounts reads it: 10k, 1.5M, 384.
func Count(n int) string {
	switch {
	case n >= 1e6 && n%1e5 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + "M"
	case n >= 1e3 && n%100 == 0:
		return strconv.FormatFloat(float64(n)/1e3, 'f', -1, 64) + "k"
	}
	return strconv.Itoa(n)
}

// Median is the median of v (the mean of the middle two for an even
// count), leaving v as it is; v must not be empty.
func Median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// UnitBuffer allocates rows×d random rows of unit L2 norm on be.
func UnitBuffer(be kernels.Backend, rng *rand.Rand, rows, d int) (kernels.Buffer, error) {
	host := make([]float32, rows*d)
	for r := 0; r < rows; r++ {
		x := host[r*d : (r+1)*d]
		var ss float64
		for i := range x {
			v := rng.NormFloat64()
			x[i], ss = float32(v), ss+v*v
		}
		for i := range x {
			x[i] = float32(float64(x[i]) / math.Sqrt(ss))
		}
	}
	buf, err := be.Alloc(rows * d)
	if err != nil {
		return nil, err
	}
	if err := be.Upload(buf, host); err != nil {
		return nil, errors.Join(err, be.Free(buf))
	}
	return buf, nil
}

// CPUModel is the host's CPU model name ("unknown CPU" when
// /proc/cpuinfo does not say).
func CPUModel() string {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}

// MemTotalGiB is the host's memory in GiB (0 when /proc/meminfo does not
// say).
func MemTotalGiB() float64 {
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / (1 << 20)
			}
		}
	}
	return 0
}

// LoadAvg is the 1, 5 and 15 minute load averages ("?" when unknown): the
// machines are shared, and other work shows as load above the cores.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// RunChild is the child side of a benchmark that runs each configuration
// in its own process: it decodes the configuration from spec (JSON),
// measures it and prints the result as one JSON line prefixed with tag,
// which the parent looks for in the child's output.
func RunChild[C, R any](spec, tag string, measure func(C) R) error {
	var c C
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return fmt.Errorf("child configuration: %w", err)
	}
	js, err := json.Marshal(measure(c))
	if err != nil {
		return fmt.Errorf("child result: %w", err)
	}
	fmt.Println(tag + string(js))
	return nil
}

// Command is the command line that ran benchmark program name ("go run
// ./benchmarks/<name>" and this process's arguments), for its report.
func Command(name string) string {
	cmd := "go run ./benchmarks/" + name
	if len(os.Args) > 1 {
		cmd += " " + strings.Join(os.Args[1:], " ")
	}
	return cmd
}

// WriteHeader writes a report's title, command, machine and date lines
// (Markdown) to sb; took is the whole run's duration.
func WriteHeader(sb *strings.Builder, title, cmd, machine string, took time.Duration) {
	fmt.Fprintf(sb, "# %s\n\nCommand: `%s`\n\nMachine: %s\n\n", title, cmd, machine)
	fmt.Fprintf(sb, "Date: %s; the whole run took %.0f s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Seconds())
}
