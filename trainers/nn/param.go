package nn

import (
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"math"
	"math/rand/v2"

	"github.com/ffc-stream/ffc/kernels"
)

// Errors of this package; shape and batch errors wrap [kernels.ErrShape].
var (
	// ErrArch reports two parameter lists (or a checkpoint and a net) that
	// do not describe the same architecture.
	ErrArch = errors.New("architecture mismatch")
	// ErrFormat reports a corrupt or unsupported checkpoint.
	ErrFormat = errors.New("bad parameter file")
	// ErrState reports a call out of order, such as Backward without a
	// training Forward, or Backward on a forward-only net.
	ErrState = errors.New("bad state")
)

// Param is one tensor of a network on the backend. Learnable parameters
// (a net's Params) have W, G and V; non-learnable state (a net's State:
// BatchNorm running statistics) has W only, and so has every tensor of a
// forward-only net.
type Param struct {
	Name  string
	Shape []int // dimensions; their product is N
	N     int   // elements
	// W holds the values, G the gradient (accumulated by Backward), V the
	// SGD momentum.
	W, G, V kernels.Buffer
	// Decay selects weight decay in [SGD.Step]: true for convolution and
	// linear weights, false for biases, BatchNorm and PReLU parameters.
	Decay bool
}

// Config holds what every layer constructor needs.
type Config struct {
	// MaxBatch is the largest n a Forward accepts; buffers are sized for it.
	MaxBatch int
	// Seed makes the weight initialisation deterministic: each tensor draws
	// from a stream derived from Seed and its name.
	Seed uint64
	// ForwardOnly builds a layer without gradient, momentum and input
	// gradient buffers (a gallery net); its Backward returns ErrState.
	ForwardOnly bool
	// Init is how conv and linear weights start: InitKaiming (or "") draws
	// N(0, 2/fan_in), biases 0; InitUniform draws U(−1/√fan_in, 1/√fan_in)
	// for weights and biases, torch's default for Conv2d and Linear.
	Init string

	ws   *workspace // shared im2col scratch; nil: the layer makes its own
	ring *ring      // short-lived buffers (see ring); nil: the layer allocates its own
}

func (c Config) validate(op string) error {
	if c.MaxBatch < 1 {
		return fmt.Errorf("nn: %s: %w: MaxBatch = %d, need ≥ 1", op, kernels.ErrShape, c.MaxBatch)
	}
	return nil
}

// rng returns the deterministic random stream of the tensor name.
func (c Config) rng(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(c.Seed, h.Sum64()))
}

// init selects how newParam fills W.
type initKind int

const (
	initZero    initKind = iota
	initOne              // constant 1
	initConst            // constant value
	initKaiming          // N(0, 2/fanIn); U(±1/√fanIn) with Config.Init "uniform"
	initBias             // 0; U(±1/√fanIn) with Config.Init "uniform"
)

// The weight initializations of Config.Init.
const (
	InitKaiming = "kaiming"
	InitUniform = "uniform"
)

// newParam allocates a learnable tensor and initialises W.
func newParam(be kernels.Backend, c Config, name string, shape []int, decay bool, kind initKind, v float64, fanIn int) (*Param, error) {
	p, err := newTensor(be, name, shape)
	if err != nil {
		return nil, err
	}
	p.Decay = decay
	host := make([]float32, p.N)
	switch kind {
	case initOne:
		v = 1
		fallthrough
	case initConst:
		for i := range host {
			host[i] = float32(v)
		}
	case initKaiming, initBias:
		r := c.rng(name)
		if c.Init == InitUniform {
			bound := 1 / math.Sqrt(float64(max(fanIn, 1)))
			for i := range host {
				host[i] = float32((2*r.Float64() - 1) * bound)
			}
			break
		}
		if kind == initBias {
			break // zeros
		}
		std := math.Sqrt(2 / float64(max(fanIn, 1)))
		for i := range host {
			host[i] = float32(r.NormFloat64() * std)
		}
	}
	if err := be.Upload(p.W, host); err != nil {
		return nil, fmt.Errorf("nn: init %s: %w", name, err)
	}
	if !c.ForwardOnly {
		if p.G, err = be.Alloc(p.N); err != nil {
			return nil, fmt.Errorf("nn: alloc %s gradient: %w", name, err)
		}
		if p.V, err = be.Alloc(p.N); err != nil {
			return nil, fmt.Errorf("nn: alloc %s momentum: %w", name, err)
		}
	}
	return p, nil
}

// newTensor allocates a zeroed tensor with W only.
func newTensor(be kernels.Backend, name string, shape []int) (*Param, error) {
	n := 1
	for _, d := range shape {
		if d < 1 {
			return nil, fmt.Errorf("nn: tensor %s: %w: shape %v", name, kernels.ErrShape, shape)
		}
		n *= d
	}
	w, err := be.Alloc(n)
	if err != nil {
		return nil, fmt.Errorf("nn: alloc %s: %w", name, err)
	}
	return &Param{Name: name, Shape: append([]int(nil), shape...), N: n, W: w}, nil
}

