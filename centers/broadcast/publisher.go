package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/schemas"
)

// PublisherOptions configures NewPublisher.
type PublisherOptions struct {
	Model string
	Codec Codec
	// Replicas of the stream (1 for a single server).
	Replicas int
	// AckTimeout bounds the wait for a step's acknowledgements (default
	// 30 s).
	AckTimeout time.Duration
}

// Publisher publishes the center changes of one model. Each Publisher is
// one run with a random name: subscribers apply its updates only when its
// own commits cover them, so the uncommitted tail of a crashed run never
// lands, even when a restarted run commits the same step numbers.
type Publisher struct {
	js   jetstream.JetStream
	opts PublisherOptions
	run  string
}

// Run is this publisher's run name.
func (p *Publisher) Run() string { return p.run }

// EnsureStream creates or updates the model's stream: subjects
// centers.<model>.>, last value per subject, file storage.
func EnsureStream(ctx context.Context, js jetstream.JetStream, model string, replicas int) (jetstream.Stream, error) {
	if err := ValidateModel(model); err != nil {
		return nil, err
	}
	if replicas <= 0 {
		replicas = 1
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              StreamName(model),
		Description:       "FFC class centers of model " + model + ": last value per ID, and step commits",
		Subjects:          []string{schemas.CentersSubjects(model)},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: 1,
		Replicas:          replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("centers stream %s: %w", StreamName(model), err)
	}
	return s, nil
}

// NewPublisher ensures the stream exists and returns a publisher.
func NewPublisher(ctx context.Context, js jetstream.JetStream, opts PublisherOptions) (*Publisher, error) {
	if opts.Codec == nil {
		return nil, errors.New("publisher: no codec")
	}
	if opts.AckTimeout == 0 {
		opts.AckTimeout = 30 * time.Second
	}
	if _, err := EnsureStream(ctx, js, opts.Model, opts.Replicas); err != nil {
		return nil, err
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("publisher: run name: %w", err)
	}
	return &Publisher{js: js, opts: opts, run: hex.EncodeToString(b[:])}, nil
}

// PublishStep publishes the updates of one step, waits until JetStream has
// acknowledged every one, then publishes the step's commit. Subscribers
// apply the step when the commit arrives, so a crash in between leaves
// them on the previous step.
func (p *Publisher) PublishStep(ctx context.Context, step int64, updates []Update) (err error) {
	ids := make([]uint64, 0, len(updates))
	futures := make([]jetstream.PubAckFuture, 0, len(updates))
	for _, u := range updates {
		u.Model, u.Step, u.Run = p.opts.Model, step, p.run
		b, err := p.opts.Codec.EncodeUpdate(u)
		if err != nil {
			return fmt.Errorf("publish step %d: id %d: %w", step, u.ID, err)
		}
		subj := schemas.CenterSubject(p.opts.Model, u.ID)
		if u.Kind == Evict {
			subj = schemas.EvictSubject(p.opts.Model, u.ID)
		} else {
			ids = append(ids, u.ID)
		}
		f, err := p.js.PublishAsync(subj, b)
		if err != nil {
			return fmt.Errorf("publish step %d: %s: %w", step, subj, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(p.opts.AckTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish step %d: %s not acknowledged: %w", step, f.Msg().Subject, err)
		case <-timeout.C:
			return fmt.Errorf("publish step %d: no acknowledgement within %s", step, p.opts.AckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b, err := p.opts.Codec.EncodeCommit(Commit{Model: p.opts.Model, Step: step, IDs: ids, Time: time.Now(), Run: p.run})
	if err != nil {
		return fmt.Errorf("publish step %d: commit: %w", step, err)
	}
	if _, err := p.js.Publish(ctx, schemas.StepSubject(p.opts.Model, p.run), b); err != nil {
		return fmt.Errorf("publish step %d: commit: %w", step, err)
	}
	return nil
}
