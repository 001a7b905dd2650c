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
	name  string
	modes Mode
	add   func(fs *pflag.FlagSet, name string, s *Settings)
}

const trainModes = Offline | Streaming | Demo

// flagDefs lists every setting's flag, with the modes it applies to.
var flagDefs = []flagDef{
	{"backbone", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.Backbone, name, s.Backbone, "backbone: irresnet (1×32×32 yardstick) or mlp (fast)")
	}},
	{"dim", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.Dim, name, s.Dim, "embedding dimension D")
	}},
	{"hidden", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntSliceVar(&s.Hidden, name, s.Hidden, "hidden layer widths of the mlp backbone, comma-separated")
	}},
	{"init", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.Init, name, s.Init, "initial conv and linear weights: kaiming (N(0, 2/fan_in), biases 0) or uniform (U(±1/√fan_in) for weights and biases, torch's default)")
	}},
	{"head", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.Head, name, s.Head, "head: ffc, fc (full softmax over N classes) or pfc (Partial FC); streaming trains ffc")
	}},
	{"batch", trainModes | Produce, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.Batch, name, s.Batch, "batch B (FFC: B id pairs + B instances per step); produce: the trainers' batch, for the default --max-lead")
	}},
	{"pool", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.Pool, name, s.Pool, "FFC pool slots Q (0: max(3·batch, 10% of the train classes when known); a restart keeps its checkpoint's Q)")
	}},
	{"topk", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.TopK, name, s.TopK, "top-K for fresh IDs (0: min(max(int(0.0002·Q), 3), 10))")
	}},
	{"dual-loader", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.BoolVar(&s.DualLoader, name, s.DualLoader, "FFC: id loader + instance loader; false: instances only (streaming always uses both streams)")
	}},
	{"id-only", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.BoolVar(&s.IDOnly, name, s.IDOnly, "FFC: the id loader alone, B id pairs per step (x = a1, y = a2) and no instances: the loaders' ablation beside --dual-loader=false")
	}},
	{"pfc-rate", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.PFCRate, name, s.PFCRate, "Partial FC sample rate")
	}},
	{"margin", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.Margin, name, s.Margin, "margin: cosface or arcface")
	}},
	{"scale", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.Scale, name, s.Scale, "softmax scale s")
	}},
	{"m", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.M, name, s.M, "margin m (0: 0.4 for cosface, 0.5 for arcface)")
	}},
	{"ema", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.EMA, name, s.EMA, "gallery moving-average momentum m")
	}},
	{"lr", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.LR, name, s.LR, "base learning rate")
	}},
	{"momentum", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.Momentum, name, s.Momentum, "SGD momentum (Nesterov)")
	}},
	{"weight-decay", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Float64Var(&s.WeightDecay, name, s.WeightDecay, "SGD weight decay")
	}},
	{"schedule", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.Schedule, name, s.Schedule, "learning-rate schedule after --warmup: step (×0.1 at 60% and 85% of the steps), poly (power 2) or cosine (to 0 at the last step); streaming keeps the rate constant after --warmup")
	}},
	{"protocol", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.Protocol, name, s.Protocol, "offline split: fonts (the data set's own: whole fonts held out, its open-set classes) or last-image (the last tenth of the classes open-set, the last image of every other class with ≥ 4 images a held-out probe); eval follows the checkpoint's")
	}},
	{"wd-scope", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.StringVar(&s.WDScope, name, s.WDScope, "what --weight-decay applies to: weights (conv and linear weights) or all (every parameter, as torch.optim.SGD over model.parameters())")
	}},
	{"warmup", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.Warmup, name, s.Warmup, "linear warm-up steps")
	}},
	{"steps", Offline, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.Steps, name, s.Steps, "training steps")
	}},
	{"seed", trainModes, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.Uint64Var(&s.Seed, name, s.Seed, "random seed (initialisation, loaders, pool)")
	}},
	{"checkpoint-every", trainModes | Produce, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.CheckpointEvery, name, s.CheckpointEvery, "checkpoint (streaming: and commit offsets) every N steps (offline 0: only at the end; streaming 0: every 50); produce: the trainers' cadence, for the default --max-lead")
	}},
	{"checkpoint-interval", Streaming | Demo, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.DurationVar(&s.CheckpointInterval, name, s.CheckpointInterval, "streaming: checkpoint at least this often (and every --checkpoint-every steps)")
	}},
	{"max-lead", Demo | Produce, func(fs *pflag.FlagSet, name string, s *Settings) {
		fs.IntVar(&s.MaxLead, name, s.MaxLead, "flow control: most messages per topic written and not yet committed by the trainer group (0: 2·batch·checkpoint-every; negative: off)")
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
		d.add(fs, d.name, s)
		Annotate(fs, d.name, d.modes)
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
