package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// Head names.
const (
	HeadFFC = "ffc"
	HeadFC  = "fc"
	HeadPFC = "pfc"
)

// Options configures an Engine.
type Options struct {
	// Backbone is "irresnet" (1×32×32 images, the yardstick) or "mlp"
	// (feature vectors of InLen floats).
	Backbone string
	// InLen is the input length for the mlp backbone; irresnet takes 1024.
	InLen int
	// Hidden layer widths of the mlp backbone.
	Hidden []int
	// Dim is the embedding dimension D (512 default, 128 for quick runs).
	Dim int
	// Head is ffc, fc or pfc.
	Head string
	// Batch is B: an FFC step takes B id pairs and B instances; an FC or
	// PFC step takes B instances.
	Batch int
	// Pool is Q, the FFC pool's slots.
	Pool int
	// TopK for fresh IDs (0: the reference's default for Q).
	TopK int
	// Classes is N for the FC and PFC heads (labels must be in [0, N)).
	Classes int
	// PFCRate is Partial FC's sample rate (default 0.1).
	PFCRate float64
	// Margin of the softmax heads.
	Margin kernels.Margin
	// EMA is the gallery's moving-average momentum m (default 0.99).
	EMA float32
	// SGD and Schedule drive the probe's (and FC weights') updates.
	SGD      nn.SGD
	Schedule nn.Schedule
	Seed     uint64
	// Init is the backbone's weight initialization (nn.Config.Init).
	Init string
	Log  *slog.Logger
	// KeepFeatures copies the gallery features of the permanent FFC pass
	// to the host (StepStats.Features), for publishing the centers.
	KeepFeatures bool
	// ProbeOnly builds the probe network alone, for evaluation: no head,
	// no gallery, no pool (Head, Pool and Classes are not checked); the
	// engine embeds but does not train.
	ProbeOnly bool
}

// classifier is what the FC and PFC heads provide.
type classifier = centers.Head

// Engine holds the networks, the head and the optimizer state, and runs
// training steps.
type Engine struct {
	be      kernels.Backend
	opts    Options
	probe   nn.Net
	gallery nn.Net // FFC only
	pool    *centers.Pool
	ffc     *centers.FFC
	cls     classifier

	maxRows int
	x, y    kernels.Buffer // inputs, maxRows×InLen
	g       kernels.Buffer // gallery features kept across the probe pass
	dp      kernels.Buffer
	step    int
}

// StepStats reports one step.
type StepStats struct {
	Step int
	LR   float64
	// Loss is the total loss (FFC: L1 + L2).
	Loss float64
	// L1, L2 are the FFC passes' losses (L1: permanent insert; L2: rolled
	// back).
	L1, L2 centers.FFCLoss
	// Changes are the pool changes of the permanent pass (FFC only).
	Changes []centers.Change
	// PoolLen is the number of labels in the pool after the step.
	PoolLen int
	// Features are the n×D gallery features written by the permanent
	// pass, row Change.Index for each change (with Options.KeepFeatures).
	Features []float32
}

// ErrSkipped wraps the reason a step was abandoned with the last good
// state kept (a non-finite loss or gradient).
var ErrSkipped = errors.New("step skipped, last good state kept")

