package settings

import (
	"log/slog"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// Engine returns the engine options of derived settings for mode m.
// Offline runs follow --schedule over --steps (step: ×0.1 at 60% and 85%
// of the steps); streaming has no last step, so its learning rate is
// constant after the warm-up.
func (s Settings) Engine(m Mode, classes int, log *slog.Logger) engine.Options {
	margin := kernels.Margin{Kind: kernels.CosFace, S: float32(s.Scale), M: float32(s.M)}
	if s.Margin == "arcface" {
		margin.Kind = kernels.ArcFace
	}
	sched := nn.Schedule{Kind: "constant", BaseLR: s.LR, WarmupSteps: s.Warmup}
	if m&Offline != 0 {
		sched = nn.Schedule{Kind: s.Schedule, BaseLR: s.LR, WarmupSteps: s.Warmup, TotalSteps: s.Steps,
			Gamma: 0.1, Milestones: []int{s.Steps * 6 / 10, s.Steps * 85 / 100}}
	}
	var hidden []int
	if s.Backbone == "mlp" {
		hidden = slices.Clone(s.Hidden)
	}
	return engine.Options{
		Backbone: s.Backbone, InLen: s.InLen, Hidden: hidden, Dim: s.Dim, Head: s.Head,
		Batch: s.Batch, Pool: s.Pool, TopK: s.TopK, Classes: classes, PFCRate: s.PFCRate,
		Margin: margin, EMA: float32(s.EMA),
		SGD:      nn.SGD{Momentum: float32(s.Momentum), WeightDecay: float32(s.WeightDecay), Nesterov: true, DecayAll: s.WDScope == "all"},
		Schedule: sched, Seed: s.Seed, Init: s.Init, Log: log,
	}
}
