package broadcast

import (
	"errors"
	"fmt"
	"time"

	"github.com/ffc-stream/ffc/centers"
	"github.com/ffc-stream/ffc/schemas"
)

// Kind says what a center update is: the pool's change kind.
type Kind = centers.ChangeKind

// Update kinds.
const (
	Insert  = centers.Inserted
	Refresh = centers.Refreshed
	Evict   = centers.Evicted
	// Tombstone: the ID was removed on request (ffc ids remove); it has
	// no vector and replaces the ID's center on its subject. Subscribers
	// forget the ID.
	Tombstone = centers.Removed
)

// Update is one center change.
type Update struct {
	Model string
	ID    uint64
	// Vector is the new center (L2-normalised gallery feature); empty for
	// Evict.
	Vector []float32
	Step   int64
	Slot   int32
	Row    int32
	Kind   Kind
	// Run names the publishing trainer process and Epoch the start of the
	// training job it belongs to (both set by the Publisher).
	Run   string
	Epoch uint64
}

// Version is the order of center changes: the epoch (a start of the
// training job, fenced) first, then the step.
type Version struct {
	Epoch uint64
	Step  int64
}

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool {
	return v.Epoch < w.Epoch || (v.Epoch == w.Epoch && v.Step < w.Step)
}

// Version is the version of the change.
func (u Update) Version() Version { return Version{Epoch: u.Epoch, Step: u.Step} }

// Phase says what a step record is.
type Phase int

// Step record phases (see schemas' StepCommit).
const (
	// PhaseCommit: every update of (epoch, step) and earlier is published.
	PhaseCommit Phase = iota
	// PhaseBegin: the updates of (epoch, step) follow.
	PhaseBegin
	// PhaseStart: a start of the training job took the epoch; Step is the
	// step it restored.
	PhaseStart
)

func (p Phase) String() string {
	switch p {
	case PhaseCommit:
		return "commit"
	case PhaseBegin:
		return "begin"
	case PhaseStart:
		return "start"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Commit is a step record of the fence subject (schemas.StepSubject).
type Commit struct {
	Model string
	Step  int64
	IDs   []uint64
	Time  time.Time
	Run   string
	Epoch uint64
	Phase Phase
}

// Version is the version the record is about.
func (c Commit) Version() Version { return Version{Epoch: c.Epoch, Step: c.Step} }

// ErrFenced reports a publisher whose epoch a later start of the job has
// superseded: it must stop publishing (and its trainer stop training).
var ErrFenced = errors.New("fenced: a later start of the training job holds the epoch")

// Codec turns updates and commits into bytes and back; decoders validate
// and return errors with reasons.
type Codec interface {
	EncodeUpdate(Update) ([]byte, error)
	DecodeUpdate([]byte) (Update, error)
	EncodeCommit(Commit) ([]byte, error)
	DecodeCommit([]byte) (Commit, error)
}

// ValidateModel reports a model name that cannot be a subject token.
func ValidateModel(model string) error { return schemas.ValidateModel(model) }

// StreamName is the JetStream stream of a model.
func StreamName(model string) string { return schemas.CentersStream(model) }

// ErrDim reports a vector of the wrong length.
var ErrDim = errors.New("vector length differs from the model's dimension")

// UpdatesOf turns the pool changes of one training step into the updates
// to publish: an inserted or refreshed ID carries its new center, row
// Change.Index of features (n×dim, the gallery features the step wrote);
// an evicted or removed one (a tombstone) carries none. It also returns
// the number of evictions.
func UpdatesOf(changes []centers.Change, features []float32, dim int) ([]Update, int, error) {
	ups := make([]Update, 0, len(changes))
	evictions := 0
	for _, c := range changes {
		u := Update{ID: uint64(c.Label), Slot: c.Slot, Row: int32(c.Row), Kind: c.Kind}
		switch c.Kind {
		case Evict:
			evictions++
		case Tombstone:
			u.Slot, u.Row = 0, 0
		default:
			if c.Index < 0 || (c.Index+1)*dim > len(features) {
				return nil, 0, fmt.Errorf("center of ID %d: feature row %d outside the %d floats of the step", c.Label, c.Index, len(features))
			}
			u.Vector = features[c.Index*dim : (c.Index+1)*dim]
		}
		ups = append(ups, u)
	}
	return ups, evictions, nil
}
