package nn

import (
	"github.com/ffc-stream/ffc/kernels"
)

// BatchNorm normalises C channels of Spatial positions each (BatchNorm1d
// with Spatial = 1 on n×C rows, BatchNorm2d otherwise), in the layout of
// its input. gamma starts at 1, beta at 0, the running mean at 0 and the
// running variance at 1.
type BatchNorm struct {
	base
	C, Spatial int
	Layout     kernels.Layout
	// Eps is added to the variance (1e-5); Momentum weighs the batch in
	// the running statistics (0.1), as in PyTorch.
	Eps, Momentum float32

	Gamma, Beta     *Param
	RunMean, RunVar *Param
	y, dx           kernels.Buffer
	mean, invStd    kernels.Buffer
}

// NewBatchNorm builds a BatchNorm whose tensors are "<name>.weight",
// "<name>.bias", "<name>.running_mean" and "<name>.running_var".
func NewBatchNorm(be kernels.Backend, c Config, name string, channels, spatial int, layout kernels.Layout) (*BatchNorm, error) {
	b, err := newBase(be, c, name, channels*spatial, channels*spatial)
	if err != nil {
		return nil, err
	}
	l := &BatchNorm{base: b, C: channels, Spatial: spatial, Layout: layout, Eps: 1e-5, Momentum: 0.1}
	if l.Gamma, err = newParam(be, c, name+".weight", []int{channels}, false, initOne, 0, 0); err != nil {
		return nil, err
	}
	if l.Beta, err = newParam(be, c, name+".bias", []int{channels}, false, initZero, 0, 0); err != nil {
		return nil, err
	}
	if l.RunMean, err = newState(be, name+".running_mean", []int{channels}, 0); err != nil {
		return nil, err
	}
	if l.RunVar, err = newState(be, name+".running_var", []int{channels}, 1); err != nil {
		return nil, err
	}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	if l.mean, err = be.Alloc(channels); err != nil {
		return nil, l.wrap("alloc", err)
	}
	if l.invStd, err = be.Alloc(channels); err != nil {
		return nil, l.wrap("alloc", err)
	}
	return l, nil
}

// Params are gamma and beta.
func (l *BatchNorm) Params() []*Param { return []*Param{l.Gamma, l.Beta} }

// State is the running mean and variance.
func (l *BatchNorm) State() []*Param { return []*Param{l.RunMean, l.RunVar} }

// Forward normalises with the batch statistics (and updates the running
// ones) when train, else with the running statistics.
func (l *BatchNorm) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	s := chanShape(l.Layout, n, l.C, l.Spatial)
	var err error
	if train {
		err = l.be.BatchNormTrain(s, l.Eps, l.Momentum, x, l.Gamma.W, l.Beta.W, l.y, l.mean, l.invStd, l.RunMean.W, l.RunVar.W)
	} else {
		err = l.be.BatchNormInfer(s, l.Eps, x, l.Gamma.W, l.Beta.W, l.RunMean.W, l.RunVar.W, l.y)
	}
	if err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward differentiates through the batch statistics. BatchNorm always
// computes dx (the kernel does); needDx only selects whether it is
// returned.
func (l *BatchNorm) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	s := chanShape(l.Layout, l.n, l.C, l.Spatial)
	if err := l.be.BatchNormBackward(s, l.x, l.Gamma.W, l.mean, l.invStd, dy, l.dx, l.Gamma.G, l.Beta.G); err != nil {
		return nil, l.wrap("backward", err)
	}
	if !needDx {
		return nil, nil
	}
	return l.dx, nil
}

// L2Norm divides each row of n×Dim by its Euclidean norm (at least Eps).
type L2Norm struct {
	base
	Dim int
	Eps float32 // 1e-12, as torch.nn.functional.normalize

	y, dx, norms kernels.Buffer
}

// NewL2Norm builds an L2 normalisation of rows of dim floats.
func NewL2Norm(be kernels.Backend, c Config, name string, dim int) (*L2Norm, error) {
	b, err := newBase(be, c, name, dim, dim)
	if err != nil {
		return nil, err
	}
	l := &L2Norm{base: b, Dim: dim, Eps: 1e-12}
	if l.y, l.dx, err = l.allocOutput(); err != nil {
		return nil, err
	}
	if l.norms, err = l.alloc("norms", 1); err != nil {
		return nil, err
	}
	return l, nil
}

// Forward normalises the rows.
func (l *L2Norm) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	if err := l.begin(x, n, train); err != nil {
		return nil, err
	}
	if err := l.be.L2NormalizeRows(n, l.Dim, l.Eps, x, l.y, l.norms); err != nil {
		return nil, l.wrap("forward", err)
	}
	return l.y, nil
}

// Backward returns dx = (dy − y·⟨y, dy⟩)/‖x‖.
func (l *L2Norm) Backward(dy kernels.Buffer, needDx bool) (kernels.Buffer, error) {
	if err := l.beginBackward(dy); err != nil {
		return nil, err
	}
	if !needDx {
		return nil, nil
	}
	if err := l.be.L2NormalizeRowsBackward(l.n, l.Dim, l.Eps, l.y, l.norms, dy, l.dx); err != nil {
		return nil, l.wrap("backward", err)
	}
	return l.dx, nil
}
