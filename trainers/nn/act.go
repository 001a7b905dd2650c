package nn

import (
	"github.com/ffc-stream/ffc/kernels"
)

// PReLU is y = x where x > 0, else slope[c]·x, with one slope per channel
// (initialised to 0.25), in the layout of its input.
type PReLU struct {
	base
	C, Spatial int
	Layout     kernels.Layout
	Slope      *Param

	y, dx kernels.Buffer
}

// NewPReLU builds a PReLU whose slope tensor is "<name>.weight".
func NewPReLU(be kernels.Backend, c Config, name string, channels, spatial int, layout kernels.Layout) (*PReLU, error) {
	b, err := newBase(be, c, name, channels*spatial, channels*spatial)
	if err != nil {
		return nil, err
	}
	l := &PReLU{base: b, C: channels, Spatial: spatial, Layout: layout}
	if l.Slope, err = newParam(be, c, name+".weight", []int{channels}, false, initConst, 0.25, 0); err != nil {
		return nil, err
	}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	return l, nil
}

// Params is the slope.
func (l *PReLU) Params() []*Param { return []*Param{l.Slope} }

// Forward applies the activation.
func (l *PReLU) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	if err := l.be.PReLU(chanShape(l.Layout, n, l.C, l.Spatial), x, l.Slope.W, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward accumulates dslope and returns dx. The slope gradient needs
// the kernel's dx pass, so dx is always computed.
func (l *PReLU) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	if err := l.be.PReLUBackward(chanShape(l.Layout, l.n, l.C, l.Spatial), l.x, l.Slope.W, dy, l.dx, l.Slope.G); err != nil {
		return nil, l.wrap("backward", err)
	}
	if !needDx {
		return nil, nil
	}
	return l.dx, nil
}

// ReLU is y = max(x, 0) over Len floats per sample.
type ReLU struct {
	base
	y, dx kernels.Buffer
}

// NewReLU builds a ReLU over n samples of length floats.
func NewReLU(be kernels.Backend, c Config, name string, length int) (*ReLU, error) {
	b, err := newBase(be, c, name, length, length)
	if err != nil {
		return nil, err
	}
	l := &ReLU{base: b}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	return l, nil
}

// Forward applies max(x, 0).
func (l *ReLU) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	if err := l.be.ReLU(n*l.inLen, x, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward returns dy where x > 0, else 0.
func (l *ReLU) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	if !needDx {
		return nil, nil
	}
	if err := l.be.ReLUBackward(l.n*l.inLen, l.x, dy, l.dx); err != nil {
		return nil, l.wrap("backward", err)
	}
	return l.dx, nil
}

// Flatten turns a CNHW activation of C channels of Spatial positions into
// n rows of C·Spatial floats (per sample in C, H, W order, as PyTorch's
// flatten of NCHW).
type Flatten struct {
	base
	C, Spatial int
	y, dx      kernels.Buffer
}

// NewFlatten builds a CNHW → n×(C·Spatial) flatten.
func NewFlatten(be kernels.Backend, c Config, name string, channels, spatial int) (*Flatten, error) {
	b, err := newBase(be, c, name, channels*spatial, channels*spatial)
	if err != nil {
		return nil, err
	}
	l := &Flatten{base: b, C: channels, Spatial: spatial}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	return l, nil
}

// Forward transposes [C][n][Spatial] into [n][C][Spatial].
func (l *Flatten) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	if err := l.be.SwapAxes(l.C, n, l.Spatial, x, l.y); err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward transposes the gradient back to CNHW.
func (l *Flatten) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	if !needDx {
		return nil, nil
	}
	if err := l.be.SwapAxes(l.n, l.C, l.Spatial, dy, l.dx); err != nil {
		return nil, l.wrap("backward", err)
	}
	return l.dx, nil
}
