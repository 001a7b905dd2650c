package kerneltest

import (
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

// foreign is a buffer no backend owns.
type foreign struct{}

func (foreign) Len() int { return 1 << 20 }
func (foreign) Float32() {}
func (foreign) Int32()   {}

// testBadInput: mismatched shapes, bad parameters, foreign or nil buffers
// and out-of-range indices are errors wrapping the documented sentinel.
func testBadInput(t *testing.T, h *h) {
	be := h.be
	z := h.zeros
	m12, m5, m20 := z(12), z(5), z(20)
	idx := h.upIdx([]int32{0, 1, 5})
	tg := h.upIdx([]int32{0, 2, 4})
	ok3 := h.upIdx([]int32{0, 1, 2})
	geom := kernels.ConvGeom{N: 1, C: 1, H: 4, W: 4, K: 3, Stride: 1, Pad: 1}
	ch := kernels.ChanShape{Outer: 2, C: 3, Inner: 2}
	cf := kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}
	sgd := kernels.SGD{LR: 0.1, Momentum: 0.9}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"gemm a too short", be.Gemm(false, false, 3, 4, 5, 1, m5, m20, 0, m12), kernels.ErrShape},
		{"gemm b too short", be.Gemm(false, true, 3, 4, 5, 1, z(15), m12, 0, m12), kernels.ErrShape},
		{"gemm c too short", be.Gemm(true, false, 4, 5, 3, 1, m12, z(15), 0, m12), kernels.ErrShape},
		{"gemm negative m", be.Gemm(false, false, -1, 4, 5, 1, m20, m20, 0, m12), kernels.ErrShape},
		{"gemm nil a", be.Gemm(false, false, 3, 4, 5, 1, nil, m20, 0, m12), kernels.ErrBuffer},
		{"gemm foreign b", be.Gemm(false, false, 3, 4, 5, 1, z(15), foreign{}, 0, m12), kernels.ErrBuffer},
		{"gemv x too short", be.Gemv(false, 3, 4, 1, m12, z(3), 0, z(3)), kernels.ErrShape},
		{"gemv y too short (transposed)", be.Gemv(true, 3, 4, 1, m12, z(3), 0, z(3)), kernels.ErrShape},
		{"add mismatched", be.Add(12, m12, m5, m12), kernels.ErrShape},
		{"add negative n", be.Add(-1, m12, m12, m12), kernels.ErrShape},
		{"mul dst short", be.Mul(12, m12, m12, m5), kernels.ErrShape},
		{"axpby y short", be.Axpby(12, 1, m12, 1, m5), kernels.ErrShape},
		{"copy foreign", be.Copy(1, foreign{}, m5), kernels.ErrBuffer},
		{"fill too long", be.Fill(13, 0, m12), kernels.ErrShape},
		{"relu backward dx short", be.ReLUBackward(12, m12, m12, m5), kernels.ErrShape},
		{"im2col col too short", be.Im2Col(geom, z(16), z(16*9-1)), kernels.ErrShape},
		{"im2col x too short", be.Im2Col(geom, z(15), z(16*9)), kernels.ErrShape},
		{"im2col stride 0", be.Im2Col(kernels.ConvGeom{N: 1, C: 1, H: 4, W: 4, K: 3}, z(16), z(400)), kernels.ErrShape},
		{"im2col kernel larger than input", be.Im2Col(kernels.ConvGeom{N: 1, C: 1, H: 2, W: 2, K: 5, Stride: 1}, z(4), z(400)), kernels.ErrShape},
		{"col2im dx too short", be.Col2Im(geom, z(16*9), z(15)), kernels.ErrShape},
		{"swap axes dst short", be.SwapAxes(3, 4, 1, m12, m5), kernels.ErrShape},
		{"add channel bias short", be.AddChannel(ch, z(2), m12), kernels.ErrShape},
		{"channel sum x short", be.ChannelSum(ch, m5, z(3)), kernels.ErrShape},
		{"batch norm gamma short", be.BatchNormTrain(ch, 1e-5, 0.1, m12, z(2), z(3), m12, z(3), z(3), nil, nil), kernels.ErrShape},
		{"batch norm y short", be.BatchNormTrain(ch, 1e-5, 0.1, m12, z(3), z(3), m5, z(3), z(3), nil, nil), kernels.ErrShape},
		{"batch norm eps 0", be.BatchNormTrain(ch, 0, 0.1, m12, z(3), z(3), m12, z(3), z(3), nil, nil), kernels.ErrShape},
		{"batch norm negative C", be.BatchNormTrain(kernels.ChanShape{Outer: 1, C: -3, Inner: 1}, 1e-5, 0.1, m12, z(3), z(3), m12, z(3), z(3), nil, nil), kernels.ErrShape},
		{"batch norm infer runVar short", be.BatchNormInfer(ch, 1e-5, m12, z(3), z(3), z(3), z(2), m12), kernels.ErrShape},
		{"batch norm backward dx short", be.BatchNormBackward(ch, m12, z(3), z(3), z(3), m12, m5, z(3), z(3)), kernels.ErrShape},
		{"prelu slope short", be.PReLU(ch, m12, z(2), m12), kernels.ErrShape},
		{"prelu backward dslope short", be.PReLUBackward(ch, m12, z(3), m12, m12, z(2)), kernels.ErrShape},
		{"l2 normalize norms short", be.L2NormalizeRows(3, 4, 1e-6, m12, m12, z(2)), kernels.ErrShape},
		{"l2 normalize backward dy short", be.L2NormalizeRowsBackward(3, 4, 1e-6, m12, z(3), m5, m12), kernels.ErrShape},
		{"ce cos short", be.MarginSoftmaxCE(3, 4, cf, m5, ok3, 1, nil, nil), kernels.ErrShape},
		{"ce targets short", be.MarginSoftmaxCE(3, 4, cf, m12, h.upIdx([]int32{0}), 1, nil, nil), kernels.ErrShape},
		{"ce target ≥ cols", be.MarginSoftmaxCE(3, 4, cf, m12, tg, 1, m12, nil), kernels.ErrIndex},
		{"ce scale 0", be.MarginSoftmaxCE(3, 4, kernels.Margin{Kind: kernels.CosFace, M: 0.4}, m12, ok3, 1, nil, nil), kernels.ErrShape},
		{"ce unknown margin", be.MarginSoftmaxCE(3, 4, kernels.Margin{Kind: 7, S: 1}, m12, ok3, 1, nil, nil), kernels.ErrShape},
		{"ce grad short", be.MarginSoftmaxCE(3, 4, cf, m12, ok3, 1, m5, nil), kernels.ErrShape},
		{"ce rowLoss short", be.MarginSoftmaxCE(3, 4, cf, m12, ok3, 1, nil, z(2)), kernels.ErrShape},
		{"ce nil targets", be.MarginSoftmaxCE(3, 4, cf, m12, nil, 1, nil, nil), kernels.ErrBuffer},
		{"ce foreign targets", be.MarginSoftmaxCE(3, 4, cf, m12, foreign{}, 1, nil, nil), kernels.ErrBuffer},
		{"top-k k > cols", be.TopK(3, 4, 5, m12, z(15), h.upIdx(make([]int32, 15))), kernels.ErrShape},
		{"top-k k = 0", be.TopK(3, 4, 0, m12, m12, h.upIdx(make([]int32, 12))), kernels.ErrShape},
		{"top-k k > MaxTopK", be.TopK(1, 100, kernels.MaxTopK+1, z(100), z(100), h.upIdx(make([]int32, 100))), kernels.ErrShape},
		{"top-k idx short", be.TopK(3, 4, 2, m12, z(6), h.upIdx(make([]int32, 5))), kernels.ErrShape},
		{"fresh k > cols", be.FreshTopKLoss(3, 4, 5, m12, nil, 1, nil, nil), kernels.ErrShape},
		{"fresh targets short", be.FreshTopKLoss(3, 4, 2, m12, h.upIdx([]int32{-1}), 1, nil, nil), kernels.ErrShape},
		{"gather index ≥ rows", be.GatherRows(3, 4, m12, 3, idx, z(12)), kernels.ErrIndex},
		{"gather dst short", be.GatherRows(3, 4, m12, 3, ok3, m5), kernels.ErrShape},
		{"gather src short", be.GatherRows(3, 4, m5, 3, ok3, z(12)), kernels.ErrShape},
		{"scatter index ≥ rows", be.ScatterRows(3, 4, m12, idx, z(12), 3), kernels.ErrIndex},
		{"scatter idx short", be.ScatterRows(3, 4, m12, h.upIdx([]int32{0}), z(12), 3), kernels.ErrShape},
		{"sgd v short", be.SGDStep(12, sgd, m12, m12, m5), kernels.ErrShape},
		{"sum negative n", sumErr(be.Sum(-1, m12)), kernels.ErrShape},
		{"all finite too long", boolErr(be.AllFinite(13, m12)), kernels.ErrShape},
		{"view of a foreign buffer", viewErr(be.View(foreign{}, 0, 1)), kernels.ErrBuffer},
	}
	for _, c := range cases {
		h.wantErr(c.name, c.err, c.want)
	}
}

func sumErr(_ float64, err error) error         { return err }
func boolErr(_ bool, err error) error           { return err }
func viewErr(_ kernels.Buffer, err error) error { return err }