// New builds an engine on be.
func New(be kernels.Backend, opts Options) (*Engine, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	e := &Engine{be: be, opts: opts}
	e.maxRows = opts.Batch
	if opts.Head == HeadFFC {
		e.maxRows = opts.Batch + (opts.Batch+1)/2 // [a; h1] is B + B/2 rows
	}
	var err error
	fail := func(err error) (*Engine, error) { return nil, errors.Join(err, e.Close()) }
	if e.probe, err = newNet(be, opts, e.maxRows, opts.Seed, opts.ProbeOnly); err != nil {
		return fail(err)
	}
	in := e.probe.InLen()
	for _, b := range []*kernels.Buffer{&e.x, &e.y} {
		if *b, err = be.Alloc(e.maxRows * in); err != nil {
			return fail(fmt.Errorf("engine: %w", err))
		}
	}
	for _, b := range []*kernels.Buffer{&e.g, &e.dp} {
		if *b, err = be.Alloc(e.maxRows * opts.Dim); err != nil {
			return fail(fmt.Errorf("engine: %w", err))
		}
	}
	switch {
	case opts.ProbeOnly:
	case opts.Head == HeadFFC:
		// The gallery only runs forward: no gradients, momentum or column
		// buffers kept for a backward pass.
		if e.gallery, err = newNet(be, opts, e.maxRows, opts.Seed, true); err != nil {
			return fail(err)
		}
		if err := nn.CopyParams(be, nn.Tensors(e.gallery), nn.Tensors(e.probe)); err != nil {
			return fail(fmt.Errorf("engine: gallery ← probe: %w", err))
		}
		// Assigned only on success: a failed constructor's nil pointer must
		// not reach Close.
		pool, err := centers.NewPool(be, centers.PoolOptions{Slots: opts.Pool, Dim: opts.Dim, MaxBatch: e.maxRows, Seed: opts.Seed + 1})
		if err != nil {
			return fail(err)
		}
		e.pool = pool
		ffc, err := centers.NewFFC(be, e.pool, centers.FFCOptions{Margin: opts.Margin, TopK: opts.TopK, MaxBatch: e.maxRows})
		if err != nil {
			return fail(err)
		}
		e.ffc = ffc
	default:
		cls, err := newClassifier(be, opts, e.maxRows)
		if err != nil {
			return fail(err)
		}
		e.cls = cls
	}
	return e, nil
}

