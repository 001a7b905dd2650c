package settings

import (
	"slices"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// Mode is a way of running a trainer (or a producer feeding one); flags
// apply to some modes and not others.
type Mode uint8

// The modes.
const (
	// Offline: ffc train --offline, from a local data set.
	Offline Mode = 1 << iota
	// Streaming: ffc train, from Kafka.
	Streaming
	// Demo: ffc demo, producer and streaming trainer in one process.
	Demo
	// Produce: ffc produce, whose flow control derives from the trainers'
	// batch and checkpoint cadence.
	Produce
)

// String names the modes of m.
func (m Mode) String() string {
	var names []string
	for _, x := range []struct {
		m    Mode
		name string
	}{{Offline, "offline training (--offline)"}, {Streaming, "streaming training"}, {Demo, "demo"}, {Produce, "produce"}} {
		if m&x.m != 0 {
			names = append(names, x.name)
		}
	}
	return strings.Join(names, ", ")
}

// streams reports whether m trains from Kafka (streaming or the demo).
func (m Mode) streams() bool { return m&(Streaming|Demo) != 0 }

// Settings are the settings of a training run. The zero value of a field
// marked "0: derived" is filled by Derive.
type Settings struct {
	// Architecture.
	Backbone string `json:"backbone"`         // irresnet or mlp
	Dim      int    `json:"dim"`              // embedding dimension D
	InLen    int    `json:"in_len"`           // pixels of an input image (0: derived)
	Hidden   []int  `json:"hidden,omitempty"` // mlp hidden widths
	Init     string `json:"init,omitempty"`   // kaiming or uniform ("": kaiming)
	Head     string `json:"head"`             // ffc, fc or pfc

	// Batch and pool.
	Batch      int     `json:"batch"`             // B
	Pool       int     `json:"pool"`              // Q (0: derived, see DefaultPool)
	TopK       int     `json:"topk"`              // top-K for fresh IDs (0: the reference's K for Q)
	DualLoader bool    `json:"dual_loader"`       // B id pairs + B instances per FFC step
	IDOnly     bool    `json:"id_only,omitempty"` // offline FFC: the id loader alone, B id pairs per step
	PFCRate    float64 `json:"pfc_rate"`          // Partial FC sample rate

	// Loss.
	Margin string  `json:"margin"` // cosface or arcface
	Scale  float64 `json:"scale"`  // softmax scale s
	M      float64 `json:"m"`      // margin m (0: derived, 0.4 cosface, 0.5 arcface)
	EMA    float64 `json:"ema"`    // gallery moving-average momentum

	// Optimizer and schedule.
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum"`
	WeightDecay float64 `json:"weight_decay"`
	WDScope     string  `json:"wd_scope,omitempty"` // weights or all ("": weights)
	Schedule    string  `json:"schedule"`           // step or poly (offline); streaming is constant
	Warmup      int     `json:"warmup"`
	Steps       int     `json:"steps"` // offline steps
	// Protocol is the offline split (engine.ProtocolFonts or
	// ProtocolLastImage; "": fonts); eval follows the checkpoint's.
	Protocol string `json:"protocol,omitempty"`
	Seed     uint64 `json:"seed"`

	// Cadence.
	CheckpointEvery    int           `json:"checkpoint_every"`    // steps (offline 0: at the end; streaming 0: derived, 50)
	CheckpointInterval time.Duration `json:"checkpoint_interval"` // streaming: at least this often
	// MaxLead bounds the messages per topic the producers write ahead of
	// the trainers' commits (0: derived, see DefaultMaxLead; negative: no
	// flow control).
	MaxLead int `json:"max_lead"`
}

// Defaults of streaming training's checkpoint cadence.
const DefaultStreamingCheckpointEvery = 50

// Defaults returns the settings every flag starts from in a mode: the
// demo trains a smaller model and checkpoints often, so new IDs flow
// quickly through its small producer lead.
func Defaults(m Mode) Settings {
	s := Settings{
		Backbone: "irresnet", Dim: DefaultDim, Hidden: []int{512}, Head: engine.HeadFFC,
		Batch: 64, DualLoader: true, PFCRate: 0.1,
		Margin: "cosface", Scale: 32, EMA: 0.99,
		LR: 0.1, Momentum: 0.9, WeightDecay: 1e-4, WDScope: "weights", Init: nn.InitKaiming, Schedule: "step", Steps: 300, Seed: 1,
		CheckpointInterval: 30 * time.Second,
	}
	if m&Demo != 0 {
		s.Batch, s.CheckpointEvery = 32, 4
	}
	return s
}

// DefaultDim is the embedding dimension D of every command (train, demo,
// centers) when none is given.
const DefaultDim = 128

// DefaultPool is Q when none is given: three batches, or a tenth of the
// train classes when that is more (classes 0: unknown, as when
// streaming).
func DefaultPool(batch, classes int) int { return max(3*batch, (classes+9)/10) }

// DefaultMaxLead is the producers' lead when none is given: what a
// trainer consumes between two checkpoints (B id pairs and B instances a
// step, commits after each checkpoint), twice.
func DefaultMaxLead(batch, checkpointEvery int) int { return 2 * batch * checkpointEvery }

// StreamingInLen is the input length of streamed samples: the image size
// the wire accepts, squared.
func StreamingInLen() int {
	n := schemas.DefaultLimits().ImageSize
	return n * n
}

// DeriveOffline derives the settings of an offline run on ds, a data
// set split by its protocol: the input length from its images, the FC
// and PFC classes from its train split, whose index it returns too.
func (s Settings) DeriveOffline(ds engine.Images) (Settings, engine.Index, error) {
	ix := engine.TrainIndex(ds)
	s.InLen = ds.ImageSize() * ds.ImageSize()
	d, err := s.Derive(Offline, len(ix.Labels))
	return d, ix, err
}

// Derive fills the fields left to derivation for mode m (classes: the
// number of train classes when known, else 0) and validates the result.
func (s Settings) Derive(m Mode, classes int) (Settings, error) {
	s.Backbone, s.Head = strings.ToLower(s.Backbone), strings.ToLower(s.Head)
	s.Margin, s.Schedule = strings.ToLower(s.Margin), strings.ToLower(s.Schedule)
	if s.WDScope = strings.ToLower(s.WDScope); s.WDScope == "" {
		s.WDScope = "weights"
	}
	if s.Protocol = strings.ToLower(s.Protocol); s.Protocol == "" {
		s.Protocol = engine.ProtocolFonts
	}
	if s.Init = strings.ToLower(s.Init); s.Init == "" {
		s.Init = nn.InitKaiming
	}
	s.Hidden = slices.Clone(s.Hidden)
	if s.Backbone != "mlp" {
		s.Hidden = nil
	}
	if s.InLen == 0 && m.streams() {
		s.InLen = StreamingInLen()
	}
	if s.Pool == 0 {
		s.Pool = DefaultPool(s.Batch, classes)
	}
	if s.M == 0 {
		s.M = map[string]float64{"cosface": 0.4, "arcface": 0.5}[s.Margin]
	}
	if s.CheckpointEvery == 0 && m&(Streaming|Demo|Produce) != 0 {
		s.CheckpointEvery = DefaultStreamingCheckpointEvery
	}
	if s.MaxLead == 0 {
		s.MaxLead = DefaultMaxLead(s.Batch, s.CheckpointEvery)
	}
	if m.streams() {
		s.Head, s.DualLoader = engine.HeadFFC, true
	}
	if err := s.Validate(m); err != nil {
		return s, err
	}
	return s, nil
}
