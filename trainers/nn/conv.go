package nn

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// ConvShape describes a square-kernel 2-d convolution without bias.
type ConvShape struct {
	InC, OutC int
	H, W      int // input height and width
	K         int // kernel size; 0 means 3
	Stride    int // 0 means 1
	Pad       int // zero padding on each side; negative means (K−1)/2
	// InLayout is the layout of the input; the output is always CNHW.
	InLayout kernels.Layout
}

func (s ConvShape) withDefaults() ConvShape {
	if s.K == 0 {
		s.K = 3
	}
	if s.Stride == 0 {
		s.Stride = 1
	}
	if s.Pad < 0 {
		s.Pad = (s.K - 1) / 2
	}
	return s
}

// Conv2d is a convolution lowered to GEMM: col = Im2Col(x), y = W·col with
// W OutC×(InC·K·K) (Kaiming-normal, fan-in InC·K·K), giving CNHW output.
//
// On a backend that is a kernels.Convolver (the CPU backend) the layer
// calls its ConvForward and ConvBackward, which lower a few images at a
// time, and holds no column matrix at all. Otherwise a convolution built
// with its own column buffer (the default) keeps the
// column matrix of the last Forward for Backward, which then overwrites
// it with the column gradient; one that shares its network's scratch
// buffer (forward-only nets, IRResNetOptions.RecomputeColumns) lowers the
// input again in Backward.
type Conv2d struct {
	base
	Shape      ConvShape
	OutH, OutW int
	W          *Param

	cv       kernels.Convolver // nil: Im2Col and Gemm with ws
	ws       *workspace
	ownCols  bool // ws is this layer's own
	colValid bool // ws.buf holds Im2Col of the last Forward's input
	y, dx    kernels.Buffer
	// dwT selects computing dWᵀ = col·dyᵀ into gT, transposing it into gW
	// and adding that to W.G, instead of one GEMM dW += dy·colᵀ.
	dwT    bool
	gT, gW kernels.Buffer
}

// NewConv2d builds a convolution whose weight is "<name>.weight". Pad in s
// is taken literally; use Pad: -1 for "same" padding ((K−1)/2).
func NewConv2d(be kernels.Backend, c Config, name string, s ConvShape) (*Conv2d, error) {
	s = s.withDefaults()
	g := kernels.ConvGeom{N: 1, C: s.InC, H: s.H, W: s.W, K: s.K, Stride: s.Stride, Pad: s.Pad, Layout: s.InLayout}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("nn: %s: %w", name, err)
	}
	if s.InC < 1 || s.OutC < 1 {
		return nil, fmt.Errorf("nn: %s: %w: channels %d → %d", name, kernels.ErrShape, s.InC, s.OutC)
	}
	oh, ow := g.OutH(), g.OutW()
	b, err := newBase(be, c, name, s.InC*s.H*s.W, s.OutC*oh*ow)
	if err != nil {
		return nil, err
	}
	l := &Conv2d{base: b, Shape: s, OutH: oh, OutW: ow, ws: c.ws}
	fanIn := s.InC * s.K * s.K
	if l.W, err = newParam(be, c, name+".weight", []int{s.OutC, s.InC, s.K, s.K}, true, initKaiming, 0, fanIn); err != nil {
		return nil, err
	}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	if cv, ok := be.(kernels.Convolver); ok {
		l.cv, l.ws = cv, nil
		return l, nil
	}
	if !c.ForwardOnly {
		l.dwT = true
		if l.gT, err = be.Alloc(l.W.N); err != nil {
			return nil, l.wrap("alloc", err)
		}
		if l.gW, err = be.Alloc(l.W.N); err != nil {
			return nil, l.wrap("alloc", err)
		}
	}
	if l.ws == nil {
		l.ws, l.ownCols = &workspace{be: be}, true
	}
	l.ws.reserve(fanIn * oh * ow * c.MaxBatch)
	if l.ownCols {
		if err := l.ws.alloc(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Params is the weight.
func (l *Conv2d) Params() []*Param { return []*Param{l.W} }

func (l *Conv2d) geom(n int) kernels.ConvGeom {
	s := l.Shape
	return kernels.ConvGeom{N: n, C: s.InC, H: s.H, W: s.W, K: s.K, Stride: s.Stride, Pad: s.Pad, Layout: s.InLayout}
}

// FLOPs is the number of multiply-adds ×2 of one sample's forward pass.
func (l *Conv2d) FLOPs() int64 {
	s := l.Shape
	return 2 * int64(s.OutC) * int64(s.InC*s.K*s.K) * int64(l.OutH*l.OutW)
}

// Forward computes the convolution of n samples into CNHW.
func (l *Conv2d) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	g := l.geom(n)
	if l.cv != nil {
		if err := l.cv.ConvForward(g, l.Shape.OutC, l.W.W, x, l.y); err != nil {
			return nil, l.wrap("forward", err)
		}
		return l.y, nil
	}
	col := l.ws.buf
	l.colValid = false
	if err := l.be.Im2Col(g, x, col); err != nil {
		return nil, l.wrap("forward", err)
	}
	if err := l.be.Gemm(false, false, l.Shape.OutC, g.ColCols(), g.ColRows(), 1, l.W.W, col, 0, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	l.colValid = l.ownCols
	return l.y, nil
}

// Backward accumulates dW += dy·colᵀ and returns dx = Col2Im(Wᵀ·dy).
func (l *Conv2d) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	g := l.geom(l.n)
	if l.cv != nil {
		var dx kernels.Buffer
		if needDx {
			dx = l.dx
		}
		if err := l.cv.ConvBackward(g, l.Shape.OutC, l.W.W, l.x, dy, l.W.G, dx); err != nil {
			return nil, l.wrap("backward", err)
		}
		return dx, nil
	}
	rows, cols := g.ColRows(), g.ColCols()
	col := l.ws.buf
	if !l.colValid {
		if err := l.be.Im2Col(g, l.x, col); err != nil {
			return nil, l.wrap("backward", err)
		}
		l.colValid = l.ownCols
	}
	if err := l.weightGrad(rows, cols, dy, col); err != nil {
		return nil, l.wrap("backward", err)
	}
	if !needDx {
		return nil, nil
	}
	l.colValid = false // col becomes the column gradient
	if err := l.be.Gemm(true, false, rows, cols, l.Shape.OutC, 1, l.W.W, dy, 0, col); err != nil {
		return nil, l.wrap("backward", err)
	}
	if err := l.be.Col2Im(g, col, l.dx); err != nil {
		return nil, l.wrap("backward", err)
	}
	return l.dx, nil
}

// weightGrad accumulates dW += dy·colᵀ. OpenBLAS runs the transposed
// product col·dyᵀ (rows×OutC, the long dimension k = N·OutH·OutW) 1.3-1.8×
// faster for these shapes, so by default it computes that and adds its
// transpose.
func (l *Conv2d) weightGrad(rows, cols int, dy, col kernels.Buffer) error {
	cout := l.Shape.OutC
	if !l.dwT {
		return l.be.Gemm(false, true, cout, rows, cols, 1, dy, col, 1, l.W.G)
	}
	if err := l.be.Gemm(false, true, rows, cout, cols, 1, col, dy, 0, l.gT); err != nil {
		return err
	}
	if err := l.be.SwapAxes(rows, cout, 1, l.gT, l.gW); err != nil {
		return err
	}
	return l.be.Add(l.W.N, l.gW, l.W.G, l.W.G)
}