func (o *Options) defaults() error {
	if o.Backbone == "" {
		o.Backbone = "irresnet"
	}
	if o.Dim == 0 {
		o.Dim = 512
	}
	if o.Head == "" {
		o.Head = HeadFFC
	}
	if o.EMA == 0 {
		o.EMA = 0.99
	}
	if o.PFCRate == 0 {
		o.PFCRate = 0.1
	}
	if o.Margin.S == 0 {
		o.Margin = kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Batch < 2 {
		return fmt.Errorf("engine: batch %d: want at least 2", o.Batch)
	}
	if o.ProbeOnly {
		return nil
	}
	switch o.Head {
	case HeadFFC:
		// Each pass writes 1.5·B gallery features: a smaller pool evicts
		// IDs within the step that inserted them.
		writes := o.Batch + (o.Batch+1)/2
		if o.Pool < writes {
			return fmt.Errorf("engine: pool of %d slots is below the %d gallery features one pass writes (1.5·batch %d): IDs would be evicted by the step that inserts them; use --pool ≥ %d (3·batch = %d recommended)", o.Pool, writes, o.Batch, writes, 3*o.Batch)
		}
		if o.Pool < 3*o.Batch {
			o.Log.Warn("pool is small for the batch: IDs stay in it for under two steps", "pool", o.Pool, "batch", o.Batch, "recommended_min", 3*o.Batch)
		}
	case HeadFC, HeadPFC:
		if o.Classes <= 0 {
			return fmt.Errorf("engine: head %s needs the number of classes", o.Head)
		}
	default:
		return fmt.Errorf("engine: unknown head %q: want ffc, fc or pfc", o.Head)
	}
	return nil
}

func newNet(be kernels.Backend, opts Options, maxBatch int, seed uint64, forwardOnly bool) (nn.Net, error) {
	// The constructors return a nil pointer with their error: return a nil
	// interface then, never a typed nil.
	switch opts.Backbone {
	case "irresnet":
		n, err := nn.NewIRResNet(be, nn.IRResNetOptions{Dim: opts.Dim, MaxBatch: maxBatch, Seed: seed, Init: opts.Init, ForwardOnly: forwardOnly})
		if err != nil {
			return nil, err
		}
		return n, nil
	case "mlp":
		if opts.InLen <= 0 {
			return nil, errors.New("engine: the mlp backbone needs the input length")
		}
		n, err := nn.NewMLP(be, nn.MLPOptions{In: opts.InLen, Hidden: opts.Hidden, Dim: opts.Dim, MaxBatch: maxBatch, Seed: seed, Init: opts.Init, ForwardOnly: forwardOnly})
		if err != nil {
			return nil, err
		}
		return n, nil
	}
	return nil, fmt.Errorf("engine: unknown backbone %q: want irresnet or mlp", opts.Backbone)
}

// Close frees everything on the backend.
func (e *Engine) Close() error {
	var errs []error
	if e.ffc != nil {
		errs = append(errs, e.ffc.Close())
	}
	if e.pool != nil {
		errs = append(errs, e.pool.Close())
	}
	if e.cls != nil {
		errs = append(errs, e.cls.Close())
	}
	for _, b := range []kernels.Buffer{e.x, e.y, e.g, e.dp} {
		if b != nil {
			errs = append(errs, e.be.Free(b))
		}
	}
	return errors.Join(errs...)
}

// Probe is the trained network (for evaluation and checkpoints).
func (e *Engine) Probe() nn.Net { return e.probe }

// Gallery is the moving-average network (nil for FC and PFC).
func (e *Engine) Gallery() nn.Net { return e.gallery }

// Pool is the FFC pool (nil for FC and PFC).
func (e *Engine) Pool() *centers.Pool { return e.pool }

// StepCount is the number of steps taken.
func (e *Engine) StepCount() int { return e.step }

// Batch is the configured B; InLen the floats per input.
func (e *Engine) Batch() int { return e.opts.Batch }

// InLen is the number of floats per input sample.
func (e *Engine) InLen() int { return e.probe.InLen() }

// upload copies rows of inputs into dst after checking their size.
func (e *Engine) upload(dst kernels.Buffer, x []float32, labels []int64, what string) error {
	in := e.probe.InLen()
	if len(labels) == 0 {
		return fmt.Errorf("engine: %s: empty batch", what)
	}
	if len(labels) > e.maxRows {
		return fmt.Errorf("engine: %s: %d rows exceed the %d a step holds", what, len(labels), e.maxRows)
	}
	if len(x) != len(labels)*in {
		return fmt.Errorf("engine: %s: %d floats for %d samples of %d (wrong image size?)", what, len(x), len(labels), in)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("engine: %s: input %d of sample %d is %v: %w", what, i%in, i/in, v, ErrSkipped)
		}
	}
	return e.be.Upload(dst, x)
}

// StepFFC runs one FFC iteration on the dual batch x = [a1; h1] with
// labels xl and y = [a2; h2] with labels yl (same length):
//
//  1. the gallery's moving average θg ← m·θg + (1−m)·θp (from the second
//     step on; it starts as a copy of the probe);
//  2. L2: gallery(y) inserted into the pool temporarily, the loss of
//     probe(x) against it, then the pool, LRU and pos bits rolled back
//     exactly;
//  3. L1: gallery(x) inserted permanently, the loss of probe(y);
//  4. backward of L1 + L2 into the probe and one SGD step.
//
// A non-finite loss or gradient abandons the step: the pool insert of step
// 3 is rolled back, gradients are dropped and ErrSkipped is returned.
func (e *Engine) StepFFC(x []float32, xl []int64, y []float32, yl []int64) (StepStats, error) {
	st := StepStats{Step: e.step}
	if e.ffc == nil {
		return st, fmt.Errorf("engine: StepFFC on a %s engine (probe only: %v)", e.opts.Head, e.opts.ProbeOnly)
	}
	if len(xl) != len(yl) {
		return st, fmt.Errorf("engine: dual batch halves differ: %d and %d rows", len(xl), len(yl))
	}
	if err := e.upload(e.x, x, xl, "x"); err != nil {
		return st, err
	}
	if err := e.upload(e.y, y, yl, "y"); err != nil {
		return st, err
	}
	if e.step > 0 {
		if err := nn.MovingAverage(e.be, e.gallery.Params(), e.probe.Params(), e.opts.EMA); err != nil {
			return st, fmt.Errorf("engine: moving average: %w", err)
		}
	}
	if err := nn.ZeroGrads(e.be, e.probe.Params()); err != nil {
		return st, err
	}
	n := len(xl)
	var err error
	if st.L2, err = e.passTemporary(n, yl, xl); err != nil {
		return st, err
	}
	if st.L1, st.Changes, err = e.passPermanent(n, xl, yl); err != nil {
		return st, err
	}
	if e.opts.KeepFeatures {
		if st.Features, err = e.features(n); err != nil {
			return st, err
		}
	}
	st.Loss = st.L1.Total + st.L2.Total
	st.LR = e.opts.Schedule.LR(e.step)
	if err := e.opts.SGD.Step(e.be, e.probe.Params(), float32(st.LR)); err != nil {
		return st, fmt.Errorf("engine: sgd: %w", err)
	}
	e.step++
	st.PoolLen = e.pool.Len()
	return st, nil
}

