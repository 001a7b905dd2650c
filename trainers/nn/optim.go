package nn

import (
	"fmt"
	"math"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// Schedule is the learning rate per optimizer step (counted from 0).
//
// Warm-up: for step < WarmupSteps the rate ramps linearly,
// BaseLR·(step+1)/WarmupSteps, reaching BaseLR at the last warm-up step.
// After it:
//   - "step": BaseLR·Gamma^k, k the number of Milestones ≤ step (Gamma 0.1
//     when zero), as torch.optim.lr_scheduler.MultiStepLR;
//   - "poly": BaseLR·(1 − (step−WarmupSteps)/(TotalSteps−WarmupSteps))^Power,
//     0 from TotalSteps on (Power 2 when zero, as insightface's
//     PolyScheduler);
//   - "cosine": BaseLR·½(1 + cos(π·(step−WarmupSteps)/(TotalSteps−WarmupSteps))),
//     0 from TotalSteps on (torch's CosineAnnealingLR to 0 after the
//     warm-up);
//   - "" or "constant": BaseLR.
type Schedule struct {
	Kind        string
	BaseLR      float64
	WarmupSteps int
	TotalSteps  int
	Milestones  []int
	Gamma       float64
	Power       float64
}

// Validate reports whether the schedule is usable.
func (s Schedule) Validate() error {
	switch {
	case !(s.BaseLR >= 0) || math.IsInf(s.BaseLR, 0):
		return fmt.Errorf("nn: schedule: %w: BaseLR %v", kernels.ErrShape, s.BaseLR)
	case s.WarmupSteps < 0:
		return fmt.Errorf("nn: schedule: %w: WarmupSteps %d", kernels.ErrShape, s.WarmupSteps)
	case s.Gamma < 0 || s.Power < 0:
		return fmt.Errorf("nn: schedule: %w: Gamma %v, Power %v", kernels.ErrShape, s.Gamma, s.Power)
	}
	switch s.Kind {
	case "", "constant":
	case "step":
		if !slices.IsSorted(s.Milestones) {
			return fmt.Errorf("nn: schedule: %w: milestones %v not increasing", kernels.ErrShape, s.Milestones)
		}
	case "poly", "cosine":
		if s.TotalSteps <= s.WarmupSteps {
			return fmt.Errorf("nn: schedule: %w: %s needs TotalSteps %d > WarmupSteps %d", kernels.ErrShape, s.Kind, s.TotalSteps, s.WarmupSteps)
		}
	default:
		return fmt.Errorf("nn: schedule: %w: unknown kind %q (step, poly, cosine, constant)", kernels.ErrShape, s.Kind)
	}
	return nil
}

// LR is the learning rate of the given step.
func (s Schedule) LR(step int) float64 {
	step = max(step, 0)
	lr := s.BaseLR
	if step < s.WarmupSteps {
		lr *= float64(step+1) / float64(s.WarmupSteps)
	}
	switch s.Kind {
	case "step":
		g := s.Gamma
		if g == 0 {
			g = 0.1
		}
		k := 0
		for _, m := range s.Milestones {
			if m <= step {
				k++
			}
		}
		lr *= math.Pow(g, float64(k))
	case "poly", "cosine":
		if step < s.WarmupSteps {
			break
		}
		span := s.TotalSteps - s.WarmupSteps
		if span <= 0 || step >= s.TotalSteps {
			return 0
		}
		t := float64(step-s.WarmupSteps) / float64(span)
		if s.Kind == "cosine" {
			return lr * 0.5 * (1 + math.Cos(math.Pi*t))
		}
		p := s.Power
		if p == 0 {
			p = 2
		}
		lr *= math.Pow(1-t, p)
	}
	return lr
}

// SGD is stochastic gradient descent with momentum, weight decay and
// optionally Nesterov momentum, as torch.optim.SGD (dampening 0). The
// authors' FFC uses Momentum 0.9, WeightDecay 1e-4 (in SPEC), Nesterov.
type SGD struct {
	Momentum, WeightDecay float32
	Nesterov              bool
	// DecayAll applies weight decay to every parameter (BatchNorm, PReLU
	// and biases too, as torch.optim.SGD over model.parameters()); false:
	// to conv and linear weights only (Param.Decay).
	DecayAll bool
}

// Step updates every parameter with its gradient and momentum buffer at
// learning rate lr; weight decay applies only where Param.Decay.
func (o SGD) Step(be kernels.Backend, ps []*Param, lr float32) error {
	for _, p := range ps {
		if p.G == nil || p.V == nil {
			return fmt.Errorf("nn: sgd step %s: %w: no gradient or momentum buffer (forward-only net?)", p.Name, ErrState)
		}
		h := kernels.SGD{LR: lr, Momentum: o.Momentum, Nesterov: o.Nesterov}
		if p.Decay || o.DecayAll {
			h.WeightDecay = o.WeightDecay
		}
		if err := be.SGDStep(p.N, h, p.W, p.G, p.V); err != nil {
			return fmt.Errorf("nn: sgd step %s: %w", p.Name, err)
		}
	}
	return nil
}
