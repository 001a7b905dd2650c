package nn

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// Sequential runs layers one after the other.
type Sequential struct {
	base
	Layers []Layer
}

// NewSequential chains layers whose per-sample lengths must match.
func NewSequential(be kernels.Backend, c Config, name string, layers ...Layer) (*Sequential, error) {
	if len(layers) == 0 {
		return nil, fmt.Errorf("nn: %s: %w: no layers", name, kernels.ErrShape)
	}
	for i := 1; i < len(layers); i++ {
		if layers[i-1].OutLen() != layers[i].InLen() {
			return nil, fmt.Errorf("nn: %s: %w: layer %d gives %d floats per sample, layer %d takes %d",
				name, kernels.ErrShape, i-1, layers[i-1].OutLen(), i, layers[i].InLen())
		}
	}
	b, err := newBase(be, c, name, layers[0].InLen(), layers[len(layers)-1].OutLen())
	if err != nil {
		return nil, err
	}
	return &Sequential{base: b, Layers: layers}, nil
}

// Params concatenates the layers' parameters in order.
func (s *Sequential) Params() []*Param {
	var ps []*Param
	for _, l := range s.Layers {
		ps = append(ps, l.Params()...)
	}
	return ps
}

// State concatenates the layers' state in order.
func (s *Sequential) State() []*Param {
	var ps []*Param
	for _, l := range s.Layers {
		ps = append(ps, l.State()...)
	}
	return ps
}

// Forward runs the layers in order.
func (s *Sequential) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := s.begin(x, n, train); err != nil {
		return nil, err
	}
	var err error
	for _, l := range s.Layers {
		if x, err = l.Forward(x, n, train); err != nil {
			s.x = nil
			return nil, err
		}
	}
	return x, nil
}

// Backward runs the layers in reverse; the first one computes its input
// gradient only if needDx.
func (s *Sequential) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := s.beginBackward(dy); err != nil {
		return nil, err
	}
	var err error
	for i := len(s.Layers) - 1; i >= 0; i-- {
		if dy, err = s.Layers[i].Backward(dy, needDx || i > 0); err != nil {
			return nil, err
		}
	}
	return dy, nil
}

// FLOPs sums the forward FLOPs per sample of the convolutions and linear
// layers.
func (s *Sequential) FLOPs() int64 {
	var f int64
	for _, l := range s.Layers {
		if fl, ok := l.(interface{ FLOPs() int64 }); ok {
			f += fl.FLOPs()
		}
	}
	return f
}

// FLOPs is the number of multiply-adds ×2 of one sample's forward pass.
func (l *Linear) FLOPs() int64 { return 2 * int64(l.In) * int64(l.Out) }

// IRBlock is the residual block of the IR-ResNet on a CNHW activation of C
// channels of H×W: y = x + BN(conv3x3(PReLU(BN(conv3x3(BN(x)))))).
type IRBlock struct {
	base
	C, H, W int
	Path    *Sequential

	y, dx kernels.Buffer
}

// NewIRBlock builds the block; its tensors are named "<name>.bn1",
// "<name>.conv1", "<name>.bn2", "<name>.prelu", "<name>.conv2",
// "<name>.bn3".
func NewIRBlock(be kernels.Backend, c Config, name string, channels, h, w int) (*IRBlock, error) {
	b, err := newBase(be, c, name, channels*h*w, channels*h*w)
	if err != nil {
		return nil, err
	}
	l := &IRBlock{base: b, C: channels, H: h, W: w}
	// The input gradient is taken from the net's ring before the path's
	// layers take theirs and the output after they take theirs: in the
	// order the values are written, Backward's and Forward's (see ring).
	if l.dx, err = l.allocDx(); err != nil {
		return nil, err
	}
	hw := h * w
	cs := ConvShape{InC: channels, OutC: channels, H: h, W: w, K: 3, Stride: 1, Pad: 1, InLayout: kernels.CNHW}
	bn1, err := NewBatchNorm(be, c, name+".bn1", channels, hw, kernels.CNHW)
	if err != nil {
		return nil, err
	}
	conv1, err := NewConv2d(be, c, name+".conv1", cs)
	if err != nil {
		return nil, err
	}
	bn2, err := NewBatchNorm(be, c, name+".bn2", channels, hw, kernels.CNHW)
	if err != nil {
		return nil, err
	}
	prelu, err := NewPReLU(be, c, name+".prelu", channels, hw, kernels.CNHW)
	if err != nil {
		return nil, err
	}
	conv2, err := NewConv2d(be, c, name+".conv2", cs)
	if err != nil {
		return nil, err
	}
	bn3, err := NewBatchNorm(be, c, name+".bn3", channels, hw, kernels.CNHW)
	if err != nil {
		return nil, err
	}
	if l.Path, err = NewSequential(be, c, name, bn1, conv1, bn2, prelu, conv2, bn3); err != nil {
		return nil, err
	}
	if l.y, err = l.allocY(); err != nil {
		return nil, err
	}
	return l, nil
}

// Params are the path's parameters.
func (l *IRBlock) Params() []*Param { return l.Path.Params() }

// State is the path's BatchNorm statistics.
func (l *IRBlock) State() []*Param { return l.Path.State() }

// FLOPs is the forward FLOPs per sample of the two convolutions.
func (l *IRBlock) FLOPs() int64 { return l.Path.FLOPs() }

// Forward computes x + path(x).
func (l *IRBlock) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	p, err := l.Path.Forward(x, n, train)
	if err != nil {
		l.x = nil
		return nil, err
	}
	if err := l.be.Add(n*l.inLen, p, x, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward sends dy through the path and adds it to the identity branch.
func (l *IRBlock) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	dp, err := l.Path.Backward(dy, needDx)
	if err != nil || !needDx {
		return nil, err
	}
	if err := l.be.Add(l.n*l.inLen, dp, dy, l.dx); err != nil {
		return nil, l.wrap("backward", err)
	}
	return l.dx, nil
}