// galleryInto runs the gallery on the n inputs of z into e.g, kept while
// the probe runs.
func (e *Engine) galleryInto(z kernels.Buffer, n int) error {
	out, err := e.gallery.Forward(z, n, true)
	if err != nil {
		return fmt.Errorf("engine: gallery forward: %w", err)
	}
	return e.be.Copy(n*e.opts.Dim, out, e.g)
}

// probePass runs the probe on the n inputs of z, the FFC loss against the
// pool for labels, and the probe's backward (gradients accumulate).
func (e *Engine) probePass(z kernels.Buffer, n int, labels []int64) (centers.FFCLoss, error) {
	p, err := e.probe.Forward(z, n, true)
	if err != nil {
		return centers.FFCLoss{}, fmt.Errorf("engine: probe forward: %w", err)
	}
	l, err := e.ffc.Loss(p, labels, e.dp)
	if err != nil {
		return l, err
	}
	if err := e.probe.Backward(e.dp); err != nil {
		return l, fmt.Errorf("engine: probe backward: %w", err)
	}
	return l, nil
}

// passTemporary is L2: gallery(y) inserted into the pool, the loss of
// probe(x) against it, then the pool, LRU and pos bits rolled back
// exactly.
func (e *Engine) passTemporary(n int, yl, xl []int64) (centers.FFCLoss, error) {
	if err := e.galleryInto(e.y, n); err != nil {
		return centers.FFCLoss{}, err
	}
	if err := e.pool.BeginPass(); err != nil {
		return centers.FFCLoss{}, err
	}
	e.pool.Mark()
	if _, err := e.pool.Insert(e.g, yl); err != nil {
		return centers.FFCLoss{}, err
	}
	l2, err2 := e.probePass(e.x, n, xl)
	if err := e.pool.Rollback(); err != nil {
		return l2, errors.Join(err2, err)
	}
	if err2 != nil {
		return l2, e.skip(err2)
	}
	return l2, nil
}

// passPermanent is L1: gallery(x) inserted into the pool for good, the
// loss of probe(y); a non-finite loss or gradient rolls the insert back
// and abandons the step.
func (e *Engine) passPermanent(n int, xl, yl []int64) (centers.FFCLoss, []centers.Change, error) {
	if err := e.galleryInto(e.x, n); err != nil {
		return centers.FFCLoss{}, nil, err
	}
	if err := e.pool.BeginPass(); err != nil {
		return centers.FFCLoss{}, nil, err
	}
	e.pool.Mark()
	changes, err := e.pool.Insert(e.g, xl)
	if err != nil {
		return centers.FFCLoss{}, nil, err
	}
	l1, err1 := e.probePass(e.y, n, yl)
	if err1 == nil {
		err1 = e.gradsFinite()
	}
	if err1 != nil {
		if err := e.pool.Rollback(); err != nil {
			return l1, nil, errors.Join(err1, err)
		}
		return l1, nil, e.skip(err1)
	}
	e.pool.Commit()
	return l1, changes, nil
}

