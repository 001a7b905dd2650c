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
	// Run names the publishing trainer process (set by the Publisher).
	Run string
}

// Commit closes a step: its updates are complete.
type Commit struct {
	Model string
	Step  int64
	IDs   []uint64
	Time  time.Time
	Run   string
}

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
// an evicted one carries none. It also returns the number of evictions.
func UpdatesOf(changes []centers.Change, features []float32, dim int) ([]Update, int, error) {
	ups := make([]Update, 0, len(changes))
	evictions := 0
	for _, c := range changes {
		u := Update{ID: uint64(c.Label), Slot: c.Slot, Row: int32(c.Row), Kind: c.Kind}
		if c.Kind == Evict {
			evictions++
		} else {
			if c.Index < 0 || (c.Index+1)*dim > len(features) {
				return nil, 0, fmt.Errorf("center of ID %d: feature row %d outside the %d floats of the step", c.Label, c.Index, len(features))
			}
			u.Vector = features[c.Index*dim : (c.Index+1)*dim]
		}
		ups = append(ups, u)
	}
	return ups, evictions, nil
}
