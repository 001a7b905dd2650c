package onnx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/internal/onnx/onnxpb"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// The fixed properties of an exported model.
const (
	// Opset is the version of the default (ai.onnx) operator set used.
	Opset = 17
	// IRVersion is the ONNX IR version of the model (the one of opset 17).
	IRVersion = 8
	// InputName and OutputName name the graph's input and output.
	InputName  = "input"
	OutputName = "embedding"
	// BatchDim is the symbolic name of the batch dimension.
	BatchDim = "N"
	// Producer is the model's producer_name.
	Producer = "ffc"
)

// ErrUnsupported is wrapped by Export's error for a network or a layer it
// cannot write.
var ErrUnsupported = errors.New("not supported by the ONNX export")

// Options describe the exported model beyond its graph.
type Options struct {
	// GraphName names the graph (empty: "ffc").
	GraphName string
	// ProducerVersion is the model's producer_version (ffc's version).
	ProducerVersion string
	// DocString is the model's doc_string.
	DocString string
	// Metadata become the model's metadata_props, sorted by key.
	Metadata map[string]string
}

// Export converts net, in eval mode (BatchNorm with its running
// statistics), into an ONNX model; the weights are read from be. See the
// package documentation for the model's input and output.
func Export(ctx context.Context, be kernels.Backend, net nn.Net, o Options) (*onnxpb.ModelProto, error) {
	layers, in, err := netLayers(net)
	if err != nil {
		return nil, err
	}
	name := o.GraphName
	if name == "" {
		name = Producer
	}
	b := &builder{ctx: ctx, be: be, g: &onnxpb.GraphProto{Name: proto.String(name)}, used: map[string]bool{InputName: true}}
	y, err := b.layers(layers, value{name: InputName, shape: in})
	if err != nil {
		return nil, err
	}
	if !slices.Equal(y.shape, []int64{int64(net.Dim())}) || y.name == InputName {
		return nil, fmt.Errorf("onnx: export: %w: the network ends in shape %v, want [%d]", kernels.ErrShape, y.shape, net.Dim())
	}
	b.rename(y.name, OutputName)
	b.g.Input = []*onnxpb.ValueInfoProto{valueInfo(InputName, in)}
	b.g.Output = []*onnxpb.ValueInfoProto{valueInfo(OutputName, y.shape)}
	m := &onnxpb.ModelProto{
		IrVersion:       proto.Int64(IRVersion),
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		ProducerName:    proto.String(Producer),
		ProducerVersion: proto.String(o.ProducerVersion),
		DocString:       proto.String(o.DocString),
		Graph:           b.g,
	}
	keys := make([]string, 0, len(o.Metadata))
	for k := range o.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(o.Metadata[k])})
	}
	return m, nil
}

// Marshal encodes a model deterministically: the same network gives the
// same bytes.
func Marshal(m *onnxpb.ModelProto) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("onnx: marshal: %w", err)
	}
	return b, nil
}

// netLayers returns the top-level layers of net and its per-sample input
// shape.
func netLayers(net nn.Net) ([]nn.Layer, []int64, error) {
	switch n := net.(type) {
	case *nn.IRResNet:
		c, s := int64(n.Opts.InChannels), int64(n.Opts.InSize)
		return n.Layers(), []int64{c, s, s}, nil
	case *nn.MLP:
		return n.Layers(), []int64{int64(n.Opts.In)}, nil
	}
	return nil, nil, fmt.Errorf("onnx: export: %w: network %T", ErrUnsupported, net)
}

// value is a tensor of the graph: its name and its per-sample shape (the
// batch dimension left out).
type value struct {
	name  string
	shape []int64
}

// builder appends nodes and initializers to a graph.
type builder struct {
	ctx  context.Context
	be   kernels.Backend
	g    *onnxpb.GraphProto
	used map[string]bool // value and node names
	seq  int
}

func (b *builder) layers(ls []nn.Layer, x value) (value, error) {
	for _, l := range ls {
		if err := b.ctx.Err(); err != nil {
			return x, fmt.Errorf("onnx: export: %w", err)
		}
		var err error
		if x, err = b.layer(l, x); err != nil {
			return x, err
		}
	}
	return x, nil
}