// features copies the n×D gallery features of the permanent pass to the
// host.
func (e *Engine) features(n int) ([]float32, error) {
	out := make([]float32, n*e.opts.Dim)
	g, err := e.be.View(e.g, 0, n*e.opts.Dim)
	if err != nil {
		return nil, err
	}
	if err := e.be.Download(out, g); err != nil {
		return nil, fmt.Errorf("engine: features: %w", err)
	}
	return out, nil
}

// StepPlain runs one ordinary step of the FC or PFC head on x with labels.
func (e *Engine) StepPlain(x []float32, labels []int64) (StepStats, error) {
	st := StepStats{Step: e.step}
	if e.cls == nil {
		return st, fmt.Errorf("engine: StepPlain on a %s engine", e.opts.Head)
	}
	if err := e.upload(e.x, x, labels, "x"); err != nil {
		return st, err
	}
	if err := nn.ZeroGrads(e.be, e.probe.Params()); err != nil {
		return st, err
	}
	p, err := e.probe.Forward(e.x, len(labels), true)
	if err != nil {
		return st, fmt.Errorf("engine: probe forward: %w", err)
	}
	hl, err := e.cls.Loss(p, labels, e.dp)
	if err != nil {
		return st, e.skip(err)
	}
	if err := e.probe.Backward(e.dp); err != nil {
		return st, fmt.Errorf("engine: probe backward: %w", err)
	}
	if err := e.gradsFinite(); err != nil {
		return st, e.skip(err)
	}
	st.Loss = hl.Loss
	st.LR = e.opts.Schedule.LR(e.step)
	if err := e.cls.Step(float32(st.LR)); err != nil {
		return st, fmt.Errorf("engine: head step: %w", err)
	}
	if err := e.opts.SGD.Step(e.be, e.probe.Params(), float32(st.LR)); err != nil {
		return st, fmt.Errorf("engine: sgd: %w", err)
	}
	e.step++
	return st, nil
}

// skip turns a non-finite failure into ErrSkipped and passes others on.
func (e *Engine) skip(err error) error {
	if errors.Is(err, centers.ErrNonFinite) || errors.Is(err, ErrSkipped) {
		return fmt.Errorf("engine: step %d: %w: %w", e.step, ErrSkipped, err)
	}
	return err
}

// gradsFinite checks every probe gradient for NaN or Inf, with one wait on
// a backend that checks several buffers at once (kernels.FiniteChecker).
func (e *Engine) gradsFinite() error {
	params := e.probe.Params()
	ns, gs := make([]int, len(params)), make([]kernels.Buffer, len(params))
	for k, p := range params {
		ns[k], gs[k] = p.N, p.G
	}
	j, err := kernels.FirstNonFinite(e.be, ns, gs)
	if err != nil {
		return err
	}
	if j >= 0 {
		return fmt.Errorf("gradient of %s: %w", params[j].Name, centers.ErrNonFinite)
	}
	return nil
}

// Embed runs the probe in eval mode on n inputs and copies the n×D
// embeddings to dst.
func (e *Engine) Embed(x []float32, n int, dst []float32) error {
	if n == 0 {
		return nil
	}
	if n > e.maxRows {
		return fmt.Errorf("engine: embed %d rows: at most %d at a time", n, e.maxRows)
	}
	if len(x) != n*e.probe.InLen() || len(dst) < n*e.opts.Dim {
		return fmt.Errorf("engine: embed: %d floats for %d inputs of %d", len(x), n, e.probe.InLen())
	}
	if err := e.be.Upload(e.x, x); err != nil {
		return err
	}
	out, err := e.probe.Forward(e.x, n, false)
	if err != nil {
		return fmt.Errorf("engine: embed: %w", err)
	}
	view, err := e.be.View(out, 0, n*e.opts.Dim)
	if err != nil {
		return err
	}
	return e.be.Download(dst[:n*e.opts.Dim], view)
}

// MaxRows is the most inputs one Forward takes.
func (e *Engine) MaxRows() int { return e.maxRows }
