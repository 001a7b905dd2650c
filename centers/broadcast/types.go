package broadcast

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/ffc-stream/ffc/centers"
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

var modelName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateModel reports a model name that cannot be a subject token.
func ValidateModel(model string) error {
	if !modelName.MatchString(model) {
		return fmt.Errorf("model name %q: want 1–64 of A–Z a–z 0–9 _ -", model)
	}
	return nil
}

// StreamName is the JetStream stream of a model.
func StreamName(model string) string { return "CENTERS_" + model }

// Subjects of a model.
func centerSubject(model string, id uint64) string {
	return fmt.Sprintf("centers.%s.%d", model, id)
}
func evictSubject(model string, id uint64) string {
	return fmt.Sprintf("centers.%s.evicted.%d", model, id)
}

// stepSubject is where a run's step commits go; the stream keeps the last
// commit of every run, so a replica bootstrapping later still learns up to
// which step each run committed.
func stepSubject(model, run string) string { return "centers." + model + ".step." + run }

// stepPrefix starts every commit subject of a model.
func stepPrefix(model string) string { return "centers." + model + ".step." }

// ErrDim reports a vector of the wrong length.
var ErrDim = errors.New("vector length differs from the model's dimension")
