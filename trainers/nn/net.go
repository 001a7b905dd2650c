package nn

import (
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// Net is a network whose output is n×Dim L2-normalised embeddings.
type Net interface {
	// Forward runs the n inputs (n×InLen floats, already on the backend)
	// and returns the n×Dim output (a buffer of exactly n·Dim floats owned
	// by the net, valid until the next Forward). train selects batch
	// statistics in BatchNorm (updating the running statistics) instead of
	// the running statistics.
	Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error)
	// Backward takes dL/d(output) (n×Dim) of the last Forward, which must
	// have had train = true, and accumulates the parameter gradients
	// (G += ...). The input x of that Forward must be unchanged.
	Backward(dy kernels.Buffer) error
	// Params are the learnable tensors; State the BatchNorm running
	// statistics. Both lists are fixed for the life of the net.
	Params() []*Param
	State() []*Param
	Dim() int
	InLen() int // floats per input sample
	MaxBatch() int
	// FLOPs is the number of floating-point operations of one sample's
	// forward pass in the convolutions and linear layers.
	FLOPs() int64
}

// Tensors returns a net's Params followed by its State: what a checkpoint
// of the model holds and what the gallery copies from the probe at start.
func Tensors(n Net) []*Param {
	return append(append([]*Param(nil), n.Params()...), n.State()...)
}

// chain is a Net over a Sequential.
type chain struct {
	be     kernels.Backend
	seq    *Sequential
	dim    int
	params []*Param
	state  []*Param

	view  kernels.Buffer // output[:viewN·dim]
	viewN int
}

func newChain(be kernels.Backend, c Config, name string, layers ...Layer) (chain, error) {
	seq, err := NewSequential(be, c, name, layers...)
	if err != nil {
		return chain{}, err
	}
	return chain{be: be, seq: seq, dim: seq.OutLen(), params: seq.Params(), state: seq.State()}, nil
}

// Forward runs the network; see [Net].
func (c *chain) Forward(x kernels.Buffer, n int, train bool) (kernels.Buffer, error) {
	y, err := c.seq.Forward(x, n, train)
	if err != nil {
		return nil, err
	}
	if c.view == nil || c.viewN != n {
		v, err := c.be.View(y, 0, n*c.dim)
		if err != nil {
			return nil, fmt.Errorf("nn: %s: output view: %w", c.seq.name, err)
		}
		c.view, c.viewN = v, n
	}
	return c.view, nil
}

// Backward accumulates the parameter gradients; see [Net].
func (c *chain) Backward(dy kernels.Buffer) error {
	_, err := c.seq.Backward(dy, false)
	return err
}

// Params are the learnable tensors in layer order.
func (c *chain) Params() []*Param { return c.params }

// State are the BatchNorm running statistics in layer order.
func (c *chain) State() []*Param { return c.state }

// Dim is the embedding size.
func (c *chain) Dim() int { return c.dim }

// InLen is the number of floats per input sample.
func (c *chain) InLen() int { return c.seq.InLen() }

// MaxBatch is the largest batch Forward accepts.
func (c *chain) MaxBatch() int { return c.seq.max }

// FLOPs is the forward FLOPs per sample of the convolutions and linear
// layers.
func (c *chain) FLOPs() int64 { return c.seq.FLOPs() }

// Layers are the top-level layers of the network.
func (c *chain) Layers() []Layer { return c.seq.Layers }

// netBuilder collects the layers of a net under construction.
type netBuilder struct {
	be     kernels.Backend
	c      Config
	name   string
	layers []Layer
}

// newNetBuilder validates the configuration and the backend of the net
// called name.
func newNetBuilder(be kernels.Backend, c Config, name string) (*netBuilder, error) {
	if err := c.validate(name); err != nil {
		return nil, err
	}
	if be == nil {
		return nil, fmt.Errorf("nn: %s: %w: nil backend", name, kernels.ErrBuffer)
	}
	return &netBuilder{be: be, c: c, name: name}, nil
}

// add appends l when err is nil, and returns err: it takes a layer
// constructor's results as they are.
func (nb *netBuilder) add(l Layer, err error) error {
	if err == nil {
		nb.layers = append(nb.layers, l)
	}
	return err
}

// addHead appends the embedding head every net ends with: Linear in → dim,
// BN1d, L2-normalise.
func (nb *netBuilder) addHead(in, dim int) error {
	if err := nb.add(NewLinear(nb.be, nb.c, "head.fc", in, dim)); err != nil {
		return err
	}
	if err := nb.add(NewBatchNorm(nb.be, nb.c, "head.bn1d", dim, 1, kernels.NCHW)); err != nil {
		return err
	}
	return nb.add(NewL2Norm(nb.be, nb.c, "head.l2", dim))
}

