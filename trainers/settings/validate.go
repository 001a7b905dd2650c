package settings

import (
	"errors"
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// Validate reports every problem of derived settings for mode m, joined.
func (s Settings) Validate(m Mode) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s.validateArch(m, bad)
	s.validateBatch(m, bad)
	s.validateTraining(m, bad)
	if len(errs) > 0 {
		return fmt.Errorf("settings: %w", errors.Join(errs...))
	}
	return nil
}

func (s Settings) validateArch(m Mode, bad func(string, ...any)) {
	switch s.Backbone {
	case "irresnet":
		if s.InLen != 0 && s.InLen != 32*32 {
			bad("--backbone irresnet takes 32×32 images, not %d pixels", s.InLen)
		}
	case "mlp":
		if s.InLen <= 0 && m&Produce == 0 {
			bad("--backbone mlp needs the input length (the data set's image size)")
		}
		for _, h := range s.Hidden {
			if h <= 0 {
				bad("--hidden %v: widths must be positive", s.Hidden)
				break
			}
		}
	default:
		bad("--backbone %q: want irresnet or mlp", s.Backbone)
	}
	if s.Dim < 1 {
		bad("--dim %d: want ≥ 1", s.Dim)
	}
	switch s.Head {
	case "ffc", "fc", "pfc":
	default:
		bad("--head %q: want ffc, fc or pfc", s.Head)
	}
	if s.IDOnly && (s.Head != "ffc" || !s.DualLoader) {
		bad("--id-only keeps the id loader of the FFC head's dual loader: it needs --head ffc and --dual-loader (got --head %s, --dual-loader=%v)", s.Head, s.DualLoader)
	}
}

func (s Settings) validateBatch(m Mode, bad func(string, ...any)) {
	if s.Batch < 2 {
		bad("--batch %d: want ≥ 2", s.Batch)
	}
	if m&(Streaming|Demo|Produce) != 0 && s.Batch%2 != 0 {
		bad("--batch %d: streaming training takes an even batch (its B instances split into halves)", s.Batch)
	}
	if writes := s.Batch + (s.Batch+1)/2; s.Head == "ffc" && s.Pool < writes {
		bad("--pool %d is below the %d gallery features one FFC pass writes (1.5·batch %d): IDs would be evicted by the step that inserts them; use --pool ≥ %d (3·batch = %d recommended)",
			s.Pool, writes, s.Batch, writes, 3*s.Batch)
	}
	if s.TopK < 0 {
		bad("--topk %d: want ≥ 0", s.TopK)
	}
	if s.Head == "pfc" && !(s.PFCRate > 0 && s.PFCRate <= 1) {
		bad("--pfc-rate %v: want (0, 1]", s.PFCRate)
	}
	if s.CheckpointEvery < 0 {
		bad("--checkpoint-every %d: want ≥ 0", s.CheckpointEvery)
	}
	if m.streams() && s.CheckpointInterval <= 0 {
		bad("--checkpoint-interval %v: want > 0", s.CheckpointInterval)
	}
}

func (s Settings) validateTraining(m Mode, bad func(string, ...any)) {
	switch s.Margin {
	case "cosface":
	case "arcface":
		if !(s.M >= 0 && s.M < math.Pi) {
			bad("--m %v: an ArcFace margin is in [0, π)", s.M)
		}
	default:
		bad("--margin %q: want cosface or arcface", s.Margin)
	}
	positive := func(name string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			bad("--%s %v: want a positive number", name, v)
		}
	}
	positive("scale", s.Scale)
	positive("lr", s.LR)
	if !(s.EMA > 0 && s.EMA < 1) {
		bad("--ema %v: want (0, 1)", s.EMA)
	}
	if !(s.Momentum >= 0 && s.Momentum < 1) || !(s.WeightDecay >= 0) {
		bad("--momentum %v, --weight-decay %v: want momentum in [0, 1) and weight decay ≥ 0", s.Momentum, s.WeightDecay)
	}
	if s.Warmup < 0 {
		bad("--warmup %d: want ≥ 0", s.Warmup)
	}
	if s.Protocol != engine.ProtocolFonts && s.Protocol != engine.ProtocolLastImage {
		bad("--protocol %q: want %s or %s", s.Protocol, engine.ProtocolFonts, engine.ProtocolLastImage)
	}
	if s.Init != nn.InitKaiming && s.Init != nn.InitUniform {
		bad("--init %q: want kaiming or uniform", s.Init)
	}
	if s.WDScope != "weights" && s.WDScope != "all" {
		bad("--wd-scope %q: want weights or all", s.WDScope)
	}
	if m&Offline != 0 {
		if s.Steps < 0 {
			bad("--steps %d: want ≥ 0 (0: no training, the untrained network's checkpoint and evaluation)", s.Steps)
		}
		switch s.Schedule {
		case "step":
		case "poly", "cosine":
			if s.Steps > 0 && s.Steps <= s.Warmup {
				bad("--schedule %s needs --steps %d > --warmup %d", s.Schedule, s.Steps, s.Warmup)
			}
		default:
			bad("--schedule %q: want step, poly or cosine", s.Schedule)
		}
	}
}