// layer appends the nodes of one layer applied to x.
func (b *builder) layer(l nn.Layer, x value) (value, error) {
	if int64(l.InLen()) != numel(x.shape) {
		return x, fmt.Errorf("onnx: export: %w: %T takes %d floats per sample, gets %v", kernels.ErrShape, l, l.InLen(), x.shape)
	}
	switch l := l.(type) {
	case *nn.Sequential:
		return b.layers(l.Layers, x)
	case *nn.IRBlock:
		p, err := b.layers(l.Path.Layers, x)
		if err != nil {
			return x, err
		}
		return b.node("Add", "", []string{p.name, x.name}, x.shape), nil
	case *nn.Conv2d:
		return b.conv(l, x)
	case *nn.BatchNorm:
		return b.batchNorm(l, x)
	case *nn.PReLU:
		return b.prelu(l, x)
	case *nn.ReLU:
		return b.node("Relu", "", []string{x.name}, x.shape), nil
	case *nn.Flatten:
		if len(x.shape) == 0 || x.shape[0] != int64(l.C) {
			return x, fmt.Errorf("onnx: export: %w: flatten of %d channels on %v", kernels.ErrShape, l.C, x.shape)
		}
		return b.node("Flatten", "", []string{x.name}, []int64{numel(x.shape)}, attrInt("axis", 1)), nil
	case *nn.Linear:
		return b.linear(l, x)
	case *nn.L2Norm:
		return b.l2Norm(l, x)
	}
	return x, fmt.Errorf("onnx: export: %w: layer %T", ErrUnsupported, l)
}

func (b *builder) conv(l *nn.Conv2d, x value) (value, error) {
	s := l.Shape
	if !slices.Equal(x.shape, []int64{int64(s.InC), int64(s.H), int64(s.W)}) {
		return x, fmt.Errorf("onnx: export: %s: %w: input %v, want [%d %d %d]", l.W.Name, kernels.ErrShape, x.shape, s.InC, s.H, s.W)
	}
	w, err := b.init(l.W, nil)
	if err != nil {
		return x, err
	}
	k, st, p := int64(s.K), int64(s.Stride), int64(s.Pad)
	return b.node("Conv", paramPrefix(l.W), []string{x.name, w}, []int64{int64(s.OutC), int64(l.OutH), int64(l.OutW)},
		attrInts("kernel_shape", k, k), attrInts("strides", st, st), attrInts("pads", p, p, p, p),
		attrInts("dilations", 1, 1), attrInt("group", 1)), nil
}

// batchNorm is BatchNormalization in inference mode: the running
// statistics.
func (b *builder) batchNorm(l *nn.BatchNorm, x value) (value, error) {
	if len(x.shape) == 0 || x.shape[0] != int64(l.C) || numel(x.shape) != int64(l.C*l.Spatial) {
		return x, fmt.Errorf("onnx: export: %s: %w: %d channels of %d on %v", l.Gamma.Name, kernels.ErrShape, l.C, l.Spatial, x.shape)
	}
	in := []string{x.name}
	for _, p := range []*nn.Param{l.Gamma, l.Beta, l.RunMean, l.RunVar} {
		name, err := b.init(p, []int64{int64(l.C)})
		if err != nil {
			return x, err
		}
		in = append(in, name)
	}
	return b.node("BatchNormalization", paramPrefix(l.Gamma), in, x.shape, attrFloat("epsilon", l.Eps)), nil
}

// prelu is PRelu with the slopes shaped C×1×…×1 to broadcast over the
// channel axis.
func (b *builder) prelu(l *nn.PReLU, x value) (value, error) {
	if len(x.shape) == 0 || x.shape[0] != int64(l.C) {
		return x, fmt.Errorf("onnx: export: %s: %w: %d channels on %v", l.Slope.Name, kernels.ErrShape, l.C, x.shape)
	}
	dims := []int64{int64(l.C)}
	for range len(x.shape) - 1 {
		dims = append(dims, 1)
	}
	s, err := b.init(l.Slope, dims)
	if err != nil {
		return x, err
	}
	return b.node("PRelu", paramPrefix(l.Slope), []string{x.name, s}, x.shape), nil
}

