package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Stage is a long-running part of the pipeline (see the package comment
// for the contract).
type Stage interface {
	// Run works until ctx ends, then returns nil; an error means the stage
	// could not start or had to stop. It may be called once.
	Run(ctx context.Context) error
	// Ready is closed once the stage does its job.
	Ready() <-chan struct{}
	// Close stops a running Run, waits for it and releases what the stage
	// holds. It is idempotent.
	Close() error
}

// ErrRunTwice is what a second Run returns.
var ErrRunTwice = errors.New("run called twice")

// ErrClosed is what Run returns on a closed stage.
var ErrClosed = errors.New("stage closed")

// Lifecycle is the bookkeeping of the Stage contract, for a stage to
// embed. Its zero value is ready to use. A stage's Run starts with
//
//	ctx, end, err := s.Begin(ctx)
//	if err != nil {
//		return err
//	}
//	defer end()
//
// works under the returned ctx (which Stop cancels), calls SetReady once
// it does its job, and its Close calls Stop first.
type Lifecycle struct {
	once      sync.Once
	ready     chan struct{}
	readyOnce sync.Once
	started   atomic.Bool
	closed    atomic.Bool

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns; nil before Begin
}

func (l *Lifecycle) init() { l.once.Do(func() { l.ready = make(chan struct{}) }) }

// Begin starts Run: it refuses a second call and a closed stage, and
// returns the context Run works under (cancelled by Stop or when ctx
// ends) and the function Run must defer.
func (l *Lifecycle) Begin(ctx context.Context) (context.Context, func(), error) {
	l.init()
	if !l.started.CompareAndSwap(false, true) {
		return nil, nil, ErrRunTwice
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, nil, ErrClosed
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	l.cancel, l.done = cancel, done
	return rctx, func() { cancel(); close(done) }, nil
}

// SetReady closes Ready's channel (once).
func (l *Lifecycle) SetReady() {
	l.init()
	l.readyOnce.Do(func() { close(l.ready) })
}

// Ready is closed once the stage called SetReady.
func (l *Lifecycle) Ready() <-chan struct{} {
	l.init()
	return l.ready
}

// Stop marks the stage closed, cancels a running Run and waits for it to
// return. It reports whether this was the first Stop, so that Close
// releases resources once.
func (l *Lifecycle) Stop() (first bool) {
	l.mu.Lock()
	first = l.closed.CompareAndSwap(false, true)
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return first
}

// WaitReady waits until s is ready. runDone delivers the result of s.Run
// (nil when the caller does not run it): if Run ends first, WaitReady
// returns its error, or says that Run ended before the stage was ready.
// When ctx ends first, the error names the stage that was not ready.
func WaitReady(ctx context.Context, name string, s Stage, runDone <-chan error) error {
	select {
	case <-s.Ready():
		return nil
	case err := <-runDone:
		if err == nil {
			err = errors.New("run returned before the stage was ready")
		}
		return fmt.Errorf("%s: %w", name, err)
	case <-ctx.Done():
		return fmt.Errorf("%s: not ready: %w", name, context.Cause(ctx))
	}
}
