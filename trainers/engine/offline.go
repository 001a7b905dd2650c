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
	// LogEvery prints progress every this many steps (0: 10).
	LogEvery int
	// Progress receives the progress lines (nil: none).
	Progress io.Writer
	// CheckpointDir, when set, receives probe.params (and gallery.params
	// for FFC) every CheckpointEvery steps and at the end, written
	// atomically.
	CheckpointDir   string
	CheckpointEvery int
	Seed            uint64
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
	var res TrainResult
	if opts.Steps <= 0 {
		return res, errors.New("train: steps must be positive")
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = 10
	}
	ix := TrainIndex(ds)
	idl, err := NewIDLoader(ix, opts.Seed)
	if err != nil {
		return res, fmt.Errorf("train: %w", err)
	}
	inl, err := NewInstanceLoader(ix, opts.Seed+1)
	if err != nil {
		return res, fmt.Errorf("train: %w", err)
	}
	sc := newScaler(ds)
	b := e.Batch()
	pairs := make([]Pair, b)
	inst := make([]Sample, 2*b)
	var x, y []float32
	var xl, yl []int64
	start := time.Now()
	lastLog := start
	imagesAtLog := 0
	ffc := e.opts.Head == HeadFFC
	// split appends samples[:k] to x and the rest to y.
	split := func(samples []Sample, k int) error {
		for i, s := range samples {
			var err error
			if i < k {
				x, err = sc.appendImage(x, s.Image)
				xl = append(xl, s.Label)
			} else {
				y, err = sc.appendImage(y, s.Image)
				yl = append(yl, s.Label)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}

	for step := 0; step < opts.Steps; step++ {
		if err := ctx.Err(); err != nil {
			break
		}
		x, y, xl, yl = x[:0], y[:0], xl[:0], yl[:0]
		var st StepStats
		switch {
		case ffc && opts.DualLoader:
			idl.Next(pairs)
			inl.Next(inst[:b])
			for _, p := range pairs {
				if x, err = sc.appendImage(x, p.A1); err != nil {
					return res, err
				}
				if y, err = sc.appendImage(y, p.A2); err != nil {
					return res, err
				}
				xl, yl = append(xl, p.Label), append(yl, p.Label)
			}
			half := b / 2
			if err := split(inst[:2*half], half); err != nil {
				return res, err
			}
			res.Images += 2*b + 2*half
			st, err = e.StepFFC(x, xl, y, yl)
		case ffc:
			inl.Next(inst)
			if err := split(inst, b); err != nil {
				return res, err
			}
			res.Images += 2 * b
			st, err = e.StepFFC(x, xl, y, yl)
		default:
			inl.Next(inst[:b])
			for _, s := range inst[:b] {
				if x, err = sc.appendImage(x, s.Image); err != nil {
					return res, err
				}
				xl = append(xl, s.Label)
			}
			res.Images += b
			st, err = e.StepPlain(x, xl)
		}
		if errors.Is(err, ErrSkipped) {
			res.Skipped++
			e.opts.Log.Warn("step skipped", "step", step, "err", err)
			continue
		}
		if err != nil {
			return res, fmt.Errorf("train: step %d: %w", step, err)
		}
		res.Steps++
		res.Curve = append(res.Curve, Point{Step: st.Step, Loss: st.Loss})
		res.PoolLen = st.PoolLen
		if opts.Progress != nil && (res.Steps%opts.LogEvery == 0 || step == opts.Steps-1) {
			now := time.Now()
			rate := float64(res.Images-imagesAtLog) / now.Sub(lastLog).Seconds()
			eta := time.Duration(float64(opts.Steps-step-1) * float64(now.Sub(start)) / float64(step+1))
			occ := ""
			if ffc {
				occ = fmt.Sprintf("  pool %d/%d (%.0f%%)", st.PoolLen, e.opts.Pool, 100*float64(st.PoolLen)/float64(e.opts.Pool))
			}
			fmt.Fprintf(opts.Progress, "step %d/%d  loss %.4f  lr %.4g  %.0f img/s%s  ETA %s\n",
				step+1, opts.Steps, recentMean(res.Curve, opts.LogEvery), st.LR, rate, occ, eta.Round(time.Second))
			lastLog, imagesAtLog = now, res.Images
		}
		if opts.CheckpointDir != "" && opts.CheckpointEvery > 0 && res.Steps%opts.CheckpointEvery == 0 {
			if err := e.SaveCheckpoint(opts.CheckpointDir); err != nil {
				return res, err
			}
		}
	}
	res.Elapsed = time.Since(start)
	res.ImagesPerS = float64(res.Images) / res.Elapsed.Seconds()
	tenth := max(1, len(res.Curve)/10)
	if len(res.Curve) > 0 {
		res.FirstLoss = meanLoss(res.Curve[:tenth])
		res.LastLoss = meanLoss(res.Curve[len(res.Curve)-tenth:])
	}
	if opts.CheckpointDir != "" && res.Steps > 0 {
		if err := e.SaveCheckpoint(opts.CheckpointDir); err != nil {
			return res, err
		}
	}
	return res, ctx.Err()
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
