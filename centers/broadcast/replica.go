package broadcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/schemas"
)

// ReplicaOptions configures NewReplica.
type ReplicaOptions struct {
	Model string
	Codec Codec
	// Dim is the center dimension; updates of another length are rejected.
	Dim int
	Log *slog.Logger
}

// Center is a replica's view of one ID.
type Center struct {
	ID     uint64
	Vector []float32
	Step   int64
	Epoch  uint64
	// InPool is false once the ID has been evicted from the trainer's pool
	// (its last center is kept).
	InPool bool
}

// Match is one search result.
type Match struct {
	ID    uint64
	Score float64 // cosine similarity
}

// ReplicaStats counts what a replica has seen.
type ReplicaStats struct {
	Applied  int64 // updates applied
	Stale    int64 // updates ignored because the ID already had a newer version
	Rejected int64 // messages that failed to decode or validate
	Commits  int64
	// LastStep is the step of the last COMMIT record applied, and Epoch
	// the newest epoch seen.
	LastStep int64
	Epoch    uint64
	Pending  int // updates waiting for their step's commit
	// Dropped counts updates never applied: a dead epoch's uncommitted
	// tail, and updates of an epoch older than the newest.
	Dropped int64
	// Fenced counts step records of an epoch older than the newest.
	Fenced int64
	Starts int64 // START records: starts of the training job
	// IDs counts the IDs with a center (removed ones excluded).
	IDs       int
	Evictions int64
	// Tombstones counts tombstones applied (IDs removed).
	Tombstones int64
	// Unsigned and BadSignature count the messages rejected (and in
	// Rejected) because the codec verifies signatures and they had none,
	// or one that does not verify: forged or foreign.
	Unsigned, BadSignature int64
}

// Replica keeps a copy of every center of a model.
type Replica struct {
	js   jetstream.JetStream
	opts ReplicaOptions

	mu     sync.RWMutex
	index  map[uint64]int
	ids    []uint64
	vecs   []float32 // len(ids)·Dim, rows L2-normalised
	vers   []Version
	inPool []bool
	// removed marks IDs whose last version is a tombstone: absent from
	// Get, Search and IDs, kept (without a vector) so that an older
	// update cannot bring them back.
	removed  []bool
	nRemoved int
	pending  map[Version][]Update // live updates awaiting a COMMIT that covers them
	dropped  int64
	epoch    uint64  // newest epoch seen
	last     Version // of the last COMMIT applied
	// bootstrap is the stream sequence the stream held when Run started:
	// messages up to it are the stream's last values, applied directly.
	bootstrap uint64
	stats     ReplicaStats
	// committed is closed and replaced at every commit applied (WaitStep).
	committed chan struct{}

	stage.Lifecycle
	streamSeq atomic.Uint64
}

// NewReplica returns a replica; Run fills it.
func NewReplica(js jetstream.JetStream, opts ReplicaOptions) (*Replica, error) {
	if err := ValidateModel(opts.Model); err != nil {
		return nil, err
	}
	if opts.Codec == nil || opts.Dim <= 0 {
		return nil, errors.New("replica: need a codec and a positive dimension")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Replica{js: js, opts: opts, index: map[uint64]int{}, pending: map[Version][]Update{}, last: Version{Step: -1}, committed: make(chan struct{})}, nil
}

// Ready (from stage.Lifecycle) is closed once the replica has applied
// everything the stream held when Run started.

// Close stops Run and waits for it; the replica's centers stay readable.
func (r *Replica) Close() error {
	r.Stop()
	return nil
}

// Run bootstraps from the stream and then follows it until ctx ends, then
// returns nil. The ordered consumer behind it recreates itself after a
// reconnect from the last sequence it delivered, so nothing is skipped or
// applied twice.
func (r *Replica) Run(ctx context.Context) error {
	ctx, end, err := r.Begin(ctx)
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	defer end()
	stream, err := r.openStream(ctx)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("replica: stream info: %w", err)
	}
	target := info.State.LastSeq
	r.mu.Lock()
	r.bootstrap = target
	r.mu.Unlock()
	if target == 0 || info.State.Msgs == 0 {
		r.SetReady()
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("replica: consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("replica: consume: %w", err)
	}
	// Next blocks until a message arrives or the iterator stops: stop it
	// when ctx ends, and join that goroutine whatever ends the loop.
	quit, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(quit); <-stopped }()
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-quit:
		}
		it.Stop()
	}()
	return r.follow(ctx, it, target)
}

