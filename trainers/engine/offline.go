package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ffc-stream/ffc/trainers/nn"
)

// TrainOptions configures Train.
type TrainOptions struct {
	// Steps to run.
	Steps int
	// DualLoader: FFC takes B id pairs + B instances per step (x = [a1;
	// h1], y = [a2; h2]). Off: x and y are B instances each.
	DualLoader bool
	// IDOnly, with DualLoader, keeps the id loader alone: B id pairs a
	// step (x = a1, y = a2), no instances.
	IDOnly bool
	// LogEvery prints progress every this many steps (0: 10).
	LogEvery int
	// Progress receives the progress lines (nil: none).
	Progress io.Writer
	// CheckpointDir, when set, receives probe.params (and gallery.params
	// for FFC) every CheckpointEvery steps and at the end, written
	// atomically.
	CheckpointDir   string
	CheckpointEvery int
	// Snapshot, when set, is called after every SnapshotEvery-th step
	// with the number of steps done: the learning curve's checkpoints,
	// kept one per call (the caller writes them where it wants).
	Snapshot      func(steps int) error
	SnapshotEvery int
	Seed          uint64
}

// Point is one entry of the loss curve.
type Point struct {
	Step int     `json:"step"`
	Loss float64 `json:"loss"`
}

// TrainResult summarises a run.
type TrainResult struct {
	Steps      int           `json:"steps"`
	Skipped    int           `json:"skipped"`
	Images     int           `json:"images"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	ImagesPerS float64       `json:"images_per_s"`
	FirstLoss  float64       `json:"first_loss"` // mean over the first tenth of the steps
	LastLoss   float64       `json:"last_loss"`  // mean over the last tenth
	PoolLen    int           `json:"pool_len"`
	Curve      []Point       `json:"curve"`
}

// Train runs the engine for opts.Steps steps over the train split of ds.
// A skipped step (non-finite loss or gradient) is counted and reported,
// not fatal. It stops early, with the result so far, when ctx ends.
func Train(ctx context.Context, e *Engine, ds Images, opts TrainOptions) (TrainResult, error) {
	r, err := newOfflineRun(e, ds, opts)
	if err != nil {
		return TrainResult{}, err
	}
	for step := 0; step < r.opts.Steps && ctx.Err() == nil; step++ {
		st, err := r.step()
		if errors.Is(err, ErrSkipped) {
			r.res.Skipped++
			e.opts.Log.Warn("step skipped", "step", step, "err", err)
			continue
		}
		if err != nil {
			return r.res, fmt.Errorf("step %d: %w", step, err)
		}
		r.record(step, st)
		if opts.CheckpointDir != "" && opts.CheckpointEvery > 0 && r.res.Steps%opts.CheckpointEvery == 0 {
			if err := e.SaveCheckpoint(opts.CheckpointDir); err != nil {
				return r.res, err
			}
		}
		if opts.Snapshot != nil && opts.SnapshotEvery > 0 && r.res.Steps%opts.SnapshotEvery == 0 {
			if err := opts.Snapshot(r.res.Steps); err != nil {
				return r.res, fmt.Errorf("snapshot at step %d: %w", r.res.Steps, err)
			}
		}
	}
	r.finish()
	// Steps 0 writes the untrained network: the baseline's checkpoint.
	if opts.CheckpointDir != "" && (r.res.Steps > 0 || opts.Steps == 0) {
		if err := e.SaveCheckpoint(opts.CheckpointDir); err != nil {
			return r.res, err
		}
	}
	return r.res, ctx.Err()
}

// offlineRun is the state of one Train call.
type offlineRun struct {
	e    *Engine
	ds   Images
	opts TrainOptions
	ffc  bool

	idl        *IDLoader
	inl        *InstanceLoader
	pairs      []Pair
	inst       []Sample
	buf1, buf2 []byte
	batch      *DualBatch // FFC
	x          []float32  // FC and PFC
	xl         []int64

	res            TrainResult
	start, lastLog time.Time
	imagesAtLog    int
}

func newOfflineRun(e *Engine, ds Images, opts TrainOptions) (*offlineRun, error) {
	if opts.Steps < 0 {
		return nil, fmt.Errorf("steps %d: want ≥ 0", opts.Steps)
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = 10
	}
	ix := TrainIndex(ds)
	idl, err := NewIDLoader(ix, opts.Seed)
	if err != nil {
		return nil, err
	}
	inl, err := NewInstanceLoader(ix, opts.Seed+1)
	if err != nil {
		return nil, err
	}
	b, px := e.Batch(), ds.ImageSize()*ds.ImageSize()
	r := &offlineRun{e: e, ds: ds, opts: opts, ffc: e.opts.Head == HeadFFC, idl: idl, inl: inl,
		pairs: make([]Pair, b), inst: make([]Sample, 2*b), buf1: make([]byte, px), buf2: make([]byte, px),
		batch: NewDualBatch(b, px, opts.DualLoader)}
	if opts.IDOnly {
		if !opts.DualLoader {
			return nil, errors.New("train: the id loader alone (IDOnly) needs DualLoader")
		}
		r.batch = NewIDBatch(b, px)
	}
	r.start = time.Now()
	r.lastLog = r.start
	return r, nil
}

// read reads image i into buf.
func (r *offlineRun) read(i int, buf []byte) ([]byte, error) {
	if _, err := r.ds.ReadImage(i, buf); err != nil {
		return nil, fmt.Errorf("read image %d: %w", i, err)
	}
	return buf, nil
}

// step draws one batch from the loaders and runs one step on it.
func (r *offlineRun) step() (StepStats, error) {
	if !r.ffc {
		return r.stepPlain()
	}
	d := r.batch
	d.Reset()
	if d.NeedPairs() {
		r.idl.Next(r.pairs)
		for _, p := range r.pairs {
			a1, err := r.read(p.A1, r.buf1)
			if err != nil {
				return StepStats{}, err
			}
			a2, err := r.read(p.A2, r.buf2)
			if err != nil {
				return StepStats{}, err
			}
			if err := d.AddPair(p.Label, a1, a2); err != nil {
				return StepStats{}, err
			}
		}
	}
	for d.NeedInstances() {
		r.inl.Next(r.inst[:1])
		pix, err := r.read(r.inst[0].Image, r.buf1)
		if err != nil {
			return StepStats{}, err
		}
		if err := d.AddInstance(r.inst[0].Label, pix); err != nil {
			return StepStats{}, err
		}
	}
	x, xl, y, yl, err := d.Inputs()
	if err != nil {
		return StepStats{}, err
	}
	r.res.Images += 2 * (d.Pairs() + d.Instances()/2)
	return r.e.StepFFC(x, xl, y, yl)
}

// stepPlain runs one FC or PFC step on B instances.
func (r *offlineRun) stepPlain() (StepStats, error) {
	b := r.e.Batch()
	r.x, r.xl = r.x[:0], r.xl[:0]
	r.inl.Next(r.inst[:b])
	var err error
	for _, s := range r.inst[:b] {
		if r.x, err = appendImage(r.x, r.ds, s.Image, r.buf1); err != nil {
			return StepStats{}, err
		}
		r.xl = append(r.xl, s.Label)
	}
	r.res.Images += b
	return r.e.StepPlain(r.x, r.xl)
}

// record adds a finished step to the result and prints progress.
func (r *offlineRun) record(step int, st StepStats) {
	res, opts := &r.res, r.opts
	res.Steps++
	res.Curve = append(res.Curve, Point{Step: st.Step, Loss: st.Loss})
	res.PoolLen = st.PoolLen
	if opts.Progress == nil || (res.Steps%opts.LogEvery != 0 && step != opts.Steps-1) {
		return
	}
	now := time.Now()
	rate := float64(res.Images-r.imagesAtLog) / now.Sub(r.lastLog).Seconds()
	eta := time.Duration(float64(opts.Steps-step-1) * float64(now.Sub(r.start)) / float64(step+1))
	occ := ""
	if r.ffc {
		q := r.e.opts.Pool
		occ = fmt.Sprintf("  pool %d/%d (%.0f%%)", st.PoolLen, q, 100*float64(st.PoolLen)/float64(q))
	}
	fmt.Fprintf(opts.Progress, "step %d/%d  loss %.4f  lr %.4g  %.0f img/s%s  ETA %s\n",
		step+1, opts.Steps, recentMean(res.Curve, opts.LogEvery), st.LR, rate, occ, eta.Round(time.Second))
	r.lastLog, r.imagesAtLog = now, res.Images
}

// finish computes the rates and loss means of the result.
func (r *offlineRun) finish() {
	res := &r.res
	res.Elapsed = time.Since(r.start)
	res.ImagesPerS = float64(res.Images) / res.Elapsed.Seconds()
	tenth := max(1, len(res.Curve)/10)
	if len(res.Curve) > 0 {
		res.FirstLoss = meanLoss(res.Curve[:tenth])
		res.LastLoss = meanLoss(res.Curve[len(res.Curve)-tenth:])
	}
}

func recentMean(c []Point, n int) float64 { return meanLoss(c[max(0, len(c)-n):]) }

func meanLoss(c []Point) float64 {
	var s float64
	for _, p := range c {
		s += p.Loss
	}
	return s / float64(max(1, len(c)))
}

// Checkpoint file names inside a checkpoint folder.
const (
	ProbeFile   = "probe.params"
	GalleryFile = "gallery.params"
)

// SaveCheckpoint writes the probe's (and gallery's) parameters and
// BatchNorm running statistics into dir,
// each file atomically (temporary file, fsync, rename).
func (e *Engine) SaveCheckpoint(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	nets := map[string]nn.Net{ProbeFile: e.probe}
	if e.gallery != nil {
		nets[GalleryFile] = e.gallery
	}
	for name, net := range nets {
		if err := writeAtomic(filepath.Join(dir, name), func(w io.Writer) error {
			return nn.SaveParams(w, e.be, nn.Tensors(net))
		}); err != nil {
			return fmt.Errorf("checkpoint %s: %w", name, err)
		}
	}
	return nil
}

// LoadProbe reads probe.params from dir into the probe.
func (e *Engine) LoadProbe(dir string) error {
	f, err := os.Open(filepath.Join(dir, ProbeFile))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	if err := nn.LoadParams(f, e.be, nn.Tensors(e.probe)); err != nil {
		return fmt.Errorf("checkpoint %s: %w", filepath.Join(dir, ProbeFile), err)
	}
	return nil
}

func writeAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
