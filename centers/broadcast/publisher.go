package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/schemas"
)

// PublisherOptions configures NewPublisher.
type PublisherOptions struct {
	Model string
	Codec Codec
	// Replicas of the stream (1 for a single server).
	Replicas int
	// AckTimeout bounds one publication attempt: a step record or the
	// acknowledgements of a flush's updates (default 30 s).
	AckTimeout time.Duration
	// Restored is the step the training job restored (0: none); the
	// START record that takes the epoch carries it.
	Restored int64
	// MaxBacklog bounds the subjects (IDs) with unpublished changes
	// (default 65,536): Publish waits while the backlog is full.
	MaxBacklog int
	// MaxRetryWait bounds the wait between two attempts while NATS fails
	// (default 10 s; exponential backoff with jitter up to it).
	MaxRetryWait time.Duration
	// Health, when set, gets the condition "nats": false while
	// publication fails.
	Health *stage.Health
	Log    *slog.Logger
}

// PublisherStats is what a publisher has done.
type PublisherStats struct {
	Epoch     uint64
	Published int64 // updates acknowledged
	Flushes   int64 // committed flushes
	Failures  int64 // failed publication attempts (retried)
	Backlog   int   // subjects with unpublished changes
	// Committed is the last version a COMMIT record covered.
	Committed Version
	// Staleness is the age of the oldest unpublished change (0: none).
	Staleness time.Duration
	// Forged counts step records not signed by this job's key found
	// after this publisher's own (its codec verifies): written over, never
	// taken for a later start of the job.
	Forged int64
}

// Publisher publishes the center changes of one model as a stage: Run
// takes a new epoch (a fenced compare-and-set on the step subject), then
// flushes what Publish queues. A flush is a BEGIN record, the updates,
// then a COMMIT record; every record is published with the expected last
// subject sequence of the publisher's previous one, so once a later start
// of the job has taken a newer epoch, this publisher cannot publish
// (ErrFenced). While NATS fails, changes wait in a bounded backlog that
// keeps the newest value per subject, and publication is retried with
// backoff.
type Publisher struct {
	stage.Lifecycle
	js   jetstream.JetStream
	opts PublisherOptions
	run  string

	stream   jetstream.Stream // set by acquire
	mu       sync.Mutex
	epoch    uint64
	lastSeq  uint64            // sequence of this publisher's last step record
	backlog  map[string]Update // subject → newest unpublished update
	oldest   time.Time         // when the oldest unpublished change was queued
	queued   int64             // Publish calls with changes so far
	taken    int64             // queued when the backlog was last taken
	flushed  int64             // queued when the last committed flush was taken
	kick     chan struct{}     // a change is queued (capacity 1)
	progress chan struct{}     // closed and replaced at each flush and at fencing
	fenced   error
	stats    PublisherStats
}

// RunName is this publisher's run name (random, one per process).
func (p *Publisher) RunName() string { return p.run }

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
		Description:       "FFC class centers of model " + model + ": last value per ID, and step records",
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

// NewPublisher validates opts and names the run; it connects to nothing
// until Run.
func NewPublisher(js jetstream.JetStream, opts PublisherOptions) (*Publisher, error) {
	if err := ValidateModel(opts.Model); err != nil {
		return nil, err
	}
	if opts.Codec == nil || js == nil {
		return nil, errors.New("publisher: need JetStream and a codec")
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 30 * time.Second
	}
	if opts.MaxBacklog <= 0 {
		opts.MaxBacklog = 1 << 16
	}
	if opts.MaxRetryWait <= 0 {
		opts.MaxRetryWait = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Health == nil {
		opts.Health = &stage.Health{}
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("publisher: run name: %w", err)
	}
	return &Publisher{js: js, opts: opts, run: hex.EncodeToString(b[:]), backlog: map[string]Update{},
		kick: make(chan struct{}, 1), progress: make(chan struct{})}, nil
}

// Close stops Run and waits for it; unpublished changes are dropped
// (Flush first to publish them).
func (p *Publisher) Close() error {
	p.Stop()
	return nil
}

// Run ensures the stream, takes the epoch and publishes until ctx ends;
// NATS failures are retried. It returns ErrFenced when a later start of
// the job has taken over, and nil when ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	ctx, end, err := p.Begin(ctx)
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer end()
	if err := p.retry(ctx, "take the epoch", p.acquire); err != nil {
		return p.runErr(ctx, err)
	}
	p.SetReady()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		}
		if err := p.retry(ctx, "publish centers", p.flushAll); err != nil {
			return p.runErr(ctx, err)
		}
	}
}

