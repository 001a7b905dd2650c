package onnx

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/internal/onnx/onnxpb"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/nn"
)

func newBackend(t *testing.T) kernels.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return be
}

// roundTrip exports net, encodes the model and parses it back with the
// generated types, as a runtime would read the file.
func roundTrip(t *testing.T, be kernels.Backend, net nn.Net) *onnxpb.ModelProto {
	t.Helper()
	m, err := Export(context.Background(), be, net, Options{ProducerVersion: "test", Metadata: map[string]string{"b": "2", "a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := Marshal(m); err != nil || !bytes.Equal(again, b) {
		t.Errorf("Marshal is not deterministic (%v)", err)
	}
	var got onnxpb.ModelProto
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

// shapeOf returns the dimensions of a tensor value, -1 for a symbolic one
// named BatchDim.
func shapeOf(t *testing.T, v *onnxpb.ValueInfoProto) []int64 {
	t.Helper()
	tt := v.GetType().GetTensorType()
	if tt.GetElemType() != int32(onnxpb.TensorProto_FLOAT) {
		t.Errorf("%s: element type %d, want float", v.GetName(), tt.GetElemType())
	}
	var dims []int64
	for _, d := range tt.GetShape().GetDim() {
		switch {
		case d.GetDimParam() == BatchDim:
			dims = append(dims, -1)
		case d.GetDimParam() != "":
			t.Errorf("%s: symbolic dimension %q", v.GetName(), d.GetDimParam())
		default:
			dims = append(dims, d.GetDimValue())
		}
	}
	return dims
}

// checkGraph checks the model against the net: header, input and output,
// one initializer per tensor of the net with its values, nodes in
// topological order, and the count of each op type.
func checkGraph(t *testing.T, be kernels.Backend, net nn.Net, m *onnxpb.ModelProto, in []int64, ops map[string]int) {
	t.Helper()
	if m.GetIrVersion() != IRVersion || len(m.GetOpsetImport()) != 1 || m.GetOpsetImport()[0].GetDomain() != "" || m.GetOpsetImport()[0].GetVersion() != 17 {
		t.Errorf("IR %d, opsets %v: want IR 8, opset 17 of the default domain", m.GetIrVersion(), m.GetOpsetImport())
	}
	if m.GetProducerName() != "ffc" || len(m.GetMetadataProps()) != 2 || m.GetMetadataProps()[0].GetKey() != "a" {
		t.Errorf("producer %q, metadata %v", m.GetProducerName(), m.GetMetadataProps())
	}
	g := m.GetGraph()
	if len(g.GetInput()) != 1 || g.GetInput()[0].GetName() != "input" || !slices.Equal(shapeOf(t, g.GetInput()[0]), append([]int64{-1}, in...)) {
		t.Errorf("inputs %v, want input of N×%v", g.GetInput(), in)
	}
	if len(g.GetOutput()) != 1 || g.GetOutput()[0].GetName() != "embedding" || !slices.Equal(shapeOf(t, g.GetOutput()[0]), []int64{-1, int64(net.Dim())}) {
		t.Errorf("outputs %v, want embedding of N×%d", g.GetOutput(), net.Dim())
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, x := range g.GetInitializer() {
		n := int64(1)
		for _, d := range x.GetDims() {
			n *= d
		}
		if x.GetDataType() != int32(onnxpb.TensorProto_FLOAT) || int64(len(x.GetFloatData())) != n || inits[x.GetName()] != nil {
			t.Errorf("initializer %s: type %d, dims %v, %d values (or twice)", x.GetName(), x.GetDataType(), x.GetDims(), len(x.GetFloatData()))
		}
		inits[x.GetName()] = x
	}
	for _, p := range nn.Tensors(net) {
		x := inits[p.Name]
		want := make([]float32, p.N)
		if err := be.Download(want, p.W); err != nil {
			t.Fatal(err)
		}
		if x == nil || !slices.Equal(x.GetFloatData(), want) {
			t.Errorf("tensor %s: initializer %v does not hold its %d values", p.Name, x.GetDims(), p.N)
		}
		delete(inits, p.Name)
	}
	if len(inits) != 1 || inits[slices.Collect(maps.Keys(inits))[0]].GetFloatData()[0] != 1e-12 {
		t.Errorf("initializers beyond the net's tensors: %v, want the L2 eps only", slices.Collect(maps.Keys(inits)))
	}
	defined := map[string]bool{"input": true}
	for _, x := range g.GetInitializer() {
		defined[x.GetName()] = true
	}
	got := map[string]int{}
	for _, n := range g.GetNode() {
		got[n.GetOpType()]++
		for _, v := range n.GetInput() {
			if !defined[v] {
				t.Errorf("node %s (%s) reads %q before it is defined", n.GetName(), n.GetOpType(), v)
			}
		}
		for _, v := range n.GetOutput() {
			if defined[v] {
				t.Errorf("node %s defines %q again", n.GetName(), v)
			}
			defined[v] = true
		}
	}
	if last := g.GetNode()[len(g.GetNode())-1]; last.GetOpType() != "Div" || !slices.Equal(last.GetOutput(), []string{"embedding"}) {
		t.Errorf("last node %s %v, want Div → embedding", last.GetOpType(), last.GetOutput())
	}
	if !maps.Equal(got, ops) {
		t.Errorf("op types %v, want %v", got, ops)
	}
}

// TestExportIRResNetGraph exports a small IR-ResNet (2 stages of 1 and 2
// blocks) and checks the parsed model's graph.
func TestExportIRResNetGraph(t *testing.T) {
	be := newBackend(t)
	net, err := nn.NewIRResNet(be, nn.IRResNetOptions{Dim: 8, MaxBatch: 2, Seed: 3, InSize: 8, Widths: []int{4, 6}, Blocks: []int{1, 2}, ForwardOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m := roundTrip(t, be, net)
	// stem conv + down conv + 2 per block; stem, down, 3 per block, bn2d
	// and bn1d; stem, down and 1 per block.
	checkGraph(t, be, net, m, []int64{1, 8, 8}, map[string]int{
		"Conv": 2 + 2*3, "BatchNormalization": 2 + 3*3 + 2, "PRelu": 2 + 3, "Add": 3,
		"Flatten": 1, "Gemm": 1, "ReduceL2": 1, "Max": 1, "Div": 1,
	})
	for _, n := range m.GetGraph().GetNode() {
		if n.GetName() == "stage2.down.conv" {
			attrs := map[string][]int64{}
			for _, a := range n.GetAttribute() {
				attrs[a.GetName()] = append(a.GetInts(), a.GetI())
			}
			if !slices.Equal(attrs["strides"], []int64{2, 2, 0}) || !slices.Equal(attrs["pads"], []int64{1, 1, 1, 1, 0}) || !slices.Equal(attrs["kernel_shape"], []int64{3, 3, 0}) {
				t.Errorf("stage2.down.conv attributes %v: want 3×3, stride 2, pad 1", attrs)
			}
		}
	}
	for _, x := range m.GetGraph().GetInitializer() {
		if x.GetName() == "stage2.block1.prelu.weight" && !slices.Equal(x.GetDims(), []int64{6, 1, 1}) {
			t.Errorf("PReLU slope dims %v, want [6 1 1] to broadcast over N×C×H×W", x.GetDims())
		}
	}
}

// TestExportMLPGraph exports an MLP and checks the parsed model's graph.
func TestExportMLPGraph(t *testing.T) {
	be := newBackend(t)
	net, err := nn.NewMLP(be, nn.MLPOptions{In: 12, Hidden: []int{6, 5}, Dim: 4, MaxBatch: 2, Seed: 3, ForwardOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m := roundTrip(t, be, net)
	checkGraph(t, be, net, m, []int64{12}, map[string]int{
		"Gemm": 3, "BatchNormalization": 3, "PRelu": 2, "ReduceL2": 1, "Max": 1, "Div": 1,
	})
}

// fakeNet is a Net the exporter does not know.
type fakeNet struct{ nn.Net }

func TestExportRefuses(t *testing.T) {
	be := newBackend(t)
	if _, err := Export(context.Background(), be, fakeNet{}, Options{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown network: %v, want ErrUnsupported", err)
	}
	net, err := nn.NewMLP(be, nn.MLPOptions{In: 3, Dim: 2, MaxBatch: 2, ForwardOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Export(ctx, be, net, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}