// newState allocates a non-learnable tensor filled with v.
func newState(be kernels.Backend, name string, shape []int, v float32) (*Param, error) {
	p, err := newTensor(be, name, shape)
	if err != nil {
		return nil, err
	}
	if v != 0 {
		if err := be.Fill(p.N, v, p.W); err != nil {
			return nil, fmt.Errorf("nn: init %s: %w", name, err)
		}
	}
	return p, nil
}

// ZeroGrads sets the gradient of every parameter that has one to 0.
func ZeroGrads(be kernels.Backend, ps []*Param) error {
	for _, p := range ps {
		if p.G == nil {
			continue
		}
		if err := be.Fill(p.N, 0, p.G); err != nil {
			return fmt.Errorf("nn: zero grads %s: %w", p.Name, err)
		}
	}
	return nil
}

// sameArch checks that dst and src pair up: same length, names and sizes.
func sameArch(op string, dst, src []*Param) error {
	if len(dst) != len(src) {
		return fmt.Errorf("nn: %s: %w: %d tensors vs %d", op, ErrArch, len(dst), len(src))
	}
	for i := range dst {
		if dst[i].Name != src[i].Name || dst[i].N != src[i].N {
			return fmt.Errorf("nn: %s: %w: tensor %d is %s (%d) vs %s (%d)", op, ErrArch, i,
				dst[i].Name, dst[i].N, src[i].Name, src[i].N)
		}
	}
	return nil
}

// CopyParams copies the values W of src into dst (the gallery ← probe at
// start; pass Params and State). The lists must pair up by name and size.
func CopyParams(be kernels.Backend, dst, src []*Param) error {
	if err := sameArch("copy params", dst, src); err != nil {
		return err
	}
	for i, d := range dst {
		if err := be.Copy(d.N, src[i].W, d.W); err != nil {
			return fmt.Errorf("nn: copy params %s: %w", d.Name, err)
		}
	}
	return nil
}

// MovingAverage sets dst.W ← m·dst.W + (1−m)·src.W for each pair, the
// gallery's update θg ← m·θg + (1−m)·θp. Pass Params only: BatchNorm
// running statistics are not averaged.
func MovingAverage(be kernels.Backend, dst, src []*Param, m float32) error {
	if !(m >= 0 && m <= 1) {
		return fmt.Errorf("nn: moving average: %w: m = %v not in [0, 1]", kernels.ErrShape, m)
	}
	if err := sameArch("moving average", dst, src); err != nil {
		return err
	}
	for i, d := range dst {
		if err := be.Axpby(d.N, 1-m, src[i].W, m, d.W); err != nil {
			return fmt.Errorf("nn: moving average %s: %w", d.Name, err)
		}
	}
	return nil
}

// Momenta returns, for the parameters that have a momentum buffer, tensors
// named "<name>.momentum" whose W is that buffer, so that [SaveParams] and
// [LoadParams] checkpoint the optimizer state too.
func Momenta(ps []*Param) []*Param {
	out := make([]*Param, 0, len(ps))
	for _, p := range ps {
		if p.V == nil {
			continue
		}
		out = append(out, &Param{Name: p.Name + ".momentum", Shape: p.Shape, N: p.N, W: p.V})
	}
	return out
}

// ScaleImages sets dst[i] = (src[i]/255 − 0.5)/0.5, the input scaling of
// the backbones, on the host (see AppendScaled).
func ScaleImages(dst []float32, src []byte) error {
	if len(dst) < len(src) {
		return fmt.Errorf("nn: scale images: %w: dst has %d elements, src %d", kernels.ErrShape, len(dst), len(src))
	}
	AppendScaled(dst[:0], src)
	return nil
}

// AppendScaled appends the 8-bit pixels of an image to dst scaled to
// (x/255 − 0.5)/0.5, in [−1, 1]: the one place the networks' input scaling
// is written. Training (offline and streaming), evaluation and the demo's
// identification all go through it.
func AppendScaled(dst []float32, pix []byte) []float32 {
	for _, b := range pix {
		dst = append(dst, (float32(b)/255-0.5)/0.5)
	}
	return dst
}

// Pixels returns a grayscale image's pixels row by row without the
// padding of a wider stride (the image's own buffer when it has none).
func Pixels(g *image.Gray) []byte {
	w, h := g.Rect.Dx(), g.Rect.Dy()
	if g.Stride == w {
		return g.Pix[:w*h]
	}
	out := make([]byte, 0, w*h)
	for y := 0; y < h; y++ {
		out = append(out, g.Pix[y*g.Stride:y*g.Stride+w]...)
	}
	return out
}
