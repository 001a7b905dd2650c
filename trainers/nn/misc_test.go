package nn

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/kernels"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestBatchNormEvalUsesRunningStats(t *testing.T) {
	be := newBackend(t)
	const n, ch, hw = 16, 3, 64 // M = 1024 per channel
	l, err := NewBatchNorm(be, Config{MaxBatch: n}, "bn", ch, hw, kernels.CNHW)
	must(t, err)
	r := rand.New(rand.NewPCG(3, 3))
	x := shifted(r, n*ch*hw)
	xb := upload(t, be, x)
	maxDiff := func(a, b []float32) float64 {
		var d float64
		for i := range a {
			d = max(d, math.Abs(float64(a[i]-b[i])))
		}
		return d
	}
	run := func(train bool) []float32 {
		y, err := l.Forward(xb, n, train)
		must(t, err)
		return download(t, be, y, len(x))
	}
	// Fresh running stats (0, 1): eval is the identity.
	if d := maxDiff(run(false), x); d > 1e-4 {
		t.Errorf("eval with initial stats differs from x by %v", d)
	}
	train := run(true)
	if d := maxDiff(run(false), train); d < 0.1 {
		t.Errorf("eval after one update equals train output (diff %v)", d)
	}
	for range 200 {
		run(true)
	}
	// Converged: the running variance is the unbiased one (×M/(M−1)), so
	// eval matches train to about 1/(2M).
	if d := maxDiff(run(false), train); d > 2e-3 {
		t.Errorf("eval after convergence differs from train by %v", d)
	}
	rm := download(t, be, l.RunMean.W, ch)
	for k := range ch {
		var mean float64
		for _, v := range x[k*n*hw : (k+1)*n*hw] {
			mean += float64(v)
		}
		mean /= n * hw
		if math.Abs(float64(rm[k])-mean) > 1e-4 {
			t.Errorf("running mean %d = %v, batch mean %v", k, rm[k], mean)
		}
	}
}

func TestMovingAverageAndCopy(t *testing.T) {
	be := newBackend(t)
	o := MLPOptions{In: 6, Hidden: []int{5}, Dim: 4, MaxBatch: 3}
	o.Seed = 1
	probe, err := NewMLP(be, o)
	must(t, err)
	o.Seed, o.ForwardOnly = 2, true
	gallery, err := NewMLP(be, o)
	must(t, err)
	// Make the state differ too.
	x := upload(t, be, randn(rand.New(rand.NewPCG(1, 1)), 3*6, 1))
	_, err = probe.Forward(x, 3, true)
	must(t, err)

	must(t, CopyParams(be, Tensors(gallery), Tensors(probe)))
	for i, p := range Tensors(probe) {
		g := Tensors(gallery)[i]
		if a, b := download(t, be, p.W, p.N), download(t, be, g.W, g.N); !equal32(a, b) {
			t.Errorf("%s not copied", p.Name)
		}
	}

	// Move the probe, then average.
	const m = 0.9
	r := rand.New(rand.NewPCG(2, 2))
	var before, target [][]float32
	for i, p := range probe.Params() {
		before = append(before, download(t, be, gallery.Params()[i].W, p.N))
		v := randn(r, p.N, 1)
		must(t, be.Upload(p.W, v))
		target = append(target, v)
	}
	must(t, MovingAverage(be, gallery.Params(), probe.Params(), m))
	for i, p := range gallery.Params() {
		got := download(t, be, p.W, p.N)
		for j := range got {
			want := m*float64(before[i][j]) + (1-m)*float64(target[i][j])
			if math.Abs(float64(got[j])-want) > 1e-6 {
				t.Fatalf("%s[%d] = %v, want %v", p.Name, j, got[j], want)
			}
		}
	}

	other, err := NewMLP(be, MLPOptions{In: 6, Hidden: []int{7}, Dim: 4, MaxBatch: 3})
	must(t, err)
	for name, err := range map[string]error{
		"copy":    CopyParams(be, other.Params(), probe.Params()),
		"average": MovingAverage(be, other.Params(), probe.Params(), m),
		"count":   CopyParams(be, other.Params()[:2], probe.Params()),
	} {
		if !errors.Is(err, ErrArch) {
			t.Errorf("%s of mismatched nets: %v", name, err)
		}
	}
	if err := MovingAverage(be, gallery.Params(), probe.Params(), 1.5); err == nil {
		t.Error("m = 1.5 accepted")
	}
}

