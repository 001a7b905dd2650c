package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// Compute devices (--device).
const (
	deviceCPU  = "cpu"
	deviceCUDA = "cuda"
)

// deviceFlags select the compute backend of the commands that compute
// (train, eval, demo).
type deviceFlags struct {
	device    string
	gpu       int
	tf32      bool
	gpuMemory byteSize
}

func (d *deviceFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&d.device, "device", deviceCPU, "compute device: cpu, or cuda (an ffc built with 'make cuda', on a machine with an NVIDIA GPU)")
	fs.IntVar(&d.gpu, "gpu", 0, "--device cuda: GPU ordinal")
	fs.BoolVar(&d.tf32, "tf32", false, "--device cuda: TF32 tensor-op math in cuBLAS matrix products (faster, 10-bit mantissa inputs)")
	fs.Var(&d.gpuMemory, "gpu-memory", "--device cuda: device memory reserved at start for every buffer, in bytes or with a unit (8GiB, 500MB; KiB/MiB/GiB/TiB are powers of 1024, K/M/G/T of 1000); 0: 80% of the free memory")
}

// addThreadsFlag adds --threads, the CPU backend's thread count that
// newBackend takes (0: all cores), to the commands that compute.
func addThreadsFlag(fs *pflag.FlagSet, threads *int) {
	fs.IntVar(threads, "threads", 0, "CPU threads for compute (0: all cores)")
}

// errNoCUDA is what --device cuda gives in an ffc built without the cuda
// build tag.
var errNoCUDA = errors.New("--device cuda: this ffc was built without CUDA; build it with `make cuda`")

// check validates the flags before a command starts any work.
func (d *deviceFlags) check() error {
	d.device = strings.ToLower(strings.TrimSpace(d.device))
	switch d.device {
	case deviceCPU:
		return nil
	case deviceCUDA:
		if !cudaBuilt {
			return errNoCUDA
		}
		if d.gpu < 0 {
			return fmt.Errorf("--gpu %d: want a GPU ordinal ≥ 0", d.gpu)
		}
		return nil
	}
	return fmt.Errorf("--device %q: want cpu or cuda", d.device)
}

// newBackend opens the compute backend the flags select; threads is the
// CPU backend's thread count (0: all cores).
func newBackend(log *slog.Logger, threads int, d deviceFlags) (kernels.Backend, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.device == deviceCUDA {
		be, err := newCUDABackend(log, d)
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		return be, nil
	}
	return cpu.New(cpu.Options{Threads: threads})
}

// byteSize is a flag value of bytes: a plain number or one with a unit.
type byteSize int64

var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "tib": 1 << 40,
}

// Set parses "8GiB", "8 GiB", "500MB", "1.5e9" or "0".
func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] >= 'a' && t[i-1] <= 'z' || t[i-1] >= 'A' && t[i-1] <= 'Z') {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(t[i:])
	mul, ok := byteUnits[unit]
	if !ok {
		return fmt.Errorf("%q: unknown unit %q (want B, KiB, MiB, GiB, TiB or K, M, G, T)", s, t[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return fmt.Errorf("%q: want bytes, e.g. 8GiB or 8589934592", s)
	}
	v *= mul
	if v < 0 || v > math.MaxInt64/2 || math.IsNaN(v) {
		return fmt.Errorf("%q: out of range", s)
	}
	*b = byteSize(math.Round(v))
	return nil
}

// String prints the value in the largest binary unit that divides it.
func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(v, 10)
}

// Type names the value in --help.
func (*byteSize) Type() string { return "bytes" }
