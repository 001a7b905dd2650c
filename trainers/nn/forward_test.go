package nn

import (
	"image"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// closeTo reports the first index where got and want differ by more than
// tol·(1+|want|), or −1.
func closeTo(got []float32, want []float64, tol float64) int {
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > tol*(1+math.Abs(want[i])) || math.IsNaN(float64(got[i])) {
			return i
		}
	}
	return -1
}

// refConv is a direct float64 convolution of NCHW x with W
// [OutC][InC][K][K], giving NCHW.
func refConv(x []float32, w []float32, n int, s ConvShape) ([]float64, int, int) {
	oh := (s.H+2*s.Pad-s.K)/s.Stride + 1
	ow := (s.W+2*s.Pad-s.K)/s.Stride + 1
	y := make([]float64, n*s.OutC*oh*ow)
	for b := range n {
		for o := range s.OutC {
			for i := range oh {
				for j := range ow {
					var acc float64
					for c := range s.InC {
						for kh := range s.K {
							for kw := range s.K {
								hi, wi := i*s.Stride-s.Pad+kh, j*s.Stride-s.Pad+kw
								if hi < 0 || hi >= s.H || wi < 0 || wi >= s.W {
									continue
								}
								acc += float64(x[((b*s.InC+c)*s.H+hi)*s.W+wi]) * float64(w[((o*s.InC+c)*s.K+kh)*s.K+kw])
							}
						}
					}
					y[((b*s.OutC+o)*oh+i)*ow+j] = acc
				}
			}
		}
	}
	return y, oh, ow
}

// nchwToCNHW reorders [n][c][hw] as [c][n][hw].
func nchwToCNHW[T float32 | float64](v []T, n, c, hw int) []T {
	out := make([]T, len(v))
	for b := range n {
		for ch := range c {
			copy(out[(ch*n+b)*hw:(ch*n+b+1)*hw], v[(b*c+ch)*hw:(b*c+ch+1)*hw])
		}
	}
	return out
}

func TestConvForwardMatchesDirect(t *testing.T) {
	be := newBackend(t)
	for i, s := range []ConvShape{
		{InC: 1, OutC: 4, H: 6, W: 6, K: 3, Stride: 1, Pad: 1, InLayout: kernels.NCHW},
		{InC: 3, OutC: 2, H: 7, W: 5, K: 3, Stride: 2, Pad: 1, InLayout: kernels.CNHW},
		{InC: 2, OutC: 3, H: 4, W: 4, K: 3, Stride: 1, Pad: 1, InLayout: kernels.CNHW},
	} {
		r := rand.New(rand.NewPCG(uint64(i), 3))
		n := 3
		l, err := NewConv2d(be, Config{MaxBatch: 4, Seed: 1}, "conv", s)
		if err != nil {
			t.Fatal(err)
		}
		xn := randn(r, n*s.InC*s.H*s.W, 1) // NCHW
		x := xn
		if s.InLayout == kernels.CNHW {
			x = nchwToCNHW(xn, n, s.InC, s.H*s.W)
		}
		y, err := l.Forward(upload(t, be, x), n, false)
		if err != nil {
			t.Fatal(err)
		}
		want, oh, ow := refConv(xn, download(t, be, l.W.W, l.W.N), n, s)
		if oh != l.OutH || ow != l.OutW {
			t.Fatalf("%+v: output %d×%d, want %d×%d", s, l.OutH, l.OutW, oh, ow)
		}
		want = nchwToCNHW(want, n, s.OutC, oh*ow)
		if k := closeTo(download(t, be, y, len(want)), want, 1e-5); k >= 0 {
			t.Errorf("%+v: output differs at %d", s, k)
		}
	}
}