func equal32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestSchedule(t *testing.T) {
	step := Schedule{Kind: "step", BaseLR: 0.1, WarmupSteps: 4, Milestones: []int{10, 20}}
	poly := Schedule{Kind: "poly", BaseLR: 0.1, WarmupSteps: 10, TotalSteps: 110, Power: 1}
	poly2 := Schedule{Kind: "poly", BaseLR: 0.1, TotalSteps: 100}
	cosine := Schedule{Kind: "cosine", BaseLR: 0.1, WarmupSteps: 10, TotalSteps: 110}
	cases := []struct {
		s    Schedule
		step int
		want float64
	}{
		{step, 0, 0.025}, {step, 1, 0.05}, {step, 3, 0.1}, {step, 4, 0.1}, {step, 9, 0.1},
		{step, 10, 0.01}, {step, 19, 0.01}, {step, 20, 0.001}, {step, 1000, 0.001},
		{Schedule{Kind: "step", BaseLR: 1, Milestones: []int{2}, Gamma: 0.5}, 2, 0.5},
		{poly, 0, 0.01}, {poly, 9, 0.1}, {poly, 10, 0.1}, {poly, 60, 0.05}, {poly, 109, 0.001},
		{poly, 110, 0}, {poly, 500, 0},
		{poly2, 0, 0.1}, {poly2, 50, 0.025}, {poly2, 100, 0},
		{Schedule{BaseLR: 0.3}, 77, 0.3},
		{cosine, 0, 0.01}, {cosine, 9, 0.1}, {cosine, 10, 0.1}, {cosine, 35, 0.05 * (1 + math.Sqrt2/2)},
		{cosine, 60, 0.05}, {cosine, 85, 0.05 * (1 - math.Sqrt2/2)}, {cosine, 110, 0}, {cosine, 999, 0},
	}
	for _, c := range cases {
		if err := c.s.Validate(); err != nil {
			t.Fatalf("%+v: %v", c.s, err)
		}
		if got := c.s.LR(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s %+v step %d: lr %v, want %v", c.s.Kind, c.s, c.step, got, c.want)
		}
	}
	// Warm-up is linear: equal increments.
	d := step.LR(1) - step.LR(0)
	for s := 1; s < step.WarmupSteps; s++ {
		if math.Abs(step.LR(s)-step.LR(s-1)-d) > 1e-12 {
			t.Errorf("warm-up not linear at %d", s)
		}
	}
	for _, bad := range []Schedule{
		{Kind: "cosine", BaseLR: 0.1},
		{Kind: "poly", BaseLR: 0.1, WarmupSteps: 10, TotalSteps: 10},
		{Kind: "step", BaseLR: 0.1, Milestones: []int{5, 3}},
		{Kind: "step", BaseLR: -1},
		{Kind: "step", BaseLR: math.NaN()},
		{BaseLR: 0.1, WarmupSteps: -1},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestSGDDecayAll: weight decay reaches a parameter without Param.Decay
// (a BatchNorm scale, a bias) only with DecayAll.
func TestSGDDecayAll(t *testing.T) {
	be := newBackend(t)
	for _, c := range []struct {
		all  bool
		want float32
	}{{false, 1}, {true, 1 - 0.1*0.5}} {
		p, err := newParam(be, Config{MaxBatch: 1}, "bn.weight", []int{3}, false, initOne, 0, 1)
		must(t, err)
		must(t, SGD{WeightDecay: 0.5, DecayAll: c.all}.Step(be, []*Param{p}, 0.1))
		for i, w := range download(t, be, p.W, 3) {
			if math.Abs(float64(w-c.want)) > 1e-7 {
				t.Errorf("DecayAll %v: w[%d] = %v, want %v", c.all, i, w, c.want)
			}
		}
	}
}

func TestSGDReducesQuadratic(t *testing.T) {
	be := newBackend(t)
	r := rand.New(rand.NewPCG(5, 5))
	const n = 50
	target := upload(t, be, randn(r, n, 1))
	for _, o := range []SGD{{Momentum: 0.9, Nesterov: true}, {Momentum: 0.9}, {}} {
		p, err := newParam(be, Config{MaxBatch: 1}, "w", []int{n}, false, initKaiming, 0, 1)
		must(t, err)
		loss := func() float64 {
			// G = W − target; L = ½‖G‖².
			must(t, be.Copy(n, p.W, p.G))
			must(t, be.Axpby(n, -1, target, 1, p.G))
			g := download(t, be, p.G, n)
			return dot64(g, g) / 2
		}
		l0 := loss()
		prev := l0
		for range 150 {
			must(t, o.Step(be, []*Param{p}, 0.1))
			prev = loss()
		}
		if !(prev < 1e-3*l0) {
			t.Errorf("%+v: loss %v → %v", o, l0, prev)
		}
	}
	// Weight decay applies only where Decay.
	for _, decay := range []bool{true, false} {
		p, err := newParam(be, Config{MaxBatch: 1}, "w", []int{4}, decay, initOne, 0, 0)
		must(t, err)
		must(t, SGD{WeightDecay: 0.5}.Step(be, []*Param{p}, 0.1))
		got := download(t, be, p.W, 4)[0]
		want := float32(1)
		if decay {
			want = 1 - 0.1*0.5
		}
		if math.Abs(float64(got-want)) > 1e-7 {
			t.Errorf("decay %v: w = %v, want %v", decay, got, want)
		}
	}
	fo := &Param{Name: "frozen", N: 1, W: target}
	if err := (SGD{}).Step(be, []*Param{fo}, 0.1); !errors.Is(err, ErrState) {
		t.Errorf("step without gradient buffer: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	be := newBackend(t)
	type mk func(seed uint64) Net
	nets := map[string]mk{
		"mlp": func(seed uint64) Net {
			n, err := NewMLP(be, MLPOptions{In: 6, Hidden: []int{5}, Dim: 4, MaxBatch: 4, Seed: seed})
			must(t, err)
			return n
		},
		"ir-resnet": func(seed uint64) Net {
			n, err := NewIRResNet(be, IRResNetOptions{Dim: 6, MaxBatch: 4, Seed: seed, InSize: 8, Widths: []int{2, 4}})
			must(t, err)
			return n
		},
	}
	for name, mk := range nets {
		t.Run(name, func(t *testing.T) {
			a, b := mk(1), mk(2)
			r := rand.New(rand.NewPCG(7, 7))
			x := upload(t, be, randn(r, 4*a.InLen(), 1))
			for range 3 { // move the running statistics
				_, err := a.Forward(x, 4, true)
				must(t, err)
			}
			var buf bytes.Buffer
			must(t, SaveParams(&buf, be, Tensors(a)))
			file := append([]byte(nil), buf.Bytes()...)
			must(t, LoadParams(bytes.NewReader(file), be, Tensors(b)))
			for _, train := range []bool{false, true} {
				ya, err := a.Forward(x, 4, train)
				must(t, err)
				oa := download(t, be, ya, 4*a.Dim())
				yb, err := b.Forward(x, 4, train)
				must(t, err)
				if ob := download(t, be, yb, 4*b.Dim()); !equal32(oa, ob) {
					t.Errorf("train %v: outputs differ after load", train)
				}
			}
			// Corruption is detected before anything is overwritten.
			c := mk(3)
			before := download(t, be, c.Params()[0].W, c.Params()[0].N)
			bad := append([]byte(nil), file...)
			bad[len(bad)-20] ^= 1
			if err := LoadParams(bytes.NewReader(bad), be, Tensors(c)); !errors.Is(err, ErrFormat) {
				t.Errorf("flipped bit: %v", err)
			}
			if err := LoadParams(bytes.NewReader(file[:len(file)-9]), be, Tensors(c)); !errors.Is(err, ErrFormat) {
				t.Errorf("truncated: %v", err)
			}
			if err := LoadParams(bytes.NewReader([]byte("not a file at all")), be, Tensors(c)); !errors.Is(err, ErrFormat) {
				t.Errorf("garbage: %v", err)
			}
			if !equal32(before, download(t, be, c.Params()[0].W, c.Params()[0].N)) {
				t.Error("failed load changed the weights")
			}
		})
	}
	// A different architecture is rejected, naming the difference.
	mlp := nets["mlp"](1)
	var buf bytes.Buffer
	must(t, SaveParams(&buf, be, Tensors(mlp)))
	wider, err := NewMLP(be, MLPOptions{In: 6, Hidden: []int{9}, Dim: 4, MaxBatch: 4})
	must(t, err)
	err = LoadParams(bytes.NewReader(buf.Bytes()), be, Tensors(wider))
	if !errors.Is(err, ErrArch) || !strings.Contains(err.Error(), "hidden1.fc.weight") {
		t.Errorf("wider MLP: %v", err)
	}
	res := nets["ir-resnet"](1)
	if err := LoadParams(bytes.NewReader(buf.Bytes()), be, Tensors(res)); !errors.Is(err, ErrArch) {
		t.Errorf("IR-ResNet from an MLP file: %v", err)
	}
	// Optimizer state round trip.
	for _, p := range mlp.Params() {
		must(t, be.Fill(p.N, 0.5, p.V))
	}
	buf.Reset()
	must(t, SaveParams(&buf, be, Momenta(mlp.Params())))
	fresh := nets["mlp"](4)
	must(t, LoadParams(&buf, be, Momenta(fresh.Params())))
	for _, p := range fresh.Params() {
		if v := download(t, be, p.V, p.N); v[0] != 0.5 {
			t.Fatalf("%s momentum %v", p.Name, v[0])
		}
	}
}

func TestBadInput(t *testing.T) {
	be := newBackend(t)
	net, err := NewIRResNet(be, IRResNetOptions{Dim: 4, MaxBatch: 2, InSize: 8, Widths: []int{2, 2}})
	must(t, err)
	x := upload(t, be, make([]float32, 3*net.InLen()))
	short := upload(t, be, make([]float32, net.InLen()))
	dy := upload(t, be, make([]float32, 2*net.Dim()))
	if err := net.Backward(dy); !errors.Is(err, ErrState) {
		t.Errorf("backward before forward: %v", err)
	}
	for _, c := range []struct {
		name string
		x    kernels.Buffer
		n    int
	}{
		{"n > MaxBatch", x, 3}, {"n = 0", x, 0}, {"n < 0", x, -1},
		{"short buffer", short, 2}, {"nil buffer", nil, 1},
	} {
		if _, err := net.Forward(c.x, c.n, true); !errors.Is(err, kernels.ErrShape) && !errors.Is(err, kernels.ErrBuffer) {
			t.Errorf("%s: %v", c.name, err)
		}
		if err := net.Backward(dy); !errors.Is(err, ErrState) {
			t.Errorf("backward after failed forward (%s): %v", c.name, err)
		}
	}
	_, err = net.Forward(x, 2, false)
	must(t, err)
	if err := net.Backward(dy); !errors.Is(err, ErrState) {
		t.Errorf("backward after eval forward: %v", err)
	}
	_, err = net.Forward(x, 2, true)
	must(t, err)
	if err := net.Backward(upload(t, be, make([]float32, 2*net.Dim()-1))); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("short dy: %v", err)
	}
	if err := net.Backward(nil); err == nil {
		t.Error("nil dy accepted")
	}
	must(t, net.Backward(dy))

	fo, err := NewMLP(be, MLPOptions{In: 3, Dim: 2, MaxBatch: 2, ForwardOnly: true})
	must(t, err)
	_, err = fo.Forward(upload(t, be, make([]float32, 6)), 2, true)
	must(t, err)
	if err := fo.Backward(dy); !errors.Is(err, ErrState) {
		t.Errorf("backward on forward-only net: %v", err)
	}
	for _, p := range fo.Params() {
		if p.G != nil || p.V != nil {
			t.Errorf("forward-only %s has gradient buffers", p.Name)
		}
	}

	for name, o := range map[string]IRResNetOptions{
		"no MaxBatch":     {},
		"odd size":        {MaxBatch: 1, InSize: 30},
		"bad width":       {MaxBatch: 1, Widths: []int{4, 0, 8}},
		"blocks mismatch": {MaxBatch: 1, Widths: []int{4, 8}, Blocks: []int{1}},
		"negative dim":    {MaxBatch: 1, Dim: -1},
	} {
		if _, err := NewIRResNet(be, o); err == nil {
			t.Errorf("IR-ResNet with %s accepted", name)
		}
	}
	for name, o := range map[string]MLPOptions{
		"no In":        {MaxBatch: 1},
		"zero hidden":  {In: 3, MaxBatch: 1, Hidden: []int{0}},
		"no MaxBatch":  {In: 3},
		"negative dim": {In: 3, MaxBatch: 1, Dim: -2},
	} {
		if _, err := NewMLP(be, o); err == nil {
			t.Errorf("MLP with %s accepted", name)
		}
	}
	if _, err := NewIRResNet(nil, IRResNetOptions{MaxBatch: 1}); err == nil {
		t.Error("nil backend accepted")
	}
	if _, err := NewSequential(be, Config{MaxBatch: 1}, "s"); err == nil {
		t.Error("empty Sequential accepted")
	}
	l1, err := NewLinear(be, Config{MaxBatch: 1}, "a", 3, 4)
	must(t, err)
	l2, err := NewLinear(be, Config{MaxBatch: 1}, "b", 5, 4)
	must(t, err)
	if _, err := NewSequential(be, Config{MaxBatch: 1}, "s", l1, l2); !errors.Is(err, kernels.ErrShape) {
		t.Errorf("mismatched Sequential: %v", err)
	}
}

// TestDeterministicInit checks that the same seed gives the same weights
// and another seed different ones.
func TestDeterministicInit(t *testing.T) {
	be := newBackend(t)
	o := IRResNetOptions{Dim: 8, MaxBatch: 1, InSize: 8, Widths: []int{2, 4}, Seed: 9}
	a, err := NewIRResNet(be, o)
	must(t, err)
	b, err := NewIRResNet(be, o)
	must(t, err)
	o.Seed = 10
	c, err := NewIRResNet(be, o)
	must(t, err)
	for i, p := range a.Params() {
		wa := download(t, be, p.W, p.N)
		if !equal32(wa, download(t, be, b.Params()[i].W, p.N)) {
			t.Errorf("%s differs with the same seed", p.Name)
		}
		if strings.HasSuffix(p.Name, "conv.weight") && equal32(wa, download(t, be, c.Params()[i].W, p.N)) {
			t.Errorf("%s equal with another seed", p.Name)
		}
	}
	// Kaiming normal: std ≈ sqrt(2/fanIn) for the big fc layer.
	fc, err := NewLinear(be, Config{MaxBatch: 1, Seed: 1}, "head.fc", 8192, 64)
	must(t, err)
	w := download(t, be, fc.W.W, fc.W.N)
	std := math.Sqrt(dot64(w, w) / float64(len(w)))
	if want := math.Sqrt(2.0 / 8192); math.Abs(std-want) > 0.01*want {
		t.Errorf("fc std %v, want %v", std, want)
	}
}

// TestInit: kaiming draws weights N(0, 2/fan_in) with zero biases;
// uniform (torch's default) draws weights and biases U(±1/√fan_in).
func TestInit(t *testing.T) {
	be := newBackend(t)
	const in, out = 256, 64
	for _, c := range []struct {
		init          string
		wantVar, bias float64 // weight variance; bias bound (0: all zero)
	}{
		{"", 2.0 / in, 0},
		{InitKaiming, 2.0 / in, 0},
		{InitUniform, 1.0 / (3 * in), 1 / math.Sqrt(in)},
	} {
		l, err := NewLinear(be, Config{MaxBatch: 1, Seed: 7, Init: c.init}, "fc", in, out)
		must(t, err)
		w := download(t, be, l.W.W, in*out)
		var mean, sq float64
		for _, x := range w {
			mean += float64(x)
			sq += float64(x) * float64(x)
			if c.init == InitUniform && math.Abs(float64(x)) > 1/math.Sqrt(in) {
				t.Fatalf("%s: weight %v outside ±1/√%d", c.init, x, in)
			}
		}
		mean /= float64(len(w))
		if v := sq/float64(len(w)) - mean*mean; math.Abs(v/c.wantVar-1) > 0.05 || math.Abs(mean) > 0.01*math.Sqrt(c.wantVar)*10 {
			t.Errorf("%q: weight mean %v, variance %v, want 0, %v", c.init, mean, v, c.wantVar)
		}
		nonzero := 0
		for _, x := range download(t, be, l.B.W, out) {
			if math.Abs(float64(x)) > c.bias+1e-7 {
				t.Errorf("%q: bias %v outside ±%v", c.init, x, c.bias)
			}
			if x != 0 {
				nonzero++
			}
		}
		if (c.bias == 0) != (nonzero == 0) {
			t.Errorf("%q: %d non-zero biases of %d", c.init, nonzero, out)
		}
	}
}
