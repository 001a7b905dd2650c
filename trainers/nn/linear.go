package nn

import (
	"github.com/ffc-stream/ffc/kernels"
)

// Linear is y = x·Wᵀ + b for n×In inputs, with W Out×In (Kaiming-normal,
// fan-in) and b zero-initialised.
type Linear struct {
	base
	In, Out int
	W, B    *Param

	y, dx kernels.Buffer
}

// NewLinear builds a Linear layer whose tensors are "<name>.weight" and
// "<name>.bias".
func NewLinear(be kernels.Backend, c Config, name string, in, out int) (*Linear, error) {
	b, err := newBase(be, c, name, in, out)
	if err != nil {
		return nil, err
	}
	l := &Linear{base: b, In: in, Out: out}
	if l.W, err = newParam(be, c, name+".weight", []int{out, in}, true, initKaiming, 0, in); err != nil {
		return nil, err
	}
	if l.B, err = newParam(be, c, name+".bias", []int{out}, false, initBias, 0, in); err != nil {
		return nil, err
	}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	return l, nil
}

// Params are the weight and the bias.
func (l *Linear) Params() []*Param { return []*Param{l.W, l.B} }

// Forward computes y = x·Wᵀ + b.
func (l *Linear) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	if err := l.be.Gemm(false, true, n, l.Out, l.In, 1, x, l.W.W, 0, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	if err := l.be.AddChannel(kernels.ChanShape{Outer: n, C: l.Out, Inner: 1}, l.B.W, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward accumulates dW += dyᵀ·x and db += Σ dy, and returns dx = dy·W.
func (l *Linear) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	n := l.n
	if err := l.be.Gemm(true, false, l.Out, l.In, n, 1, dy, l.x, 1, l.W.G); err != nil {
		return nil, l.wrap("backward", err)
	}
	if err := l.be.ChannelSum(kernels.ChanShape{Outer: n, C: l.Out, Inner: 1}, dy, l.B.G); err != nil {
		return nil, l.wrap("backward", err)
	}
	if !needDx {
		return nil, nil
	}
	if err := l.be.Gemm(false, false, n, l.In, l.Out, 1, dy, l.W.W, 0, l.dx); err != nil {
		return nil, l.wrap("backward", err)
	}
	return l.dx, nil
}