func TestLayerForwardReferences(t *testing.T) {
	be := newBackend(t)
	c := Config{MaxBatch: 5, Seed: 2}
	r := rand.New(rand.NewPCG(4, 4))
	t.Run("linear", func(t *testing.T) {
		l, err := NewLinear(be, c, "fc", 4, 3)
		if err != nil {
			t.Fatal(err)
		}
		bias := randn(r, 3, 1)
		if err := be.Upload(l.B.W, bias); err != nil {
			t.Fatal(err)
		}
		x := randn(r, 2*4, 1)
		y, err := l.Forward(upload(t, be, x), 2, false)
		if err != nil {
			t.Fatal(err)
		}
		w := download(t, be, l.W.W, 12)
		want := make([]float64, 6)
		for b := range 2 {
			for o := range 3 {
				want[b*3+o] = float64(bias[o]) + dot64(x[b*4:b*4+4], w[o*4:o*4+4])
			}
		}
		if k := closeTo(download(t, be, y, 6), want, 1e-5); k >= 0 {
			t.Errorf("differs at %d", k)
		}
	})
	t.Run("batchnorm-cnhw-train", func(t *testing.T) {
		const n, ch, hw = 3, 2, 4
		l, err := NewBatchNorm(be, c, "bn", ch, hw, kernels.CNHW)
		if err != nil {
			t.Fatal(err)
		}
		gamma, beta := []float32{1.5, -0.5}, []float32{0.25, 2}
		must(t, be.Upload(l.Gamma.W, gamma))
		must(t, be.Upload(l.Beta.W, beta))
		x := shifted(r, n*ch*hw) // CNHW: channel-major
		y, err := l.Forward(upload(t, be, x), n, true)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, len(x))
		m := n * hw
		for k := range ch {
			xs := x[k*m : (k+1)*m]
			var mean, v float64
			for _, e := range xs {
				mean += float64(e)
			}
			mean /= float64(m)
			for _, e := range xs {
				v += (float64(e) - mean) * (float64(e) - mean)
			}
			v /= float64(m)
			for i, e := range xs {
				want[k*m+i] = float64(gamma[k])*(float64(e)-mean)/math.Sqrt(v+1e-5) + float64(beta[k])
			}
		}
		if k := closeTo(download(t, be, y, len(x)), want, 1e-4); k >= 0 {
			t.Errorf("differs at %d", k)
		}
	})
	t.Run("prelu-nchw", func(t *testing.T) {
		const n, ch, hw = 2, 3, 2
		l, err := NewPReLU(be, c, "prelu", ch, hw, kernels.NCHW)
		if err != nil {
			t.Fatal(err)
		}
		slope := []float32{0.25, -1, 2}
		must(t, be.Upload(l.Slope.W, slope))
		x := randn(r, n*ch*hw, 1)
		y, err := l.Forward(upload(t, be, x), n, false)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, len(x))
		for i, e := range x {
			want[i] = float64(e)
			if e <= 0 {
				want[i] *= float64(slope[(i/hw)%ch])
			}
		}
		if k := closeTo(download(t, be, y, len(x)), want, 1e-6); k >= 0 {
			t.Errorf("differs at %d", k)
		}
		if got := download(t, be, l.Slope.W, 3); got[0] != 0.25 || got[1] != -1 {
			t.Errorf("slope %v", got)
		}
	})
	t.Run("flatten", func(t *testing.T) {
		const n, ch, hw = 3, 2, 5
		l, err := NewFlatten(be, c, "flatten", ch, hw)
		if err != nil {
			t.Fatal(err)
		}
		xn := randn(r, n*ch*hw, 1)
		y, err := l.Forward(upload(t, be, nchwToCNHW(xn, n, ch, hw)), n, false)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, len(xn))
		for i, e := range xn {
			want[i] = float64(e)
		}
		if k := closeTo(download(t, be, y, len(xn)), want, 0); k >= 0 {
			t.Errorf("differs at %d", k)
		}
	})
	t.Run("l2norm", func(t *testing.T) {
		l, err := NewL2Norm(be, c, "l2", 4)
		if err != nil {
			t.Fatal(err)
		}
		x := randn(r, 3*4, 1)
		y, err := l.Forward(upload(t, be, x), 3, false)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, len(x))
		for b := range 3 {
			nrm := math.Sqrt(dot64(x[b*4:b*4+4], x[b*4:b*4+4]))
			for i := range 4 {
				want[b*4+i] = float64(x[b*4+i]) / nrm
			}
		}
		if k := closeTo(download(t, be, y, len(x)), want, 1e-6); k >= 0 {
			t.Errorf("differs at %d", k)
		}
	})
	t.Run("irblock-identity", func(t *testing.T) {
		// With bn3's gamma and beta 0 the path outputs 0: y = x.
		l, err := NewIRBlock(be, c, "block", 2, 3, 3)
		if err != nil {
			t.Fatal(err)
		}
		bn3 := l.Path.Layers[5].(*BatchNorm)
		must(t, be.Fill(2, 0, bn3.Gamma.W))
		x := randn(r, 4*2*9, 1)
		y, err := l.Forward(upload(t, be, x), 4, true)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, len(x))
		for i, e := range x {
			want[i] = float64(e)
		}
		if k := closeTo(download(t, be, y, len(x)), want, 1e-6); k >= 0 {
			t.Errorf("differs at %d", k)
		}
	})
}