// linear is Gemm(x, W, b) with transB: y = x·Wᵀ + b.
func (b *builder) linear(l *nn.Linear, x value) (value, error) {
	if !slices.Equal(x.shape, []int64{int64(l.In)}) {
		return x, fmt.Errorf("onnx: export: %s: %w: input %v, want [%d]", l.W.Name, kernels.ErrShape, x.shape, l.In)
	}
	w, err := b.init(l.W, nil)
	if err != nil {
		return x, err
	}
	bias, err := b.init(l.B, nil)
	if err != nil {
		return x, err
	}
	return b.node("Gemm", paramPrefix(l.W), []string{x.name, w, bias}, []int64{int64(l.Out)}, attrInt("transB", 1)), nil
}

// l2Norm is y = x / max(‖x‖₂, eps) per row, as the network's L2Norm
// (ONNX's LpNormalization has no eps).
func (b *builder) l2Norm(l *nn.L2Norm, x value) (value, error) {
	if !slices.Equal(x.shape, []int64{int64(l.Dim)}) {
		return x, fmt.Errorf("onnx: export: l2 norm: %w: input %v, want [%d]", kernels.ErrShape, x.shape, l.Dim)
	}
	norm := b.node("ReduceL2", "", []string{x.name}, []int64{1}, attrInts("axes", 1), attrInt("keepdims", 1))
	eps := b.unique(norm.name + ".eps")
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name: proto.String(eps), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: []float32{l.Eps},
	})
	clamped := b.node("Max", "", []string{norm.name, eps}, norm.shape)
	return b.node("Div", "", []string{x.name, clamped.name}, x.shape), nil
}

// node appends a node whose one output is named after the node: prefix
// when given and free, else the op type and a number.
func (b *builder) node(op, prefix string, in []string, shape []int64, attrs ...*onnxpb.AttributeProto) value {
	if prefix == "" {
		b.seq++
		prefix = fmt.Sprintf("%s_%d", op, b.seq)
	}
	name := b.unique(prefix)
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name: proto.String(name), OpType: proto.String(op), Input: in, Output: []string{name}, Attribute: attrs,
	})
	return value{name: name, shape: shape}
}

// unique returns name, or name with a number appended when it is taken,
// and marks it taken.
func (b *builder) unique(name string) string {
	n := name
	for i := 2; b.used[n]; i++ {
		n = fmt.Sprintf("%s_%d", name, i)
	}
	b.used[n] = true
	return n
}

// rename makes from, a node output, the value to.
func (b *builder) rename(from, to string) {
	for _, n := range b.g.Node {
		for i := range n.Output {
			if n.Output[i] == from {
				n.Output[i] = to
			}
		}
		for i := range n.Input {
			if n.Input[i] == from {
				n.Input[i] = to
			}
		}
	}
}

// init adds p's values as an initializer named p.Name, of dims (nil: p's
// own shape).
func (b *builder) init(p *nn.Param, dims []int64) (string, error) {
	if dims == nil {
		for _, d := range p.Shape {
			dims = append(dims, int64(d))
		}
	}
	if numel(dims) != int64(p.N) || b.used[p.Name] {
		return "", fmt.Errorf("onnx: export: tensor %q: %w: %d values as %v (or the name twice)", p.Name, kernels.ErrShape, p.N, dims)
	}
	host := make([]float32, p.N)
	if err := b.be.Download(host, p.W); err != nil {
		return "", fmt.Errorf("onnx: export: tensor %q: %w", p.Name, err)
	}
	b.used[p.Name] = true
	b.g.Initializer = append(b.g.Initializer, &onnxpb.TensorProto{
		Name: proto.String(p.Name), Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: host,
	})
	return p.Name, nil
}

// paramPrefix is the layer's name taken from its parameter's:
// "stem.conv" for "stem.conv.weight".
func paramPrefix(p *nn.Param) string {
	if i := strings.LastIndexByte(p.Name, '.'); i > 0 {
		return p.Name[:i]
	}
	return p.Name
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// valueInfo describes a float32 tensor of N samples of shape.
func valueInfo(name string, shape []int64) *onnxpb.ValueInfoProto {
	dims := []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: BatchDim}}}
	for _, d := range shape {
		dims = append(dims, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Shape:    &onnxpb.TensorShapeProto{Dim: dims},
		}}},
	}
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}