// follow applies the stream's messages until the iterator stops.
func (r *Replica) follow(ctx context.Context, it jetstream.MessagesContext, target uint64) error {
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("replica: %w", err)
		}
		meta, merr := msg.Metadata()
		var seq uint64
		if merr == nil {
			seq = meta.Sequence.Stream
		}
		r.handle(msg.Subject(), msg.Data(), seq)
		if merr == nil {
			r.streamSeq.Store(meta.Sequence.Stream)
			if meta.Sequence.Stream >= target {
				r.SetReady()
			}
		}
	}
}

// handle applies one message of the stream (seq 0: unknown).
func (r *Replica) handle(subject string, data []byte, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasPrefix(subject, schemas.StepPrefix(r.opts.Model)) {
		c, err := r.opts.Codec.DecodeCommit(data)
		if err != nil {
			r.rejected(err)
			r.opts.Log.Warn("replica: rejected step record", "err", err)
			return
		}
		r.record(c)
		return
	}
	u, err := r.opts.Codec.DecodeUpdate(data)
	if err == nil && u.Kind != Evict && u.Kind != Tombstone && len(u.Vector) != r.opts.Dim {
		err = fmt.Errorf("%w: %d, want %d", ErrDim, len(u.Vector), r.opts.Dim)
	}
	if err == nil && !strings.HasPrefix(subject, schemas.CentersPrefix(r.opts.Model)) {
		err = fmt.Errorf("subject %s is not of model %s", subject, r.opts.Model)
	}
	if err != nil {
		r.rejected(err)
		r.opts.Log.Warn("replica: rejected center update", "subject", subject, "err", err)
		return
	}
	switch {
	case seq != 0 && seq <= r.bootstrap:
		// The stream's last value of the subject: the step records that
		// covered it are gone (the stream keeps the last record only).
		r.apply(u)
	case u.Epoch < r.epoch:
		// A stale trainer's update, published before it was fenced.
		r.dropped++
	default:
		// Applied when a COMMIT covers it: a step's changes land together,
		// and the tail a crashed trainer never committed never lands.
		r.pending[u.Version()] = append(r.pending[u.Version()], u)
	}
}

// rejected counts a message rejected for err; r.mu held.
func (r *Replica) rejected(err error) {
	r.stats.Rejected++
	switch {
	case errors.Is(err, schemas.ErrUnsigned):
		r.stats.Unsigned++
	case errors.Is(err, schemas.ErrBadSignature):
		r.stats.BadSignature++
	}
}

// record handles a step record: a newer epoch drops what older ones left
// pending (a dead trainer's uncommitted tail); a COMMIT applies every
// pending update it covers, oldest first.
func (r *Replica) record(c Commit) {
	if c.Epoch < r.epoch {
		r.stats.Fenced++
		return
	}
	if c.Epoch > r.epoch {
		for v, ups := range r.pending {
			if v.Epoch < c.Epoch {
				r.dropped += int64(len(ups))
				delete(r.pending, v)
			}
		}
		r.epoch = c.Epoch
	}
	switch c.Phase {
	case PhaseStart:
		r.stats.Starts++
		return
	case PhaseBegin:
		return
	}
	var vers []Version
	for v := range r.pending {
		if !c.Version().Less(v) {
			vers = append(vers, v)
		}
	}
	sort.Slice(vers, func(i, j int) bool { return vers[i].Less(vers[j]) })
	for _, v := range vers {
		for _, u := range r.pending[v] {
			r.apply(u)
		}
		delete(r.pending, v)
	}
	r.stats.Commits++
	r.last = c.Version()
	close(r.committed)
	r.committed = make(chan struct{})
}

// WaitStep waits until the newest epoch the replica has seen has
// committed step or a later one, or ctx ends.
func (r *Replica) WaitStep(ctx context.Context, step int64) error {
	for {
		r.mu.RLock()
		last, epoch, ch := r.last, r.epoch, r.committed
		r.mu.RUnlock()
		if last.Epoch == epoch && last.Step >= step {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replica: step %d of epoch %d not applied (last %+v): %w", step, epoch, last, context.Cause(ctx))
		}
	}
}