// runErr records a fencing and returns what Run returns for err.
func (p *Publisher) runErr(ctx context.Context, err error) error {
	if errors.Is(err, ErrFenced) {
		p.mu.Lock()
		p.fenced = err
		close(p.progress)
		p.progress = make(chan struct{})
		p.mu.Unlock()
		p.opts.Log.Error("publisher: fenced; stopping", "err", err)
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// retry runs op until it succeeds, is fenced or ctx ends, with backoff
// between failures; a change of state is logged once.
func (p *Publisher) retry(ctx context.Context, what string, op func(context.Context) error) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, p.opts.MaxRetryWait
	for {
		err := op(ctx)
		if err == nil {
			p.opts.Health.Set("nats", true, "")
			return nil
		}
		if errors.Is(err, ErrFenced) || ctx.Err() != nil {
			return err
		}
		p.mu.Lock()
		p.stats.Failures++
		p.mu.Unlock()
		p.opts.Health.Set("nats", false, what+": "+err.Error())
		t := time.NewTimer(bo.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// acquire takes the next epoch: a START record published on the step
// subject only if its last record is still the one read.
func (p *Publisher) acquire(ctx context.Context) error {
	stream, err := EnsureStream(ctx, p.js, p.opts.Model, p.opts.Replicas)
	if err != nil {
		return err
	}
	subj := schemas.StepSubject(p.opts.Model)
	var prev uint64
	var seq uint64
	last, err := stream.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("publisher: read %s: %w", subj, err)
	default:
		c, err := p.opts.Codec.DecodeCommit(last.Data)
		if err != nil {
			return fmt.Errorf("publisher: last record of %s: %w", subj, err)
		}
		prev, seq = c.Epoch, last.Sequence
	}
	p.mu.Lock()
	p.stream, p.epoch, p.lastSeq = stream, prev+1, seq
	p.mu.Unlock()
	err = p.record(ctx, PhaseStart, p.opts.Restored, nil)
	if errors.Is(err, ErrFenced) {
		// Another start took this epoch between the read and the write:
		// read again and take the next one.
		return fmt.Errorf("publisher: epoch %d taken concurrently: %w", prev+1, errRetry)
	}
	if err == nil {
		p.mu.Lock()
		p.stats.Epoch = p.epoch
		p.mu.Unlock()
		p.opts.Log.Info("publisher: took epoch", "epoch", prev+1, "run", p.run, "restored_step", p.opts.Restored)
	}
	return err
}

var errRetry = errors.New("retry")

// Epoch is the epoch this publisher holds (0 before Ready).
func (p *Publisher) Epoch() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.Epoch
}

// Stats returns the counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Backlog = len(p.backlog)
	if !p.oldest.IsZero() {
		s.Staleness = time.Since(p.oldest)
	}
	return s
}

// Publish queues the changes of one step (the vectors are copied). It
// waits while the backlog is full, and returns ErrFenced once the
// publisher is fenced.
func (p *Publisher) Publish(ctx context.Context, step int64, updates []Update) error {
	p.mu.Lock()
	for p.fenced == nil && len(p.backlog) > 0 && len(p.backlog)+len(updates) > p.opts.MaxBacklog {
		ch := p.progress
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("publisher: backlog of %d full: %w", p.opts.MaxBacklog, ctx.Err())
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.fenced != nil {
		return p.fenced
	}
	if len(updates) == 0 {
		return nil
	}
	if p.oldest.IsZero() {
		p.oldest = time.Now()
	}
	for _, u := range updates {
		u.Model, u.Step, u.Run = p.opts.Model, step, p.run
		u.Vector = append([]float32(nil), u.Vector...)
		subj := p.subjectOf(u)
		p.backlog[subj] = u
	}
	p.queued++
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

// Flush waits until every change queued before it is committed, or the
// publisher is fenced (ErrFenced), or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	want := p.queued
	for p.fenced == nil && p.flushed < want {
		ch := p.progress
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("publisher: flush: %d subjects unpublished: %w", p.Stats().Backlog, ctx.Err())
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	return p.fenced
}

// flushAll publishes the backlog until it is empty.
func (p *Publisher) flushAll(ctx context.Context) error {
	for {
		ups, oldest := p.take()
		if len(ups) == 0 {
			return nil
		}
		if err := p.flush(ctx, ups); err != nil {
			p.putBack(ups, oldest)
			return err
		}
	}
}

// take empties the backlog into a list sorted by step.
func (p *Publisher) take() ([]Update, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ups := make([]Update, 0, len(p.backlog))
	for _, u := range p.backlog {
		ups = append(ups, u)
	}
	oldest := p.oldest
	p.taken = p.queued
	clear(p.backlog)
	p.oldest = time.Time{}
	sort.Slice(ups, func(i, j int) bool {
		if ups[i].Step != ups[j].Step {
			return ups[i].Step < ups[j].Step
		}
		return ups[i].ID < ups[j].ID
	})
	return ups, oldest
}

// putBack returns a failed flush to the backlog, under newer changes of
// the same subjects.
func (p *Publisher) putBack(ups []Update, oldest time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range ups {
		subj := p.subjectOf(u)
		if _, newer := p.backlog[subj]; !newer {
			p.backlog[subj] = u
		}
	}
	if p.oldest.IsZero() || oldest.Before(p.oldest) {
		p.oldest = oldest
	}
}

// subjectOf is the subject of an update: the ID's center, or its eviction.
func (p *Publisher) subjectOf(u Update) string {
	if u.Kind == Evict {
		return schemas.EvictSubject(p.opts.Model, u.ID)
	}
	return schemas.CenterSubject(p.opts.Model, u.ID)
}