// chain allocates the shared workspace, if the configuration has one (after
// every layer has reserved its share), and chains the layers.
func (nb *netBuilder) chain() (chain, error) {
	if nb.c.ws != nil {
		if err := nb.c.ws.alloc(); err != nil {
			return chain{}, err
		}
	}
	return newChain(nb.be, nb.c, nb.name, nb.layers...)
}

// IRResNetOptions configures [NewIRResNet]. Zero values take the defaults
// of the yardstick backbone.
type IRResNetOptions struct {
	Dim      int // embedding size (512)
	MaxBatch int // required
	Seed     uint64
	Init     string // Config.Init: kaiming (or "") or uniform
	// InChannels and InSize describe the NCHW input, InChannels×InSize×
	// InSize (1×32×32). InSize must be divisible by 2^(len(Widths)−1).
	InChannels, InSize int
	// Widths are the channels of the stages ({32, 64, 128}); every stage
	// after the first starts with a stride-2 convolution.
	Widths []int
	// Blocks is the number of residual blocks per stage (1 each).
	Blocks []int
	// ForwardOnly builds a net that only runs Forward (no gradient,
	// momentum or input-gradient buffers), for the gallery.
	ForwardOnly bool
	// ownBuffers gives every layer its own output and input-gradient
	// buffers instead of the net's ring (for tests).
	ownBuffers bool
	// RecomputeColumns makes the convolutions share one im2col buffer and
	// lower their input again in Backward, instead of each keeping its
	// column matrix from Forward: less memory (the yardstick at batch 64
	// keeps ≈ 300 MB of columns), one more Im2Col per convolution per
	// step. Forward-only nets always share. It applies to backends that
	// are not a kernels.Convolver; on the CPU backend no column matrix is
	// held either way.
	RecomputeColumns bool
}

// largestActivation is the most floats per sample any layer of the net
// takes or gives: the input, a stage's activation, or the embedding.
func (o IRResNetOptions) largestActivation() int {
	n, size := max(o.InChannels*o.InSize*o.InSize, o.Dim), o.InSize
	for i, w := range o.Widths {
		if i > 0 {
			size /= 2
		}
		n = max(n, w*size*size)
	}
	return n
}

// IRResNet is the yardstick backbone for 1×32×32 input (SPEC section 2):
// conv3x3(1→32)+BN+PReLU; residual block at 32; conv3x3 stride 2 → 64
// (16×16)+BN+PReLU; residual block at 64; conv3x3 stride 2 → 128
// (8×8)+BN+PReLU; residual block at 128; BN2d, flatten (128·8·8),
// Linear → Dim, BN1d, L2-normalise. Activations are CNHW up to the
// flatten.
type IRResNet struct {
	chain
	Opts IRResNetOptions // with defaults filled in
}

var _ Net = (*IRResNet)(nil)