// apply writes one update unless the ID already has a newer version.
func (r *Replica) apply(u Update) {
	i, ok := r.index[u.ID]
	if ok && u.Version().Less(r.vers[i]) {
		r.stats.Stale++
		return
	}
	if u.Kind == Evict {
		if ok {
			r.inPool[i] = false
			r.stats.Evictions++
		}
		return
	}
	if !ok {
		i = len(r.ids)
		r.index[u.ID] = i
		r.ids = append(r.ids, u.ID)
		r.vecs = append(r.vecs, make([]float32, r.opts.Dim)...)
		r.vers = append(r.vers, Version{})
		r.inPool = append(r.inPool, false)
		r.removed = append(r.removed, false)
	}
	row := r.vecs[i*r.opts.Dim : (i+1)*r.opts.Dim]
	if u.Kind == Tombstone {
		clear(row)
		if !r.removed[i] {
			r.removed[i] = true
			r.nRemoved++
		}
		r.vers[i], r.inPool[i] = u.Version(), false
		r.stats.Tombstones++
		return
	}
	if r.removed[i] {
		r.removed[i] = false // added again after its removal
		r.nRemoved--
	}
	var ss float64
	for _, v := range u.Vector {
		ss += float64(v) * float64(v)
	}
	inv := float32(1)
	if ss > 0 {
		inv = float32(1 / math.Sqrt(ss))
	}
	for k, v := range u.Vector {
		row[k] = v * inv
	}
	r.vers[i], r.inPool[i] = u.Version(), true
	r.stats.Applied++
}

// Get returns the center of id.
func (r *Replica) Get(id uint64) (Center, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	i, ok := r.index[id]
	if !ok || r.removed[i] {
		return Center{}, false
	}
	return Center{ID: id, Vector: append([]float32(nil), r.vecs[i*r.opts.Dim:(i+1)*r.opts.Dim]...), Step: r.vers[i].Step, Epoch: r.vers[i].Epoch, InPool: r.inPool[i]}, true
}

// Search returns the k centers most similar (cosine) to q, best first, by
// exact search over every center.
func (r *Replica) Search(q []float32, k int) ([]Match, error) {
	if len(q) != r.opts.Dim {
		return nil, fmt.Errorf("search: %w: %d, want %d", ErrDim, len(q), r.opts.Dim)
	}
	var qn float64
	for _, v := range q {
		qn += float64(v) * float64(v)
	}
	if qn == 0 || math.IsNaN(qn) || math.IsInf(qn, 0) {
		return nil, errors.New("search: query vector is zero or not finite")
	}
	qn = math.Sqrt(qn)
	r.mu.RLock()
	defer r.mu.RUnlock()
	d := r.opts.Dim
	best := make([]Match, 0, k+1)
	for i, id := range r.ids {
		if r.removed[i] {
			continue
		}
		row := r.vecs[i*d : (i+1)*d]
		var s float64
		for j, v := range row {
			s += float64(v) * float64(q[j])
		}
		s /= qn
		if len(best) < k || s > best[len(best)-1].Score {
			pos := sort.Search(len(best), func(j int) bool { return best[j].Score < s })
			best = append(best, Match{})
			copy(best[pos+1:], best[pos:])
			best[pos] = Match{ID: id, Score: s}
			if len(best) > k {
				best = best[:k]
			}
		}
	}
	return best, nil
}

// Stats returns the counters.
func (r *Replica) Stats() ReplicaStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s := r.stats
	s.LastStep, s.Epoch, s.IDs, s.Dropped = r.last.Step, r.epoch, len(r.ids)-r.nRemoved, r.dropped
	for _, p := range r.pending {
		s.Pending += len(p)
	}
	return s
}

// IDs returns every ID with a center, ascending.
func (r *Replica) IDs() []uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]uint64, 0, len(r.ids)-r.nRemoved)
	for i, id := range r.ids {
		if !r.removed[i] {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// openStream returns the model's stream. It only reads the stream's info
// when the stream exists, so a subscriber whose NATS user may not manage
// streams (least privilege) follows it; when it does not exist yet, it
// creates it, and while that is refused (such a subscriber started before
// any trainer) or fails, it tries again with backoff until ctx ends.
func (r *Replica) openStream(ctx context.Context) (jetstream.Stream, error) {
	wait := backoff.NewExponentialBackOff()
	wait.MaxInterval = 5 * time.Second
	warned := false
	for {
		s, err := r.js.Stream(ctx, StreamName(r.opts.Model))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// A request the server refuses gets no answer: bound the wait.
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err = EnsureStream(cctx, r.js, r.opts.Model, 0)
			cancel()
		}
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("replica: %w", ctx.Err())
		}
		if !warned {
			warned = true
			r.opts.Log.Warn("replica: the centers stream cannot be read or created yet; trying again", "stream", StreamName(r.opts.Model), "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("replica: %w", ctx.Err())
		case <-time.After(wait.NextBackOff()):
		}
	}
}