// TestYardstickShape builds the default IR-ResNet and checks its sizes,
// its FLOP count and that it outputs unit rows.
func TestYardstickShape(t *testing.T) {
	be := newBackend(t)
	net, err := NewIRResNet(be, IRResNetOptions{MaxBatch: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if net.InLen() != 1024 || net.Dim() != 512 || net.MaxBatch() != 2 {
		t.Fatalf("InLen %d Dim %d MaxBatch %d", net.InLen(), net.Dim(), net.MaxBatch())
	}
	conv := func(cin, cout, out int) int64 { return 2 * int64(cin*9*cout*out*out) }
	want := conv(1, 32, 32) + 2*conv(32, 32, 32) + conv(32, 64, 16) + 2*conv(64, 64, 16) +
		conv(64, 128, 8) + 2*conv(128, 128, 8) + 2*128*64*512
	if got := net.FLOPs(); got != want {
		t.Errorf("FLOPs %d, want %d", got, want)
	}
	var nw int
	for _, p := range net.Params() {
		nw += p.N
	}
	wantW := 9*32 + 2*9*32*32 + 9*32*64 + 2*9*64*64 + 9*64*128 + 2*9*128*128 + 8192*512 + 512 + // conv, fc
		2*(32+3*32+64+3*64+128+3*128+128+512) + // BN gamma, beta
		32 + 32 + 64 + 64 + 128 + 128 // PReLU
	if nw != wantW {
		t.Errorf("%d weights, want %d", nw, wantW)
	}
	r := rand.New(rand.NewPCG(1, 1))
	img := make([]byte, 2*1024)
	for i := range img {
		img[i] = byte(r.IntN(256))
	}
	x := make([]float32, len(img))
	if err := ScaleImages(x, img); err != nil {
		t.Fatal(err)
	}
	for _, train := range []bool{true, false} {
		y, err := net.Forward(upload(t, be, x), 2, train)
		if err != nil {
			t.Fatal(err)
		}
		if y.Len() != 2*512 {
			t.Errorf("output of %d floats", y.Len())
		}
		out := download(t, be, y, 1024)
		for b := range 2 {
			if nrm := dot64(out[b*512:(b+1)*512], out[b*512:(b+1)*512]); math.Abs(nrm-1) > 1e-4 {
				t.Errorf("train %v: row %d has squared norm %v", train, b, nrm)
			}
		}
	}
}

func TestScaleImages(t *testing.T) {
	dst := make([]float32, 3)
	if err := ScaleImages(dst, []byte{0, 255, 128}); err != nil {
		t.Fatal(err)
	}
	if dst[0] != -1 || dst[1] != 1 || math.Abs(float64(dst[2])-(128/255.0-0.5)/0.5) > 1e-6 {
		t.Errorf("%v", dst)
	}
	if err := ScaleImages(dst[:1], []byte{1, 2}); err == nil {
		t.Error("short dst accepted")
	}
}

func TestAppendScaledMatchesScaleImages(t *testing.T) {
	// A 3×2 image inside a wider buffer (stride 5): only its pixels count.
	g := &image.Gray{Pix: []byte{0, 255, 128, 9, 9, 1, 2, 3, 9, 9}, Stride: 5, Rect: image.Rect(0, 0, 3, 2)}
	got := AppendScaled([]float32{42}, Pixels(g))
	want := make([]float32, 6)
	if err := ScaleImages(want, []byte{0, 255, 128, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[0] != 42 || !slices.Equal(got[1:], want) {
		t.Errorf("AppendScaled %v, want 42 then %v", got, want)
	}
	if g.Stride = 3; &Pixels(g)[0] != &g.Pix[0] {
		t.Error("Pixels copied an image without padding")
	}
}
