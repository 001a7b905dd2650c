package nn

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
)

// timedBackend adds up the CPU time of the process (all threads) spent in
// the heavy kernels, by kind; less sensitive to other load on a shared
// machine than wall time.
type timedBackend struct {
	kernels.Backend
	cpu map[string]time.Duration
}

func (t *timedBackend) time(name string) func() {
	c0 := processCPU()
	return func() { t.cpu[name] += processCPU() - c0 }
}

func (t *timedBackend) Gemm(ta, tb bool, m, n, k int, alpha float32, a, b kernels.Buffer, beta float32, c kernels.Buffer) error {
	defer t.time(fmt.Sprintf("gemm-%c%c-%dx%dx%d", "NT"[b2i(ta)], "NT"[b2i(tb)], m, n, k))()
	return t.Backend.Gemm(ta, tb, m, n, k, alpha, a, b, beta, c)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (t *timedBackend) Im2Col(g kernels.ConvGeom, x, col kernels.Buffer) error {
	defer t.time("im2col")()
	return t.Backend.Im2Col(g, x, col)
}

func (t *timedBackend) Col2Im(g kernels.ConvGeom, col, x kernels.Buffer) error {
	defer t.time("col2im")()
	return t.Backend.Col2Im(g, col, x)
}

func (t *timedBackend) BatchNormTrain(s kernels.ChanShape, eps, momentum float32, x, gamma, beta, y, mean, invStd, runMean, runVar kernels.Buffer) error {
	defer t.time("bn-train")()
	return t.Backend.BatchNormTrain(s, eps, momentum, x, gamma, beta, y, mean, invStd, runMean, runVar)
}

func (t *timedBackend) BatchNormBackward(s kernels.ChanShape, x, gamma, mean, invStd, dy, dx, dgamma, dbeta kernels.Buffer) error {
	defer t.time("bn-backward")()
	return t.Backend.BatchNormBackward(s, x, gamma, mean, invStd, dy, dx, dgamma, dbeta)
}

func (t *timedBackend) PReLU(s kernels.ChanShape, x, slope, y kernels.Buffer) error {
	defer t.time("prelu")()
	return t.Backend.PReLU(s, x, slope, y)
}

func (t *timedBackend) PReLUBackward(s kernels.ChanShape, x, slope, dy, dx, dslope kernels.Buffer) error {
	defer t.time("prelu-backward")()
	return t.Backend.PReLUBackward(s, x, slope, dy, dx, dslope)
}

func (t *timedBackend) Add(n int, a, b, c kernels.Buffer) error {
	defer t.time("add")()
	return t.Backend.Add(n, a, b, c)
}

// timedConvolver is a timedBackend that also times the backend's
// Convolver, so that the network takes the path it takes by default.
type timedConvolver struct {
	*timedBackend
	conv kernels.Convolver
}

func (t timedConvolver) ConvForward(g kernels.ConvGeom, outC int, w, x, y kernels.Buffer) error {
	defer t.time(fmt.Sprintf("conv-fwd-%dx%dx%d-k%ds%d-out%d", g.C, g.H, g.W, g.K, g.Stride, outC))()
	return t.conv.ConvForward(g, outC, w, x, y)
}

func (t timedConvolver) ConvBackward(g kernels.ConvGeom, outC int, w, x, dy, dw, dx kernels.Buffer) error {
	defer t.time(fmt.Sprintf("conv-bwd-%dx%dx%d-k%ds%d-out%d", g.C, g.H, g.W, g.K, g.Stride, outC))()
	return t.conv.ConvBackward(g, outC, w, x, dy, dw, dx)
}

// BenchmarkIRResNetBreakdown reports where a forward+backward step of the
// yardstick at batch 64 spends its time, as CPU ms per step by kernel
// (convolutions by geometry, or on the im2col path GEMMs by transposes and
// m×n×k, im2col and col2im), and the step's total CPU and wall ms. The
// convolver case is the path the network takes on a backend with
// kernels.Convolver (the CPU one: the direct 3×3 kernels where the CPU has
// AVX2 and FMA, lowered blocks otherwise); lowered turns the AVX2 kernels
// off (cpu.Options.NoSIMD); im2col hides the Convolver.
func BenchmarkIRResNetBreakdown(b *testing.B) {
	for _, path := range []string{"convolver", "lowered", "im2col"} {
		b.Run("path="+path, func(b *testing.B) {
			cb, err := cpu.New(cpu.Options{NoSIMD: path == "lowered"})
			if err != nil {
				b.Fatal(err)
			}
			tb := &timedBackend{Backend: cb, cpu: map[string]time.Duration{}}
			var be kernels.Backend = tb
			if path != "im2col" {
				be = timedConvolver{timedBackend: tb, conv: cb}
			}
			breakdown(b, tb, be)
		})
	}
}

func breakdown(b *testing.B, tb *timedBackend, be kernels.Backend) {
	const batch = 64
	net, err := NewIRResNet(be, IRResNetOptions{MaxBatch: batch, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	x := upload(b, be, randn(r, batch*net.InLen(), 1))
	dy := upload(b, be, randn(r, batch*net.Dim(), 0.05))
	step := func() {
		if _, err := net.Forward(x, batch, true); err != nil {
			b.Fatal(err)
		}
		if err := net.Backward(dy); err != nil {
			b.Fatal(err)
		}
	}
	step()
	clear(tb.cpu)
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		step()
	}
	var names []string
	for k := range tb.cpu {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return tb.cpu[names[i]] > tb.cpu[names[j]] })
	for _, k := range names {
		b.ReportMetric(float64(tb.cpu[k].Microseconds())/1e3/float64(b.N), k+"-cpu-ms")
	}
	b.ReportMetric((processCPU()-cpu0).Seconds()*1e3/float64(b.N), "step-cpu-ms")
	b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "step-wall-ms")
	b.ReportMetric(0, "ns/op")
}