// NewIRResNet builds an IR-ResNet on the backend.
func NewIRResNet(be kernels.Backend, o IRResNetOptions) (*IRResNet, error) {
	if o.Dim == 0 {
		o.Dim = 512
	}
	if o.InChannels == 0 {
		o.InChannels = 1
	}
	if o.InSize == 0 {
		o.InSize = 32
	}
	if len(o.Widths) == 0 {
		o.Widths = []int{32, 64, 128}
	}
	if len(o.Blocks) == 0 {
		o.Blocks = make([]int, len(o.Widths))
		for i := range o.Blocks {
			o.Blocks[i] = 1
		}
	}
	o.Widths = append([]int(nil), o.Widths...)
	o.Blocks = append([]int(nil), o.Blocks...)
	switch {
	case o.Dim < 1 || o.InChannels < 1 || o.InSize < 1:
		return nil, fmt.Errorf("nn: ir-resnet: %w: Dim %d, input %d×%d×%d", kernels.ErrShape, o.Dim, o.InChannels, o.InSize, o.InSize)
	case len(o.Blocks) != len(o.Widths):
		return nil, fmt.Errorf("nn: ir-resnet: %w: %d widths but %d block counts", kernels.ErrShape, len(o.Widths), len(o.Blocks))
	case o.InSize%(1<<(len(o.Widths)-1)) != 0:
		return nil, fmt.Errorf("nn: ir-resnet: %w: input size %d not divisible by %d", kernels.ErrShape, o.InSize, 1<<(len(o.Widths)-1))
	}
	for i := range o.Widths {
		if o.Widths[i] < 1 || o.Blocks[i] < 0 {
			return nil, fmt.Errorf("nn: ir-resnet: %w: stage %d width %d, %d blocks", kernels.ErrShape, i+1, o.Widths[i], o.Blocks[i])
		}
	}
	c := Config{MaxBatch: o.MaxBatch, Seed: o.Seed, ForwardOnly: o.ForwardOnly, Init: o.Init}
	if o.ForwardOnly || o.RecomputeColumns {
		c.ws = &workspace{be: be}
	}
	if !o.ownBuffers {
		c.ring = newRing(be, o.largestActivation(), o.MaxBatch)
	}
	nb, err := newNetBuilder(be, c, "ir-resnet")
	if err != nil {
		return nil, err
	}
	add := nb.add
	// convBNPReLU appends conv (from inC at size s, with stride) + BN + PReLU.
	convBNPReLU := func(prefix string, inC, outC, s, stride int, layout kernels.Layout) error {
		conv, err := NewConv2d(be, c, prefix+".conv", ConvShape{InC: inC, OutC: outC, H: s, W: s, K: 3, Stride: stride, Pad: 1, InLayout: layout})
		if err := add(conv, err); err != nil {
			return err
		}
		hw := conv.OutH * conv.OutW
		if err := add(NewBatchNorm(be, c, prefix+".bn", outC, hw, kernels.CNHW)); err != nil {
			return err
		}
		return add(NewPReLU(be, c, prefix+".prelu", outC, hw, kernels.CNHW))
	}
	size := o.InSize
	if err := convBNPReLU("stem", o.InChannels, o.Widths[0], size, 1, kernels.NCHW); err != nil {
		return nil, err
	}
	for i, w := range o.Widths {
		stage := fmt.Sprintf("stage%d", i+1)
		if i > 0 {
			if err := convBNPReLU(stage+".down", o.Widths[i-1], w, size, 2, kernels.CNHW); err != nil {
				return nil, err
			}
			size /= 2
		}
		for b := range o.Blocks[i] {
			if err := add(NewIRBlock(be, c, fmt.Sprintf("%s.block%d", stage, b), w, size, size)); err != nil {
				return nil, err
			}
		}
	}
	last, hw := o.Widths[len(o.Widths)-1], size*size
	if err := add(NewBatchNorm(be, c, "head.bn2d", last, hw, kernels.CNHW)); err != nil {
		return nil, err
	}
	if err := add(NewFlatten(be, c, "head.flatten", last, hw)); err != nil {
		return nil, err
	}
	if err := nb.addHead(last*hw, o.Dim); err != nil {
		return nil, err
	}
	ch, err := nb.chain()
	if err != nil {
		return nil, err
	}
	return &IRResNet{chain: ch, Opts: o}, nil
}

// MLPOptions configures [NewMLP].
type MLPOptions struct {
	In       int   // input features, required
	Hidden   []int // hidden widths; none gives Linear → Dim directly
	Dim      int   // embedding size (512)
	MaxBatch int   // required
	Seed     uint64
	Init     string // Config.Init: kaiming (or "") or uniform
	// ForwardOnly builds a net that only runs Forward (the gallery).
	ForwardOnly bool
}

// MLP is the backbone for feature-vector inputs: Linear + BN1d + PReLU per
// hidden layer, then Linear → Dim, BN1d, L2-normalise.
type MLP struct {
	chain
	Opts MLPOptions // with defaults filled in
}

var _ Net = (*MLP)(nil)

// NewMLP builds an MLP on the backend.
func NewMLP(be kernels.Backend, o MLPOptions) (*MLP, error) {
	if o.Dim == 0 {
		o.Dim = 512
	}
	o.Hidden = append([]int(nil), o.Hidden...)
	if o.In < 1 || o.Dim < 1 {
		return nil, fmt.Errorf("nn: mlp: %w: In %d, Dim %d", kernels.ErrShape, o.In, o.Dim)
	}
	largest := max(o.In, o.Dim)
	for _, h := range o.Hidden {
		largest = max(largest, h)
	}
	c := Config{MaxBatch: o.MaxBatch, Seed: o.Seed, ForwardOnly: o.ForwardOnly, Init: o.Init, ring: newRing(be, largest, o.MaxBatch)}
	nb, err := newNetBuilder(be, c, "mlp")
	if err != nil {
		return nil, err
	}
	add := nb.add
	in := o.In
	for i, h := range o.Hidden {
		if h < 1 {
			return nil, fmt.Errorf("nn: mlp: %w: hidden layer %d has width %d", kernels.ErrShape, i+1, h)
		}
		p := fmt.Sprintf("hidden%d", i+1)
		if err := add(NewLinear(be, c, p+".fc", in, h)); err != nil {
			return nil, err
		}
		if err := add(NewBatchNorm(be, c, p+".bn", h, 1, kernels.NCHW)); err != nil {
			return nil, err
		}
		if err := add(NewPReLU(be, c, p+".prelu", h, 1, kernels.NCHW)); err != nil {
			return nil, err
		}
		in = h
	}
	if err := nb.addHead(in, o.Dim); err != nil {
		return nil, err
	}
	ch, err := nb.chain()
	if err != nil {
		return nil, err
	}
	return &MLP{chain: ch, Opts: o}, nil
}
