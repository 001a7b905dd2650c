package settings

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// modesAnnotation is the pflag annotation that holds the modes a flag
// applies to (see Annotate and CheckModes).
const modesAnnotation = "ffc-modes"

// flagDef is one setting's flag.
type flagDef struct {
	modes Mode
	add   func(fs *pflag.FlagSet, s *Settings)
}

const trainModes = Offline | Streaming | Demo

// flagDefs lists every setting's flag, with the modes it applies to.
var flagDefs = []flagDef{
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.StringVar(&s.Backbone, "backbone", s.Backbone, "backbone: irresnet (1×32×32 yardstick) or mlp (fast)")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.Dim, "dim", s.Dim, "embedding dimension D")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntSliceVar(&s.Hidden, "hidden", s.Hidden, "hidden layer widths of the mlp backbone, comma-separated")
	}},
	{Offline, func(fs *pflag.FlagSet, s *Settings) {
		fs.StringVar(&s.Head, "head", s.Head, "head: ffc, fc (full softmax over N classes) or pfc (Partial FC); streaming trains ffc")
	}},
	{trainModes | Produce, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.Batch, "batch", s.Batch, "batch B (FFC: B id pairs + B instances per step); produce: the trainers' batch, for the default --max-lead")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.Pool, "pool", s.Pool, "FFC pool slots Q (0: max(3·batch, 10% of the train classes when known); a restart keeps its checkpoint's Q)")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.TopK, "topk", s.TopK, "top-K for fresh IDs (0: min(max(int(0.0002·Q), 3), 10))")
	}},
	{Offline, func(fs *pflag.FlagSet, s *Settings) {
		fs.BoolVar(&s.DualLoader, "dual-loader", s.DualLoader, "FFC: id loader + instance loader; false: instances only (streaming always uses both streams)")
	}},
	{Offline, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.PFCRate, "pfc-rate", s.PFCRate, "Partial FC sample rate")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.StringVar(&s.Margin, "margin", s.Margin, "margin: cosface or arcface")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.Scale, "scale", s.Scale, "softmax scale s")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.M, "m", s.M, "margin m (0: 0.4 for cosface, 0.5 for arcface)")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.EMA, "ema", s.EMA, "gallery moving-average momentum m")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.LR, "lr", s.LR, "base learning rate")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.Momentum, "momentum", s.Momentum, "SGD momentum (Nesterov)")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Float64Var(&s.WeightDecay, "weight-decay", s.WeightDecay, "SGD weight decay")
	}},
	{Offline, func(fs *pflag.FlagSet, s *Settings) {
		fs.StringVar(&s.Schedule, "schedule", s.Schedule, "learning-rate schedule: step (×0.1 at 60% and 85% of the steps) or poly; streaming keeps the rate constant after --warmup")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.Warmup, "warmup", s.Warmup, "linear warm-up steps")
	}},
	{Offline, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.Steps, "steps", s.Steps, "training steps")
	}},
	{trainModes, func(fs *pflag.FlagSet, s *Settings) {
		fs.Uint64Var(&s.Seed, "seed", s.Seed, "random seed (initialisation, loaders, pool)")
	}},
	{trainModes | Produce, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.CheckpointEvery, "checkpoint-every", s.CheckpointEvery, "checkpoint (streaming: and commit offsets) every N steps (offline 0: only at the end; streaming 0: every 50); produce: the trainers' cadence, for the default --max-lead")
	}},
	{Streaming | Demo, func(fs *pflag.FlagSet, s *Settings) {
		fs.DurationVar(&s.CheckpointInterval, "checkpoint-interval", s.CheckpointInterval, "streaming: checkpoint at least this often (and every --checkpoint-every steps)")
	}},
	{Demo | Produce, func(fs *pflag.FlagSet, s *Settings) {
		fs.IntVar(&s.MaxLead, "max-lead", s.MaxLead, "flow control: most messages per topic written and not yet committed by the trainer group (0: 2·batch·checkpoint-every; negative: off)")
	}},
}

// AddFlags adds the flags of every setting that applies to one of modes
// to fs, bound to s (whose values are the defaults shown), and records the
// modes each applies to.
func AddFlags(fs *pflag.FlagSet, modes Mode, s *Settings) {
	for _, d := range flagDefs {
		if d.modes&modes == 0 {
			continue
		}
		before := map[string]bool{}
		fs.VisitAll(func(f *pflag.Flag) { before[f.Name] = true })
		d.add(fs, s)
		fs.VisitAll(func(f *pflag.Flag) {
			if !before[f.Name] {
				Annotate(fs, f.Name, d.modes)
			}
		})
	}
}

// Annotate records that the flag name of fs applies to modes only.
func Annotate(fs *pflag.FlagSet, name string, modes Mode) {
	if err := fs.SetAnnotation(name, modesAnnotation, []string{fmt.Sprint(uint8(modes))}); err != nil {
		panic(fmt.Sprintf("settings: annotate --%s: %v", name, err)) // a programming error: no such flag
	}
}

// modesOf returns the modes a flag applies to (all when not annotated).
func modesOf(f *pflag.Flag) Mode {
	v := f.Annotations[modesAnnotation]
	if len(v) != 1 {
		return ^Mode(0)
	}
	var m uint8
	if _, err := fmt.Sscan(v[0], &m); err != nil {
		return ^Mode(0)
	}
	return Mode(m)
}

// Source says where a flag's value came from: "flag", "env", "file" or
// "default" (internal/config's sources).
type Source = string

// CheckModes looks at every flag of fs that was set and does not apply to
// mode m. One set on the command line is an error that names the flag and
// the modes it applies to; one set from the environment or a
// configuration file (shared by several commands) is returned as a
// warning. sources maps flag names to where their values came from.
func CheckModes(fs *pflag.FlagSet, m Mode, sources map[string]Source) (warnings []string, err error) {
	var bad []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed || modesOf(f)&m != 0 {
			return
		}
		msg := fmt.Sprintf("--%s applies to %s only, not to %s", f.Name, modesOf(f), m)
		switch src := sources[f.Name]; src {
		case "env", "file":
			warnings = append(warnings, fmt.Sprintf("%s: ignored (set from the %s)", msg, map[string]string{"env": "environment", "file": "configuration file"}[src]))
		default:
			bad = append(bad, msg)
		}
	})
	sort.Strings(warnings)
	if len(bad) > 0 {
		slices.Sort(bad)
		return warnings, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return warnings, nil
}
