package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// version is a center's version: (epoch, step), ordered lexicographically.
type version struct{ epoch, step uint64 }

func (v version) less(w version) bool {
	return v.epoch < w.epoch || (v.epoch == w.epoch && v.step < w.step)
}

func (v version) String() string { return fmt.Sprintf("(epoch %d, step %d)", v.epoch, v.step) }

// SubscriberStats is what the subscriber saw.
type SubscriberStats struct {
	Updates      int64 `json:"updates"`
	Evictions    int64 `json:"evictions"`
	Commits      int64 `json:"commits"`
	StepRecords  int64 `json:"step_records"` // commits and other step records (BEGIN, START)
	DecodeErrors int64 `json:"decode_errors"`
	Regressions  int64 `json:"regressions"`
	// RegressedIDs counts the IDs with at least one regression.
	RegressedIDs int      `json:"regressed_ids"`
	Examples     []string `json:"examples,omitempty"`
	IDsSeen      int      `json:"ids_seen"`
	LastSeq      uint64   `json:"last_seq"` // the last stream sequence delivered
}

// subscriber follows centers.<model>.> with a JetStream ordered consumer,
// decodes every message and keeps, per ID, the highest version seen: an
// update below it is a regression.
type subscriber struct {
	model string
	lim   schemas.Limits

	mu         sync.Mutex
	highest    map[uint64]version
	withCenter map[uint64]bool
	regressed  map[uint64]bool
	stats      SubscriberStats
	// lastUpdate and lastCommit are, per run (publishing trainer process),
	// the newest store times (JetStream metadata) of a center update and of
	// a step commit.
	lastUpdate, lastCommit map[string]time.Time
	// commitOf is the version of each run's last commit.
	commitOf map[string]version
	lastSeq  uint64
	changed  chan struct{} // closed and replaced at every message
}

func newSubscriber(model string, dim int) *subscriber {
	return &subscriber{model: model, lim: schemas.Limits{Dim: dim}, highest: map[uint64]version{},
		withCenter: map[uint64]bool{}, regressed: map[uint64]bool{}, changed: make(chan struct{}),
		lastUpdate: map[string]time.Time{}, lastCommit: map[string]time.Time{}, commitOf: map[string]version{}}
}

// run waits for the model's stream (the trainer creates it), then follows
// it from its first message until ctx ends.
func (s *subscriber) run(ctx context.Context, js jetstream.JetStream) error {
	name := schemas.CentersStream(s.model)
	stream, err := backoff.Retry(ctx, func() (jetstream.Stream, error) {
		return js.Stream(ctx, name)
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 1.5, MaxInterval: time.Second}),
		backoff.WithMaxElapsedTime(0))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscriber: stream %s: %w", name, err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{schemas.CentersSubjects(s.model)}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("subscriber: consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("subscriber: consume: %w", err)
	}
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
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("subscriber: %w", err)
		}
		stored, seq := time.Now(), uint64(0)
		if meta, err := msg.Metadata(); err == nil {
			stored, seq = meta.Timestamp, meta.Sequence.Stream
		}
		s.handle(msg.Subject(), msg.Data(), stored, seq)
	}
}

// handle decodes one message of the stream, stored at stored with
// sequence seq.
func (s *subscriber) handle(subject string, data []byte, stored time.Time, seq uint64) {
	s.mu.Lock()
	s.lastSeq = max(s.lastSeq, seq)
	defer func() {
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}()
	rest := strings.TrimPrefix(subject, schemas.CentersPrefix(s.model))
	if rest == "step" || strings.HasPrefix(rest, "step.") {
		c, err := schemas.DecodeStepCommit(data, s.lim)
		if err != nil {
			s.stats.DecodeErrors++
			return
		}
		s.stats.StepRecords++
		if c.GetPhase() == ffcpb.StepCommit_COMMIT {
			s.stats.Commits++
			s.lastCommit[c.GetRun()] = later(s.lastCommit[c.GetRun()], stored)
			s.commitOf[c.GetRun()] = version{epoch: c.GetEpoch(), step: c.GetStep()}
		}
		return
	}
	u, err := schemas.DecodeCenterUpdate(data, s.lim)
	if err != nil {
		s.stats.DecodeErrors++
		return
	}
	id := u.GetId()
	if tok := strings.TrimPrefix(rest, "evicted."); tok != strconv.FormatUint(id, 10) {
		s.stats.DecodeErrors++ // a subject that does not name the ID
		return
	}
	s.stats.Updates++
	s.lastUpdate[u.GetRun()] = later(s.lastUpdate[u.GetRun()], stored)
	if u.GetKind() == ffcpb.CenterUpdate_EVICT {
		s.stats.Evictions++
	} else {
		s.withCenter[id] = true
	}
	v := version{epoch: u.GetEpoch(), step: u.GetStep()}
	prev, seen := s.highest[id]
	switch {
	case seen && v.less(prev):
		s.stats.Regressions++
		s.regressed[id] = true
		if len(s.stats.Examples) < 5 {
			s.stats.Examples = append(s.stats.Examples, fmt.Sprintf("id %d: %v %s after %v", id, u.GetKind(), v, prev))
		}
	case !seen || prev.less(v):
		s.highest[id] = v
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Stats returns a snapshot.
func (s *subscriber) Stats() SubscriberStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Examples = append([]string(nil), st.Examples...)
	st.RegressedIDs = len(s.regressed)
	st.IDsSeen = len(s.highest)
	st.LastSeq = s.lastSeq
	return st
}

// IDsWithCenter lists the IDs some update gave a center.
func (s *subscriber) IDsWithCenter() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, 0, len(s.withCenter))
	for id := range s.withCenter {
		out = append(out, id)
	}
	return out
}

// waitUntil waits until cond (called with s.mu held) holds, and returns
// when it first saw it hold.
func (s *subscriber) waitUntil(ctx context.Context, cond func() bool) (time.Time, error) {
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-ch:
		}
	}
}

// runs returns the runs seen so far.
func (s *subscriber) runs() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for r := range s.lastCommit {
		out[r] = true
	}
	for r := range s.lastUpdate {
		out[r] = true
	}
	return out
}

// maxCommitted is the highest step committed so far (0 before any).
func (s *subscriber) maxCommitted() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m uint64
	for _, v := range s.commitOf {
		m = max(m, v.step)
	}
	return m
}

// waitRecovered waits until one run not in exclude has committed a step
// above above and published a center update, both stored at or after
// since: the pipeline makes progress past where it was. (After a kill,
// exclude holds the runs seen before it: the server may store what the
// killed process sent after its death.) It also describes the commit
// that showed it.
func (s *subscriber) waitRecovered(ctx context.Context, since time.Time, exclude map[string]bool, above uint64) (time.Time, string, error) {
	var by string
	at, err := s.waitUntil(ctx, func() bool {
		for run, c := range s.lastCommit {
			if !exclude[run] && s.commitOf[run].step > above && !c.Before(since) && !s.lastUpdate[run].Before(since) {
				by = fmt.Sprintf("run %s commit %v stored %s after", run, s.commitOf[run], c.Sub(since).Round(time.Millisecond))
				return true
			}
		}
		return false
	})
	return at, by, err
}
