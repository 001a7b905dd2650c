package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Group runs stages together. The first stage whose Run fails cancels
// every other; Stop stops them one at a time, the last added first (a
// stage depends on those started before it), or in an order given; Close
// closes them. A Group is used by one goroutine (the one composing the
// pipeline); Failed and Err may be read from any.
type Group struct {
	ctx context.Context // cancelled by the first failure
	eg  *errgroup.Group
	log *slog.Logger

	mu      sync.Mutex
	members []*member
	closed  bool
}

type member struct {
	name   string
	s      Stage
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, set before done closes
}

// NewGroup returns a group whose stages run under ctx.
func NewGroup(ctx context.Context, log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	eg, gctx := errgroup.WithContext(ctx)
	return &Group{ctx: gctx, eg: eg, log: log}
}

// Go starts s.Run under its own context, derived from the group's. It
// must not be called after Stop.
func (g *Group) Go(name string, s Stage) {
	ctx, cancel := context.WithCancel(g.ctx)
	m := &member{name: name, s: s, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.members = append(g.members, m)
	g.mu.Unlock()
	g.eg.Go(func() error {
		err := s.Run(ctx)
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = nil // stopped, not failed
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			g.log.Error("stage failed", "stage", name, "err", err)
		}
		m.err = err
		close(m.done)
		return err
	})
}

func (g *Group) member(name string) (*member, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.members {
		if m.name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("stage %q was not started", name)
}

// WaitReady waits until every named stage is ready. It returns the error
// of a stage that ends first, that of any stage of the group that fails,
// or, when ctx ends, one naming the stage that was not ready.
func (g *Group) WaitReady(ctx context.Context, names ...string) error {
	for _, name := range names {
		m, err := g.member(name)
		if err != nil {
			return err
		}
		select {
		case <-m.s.Ready():
			continue
		case <-m.done:
			if m.err != nil {
				return m.err
			}
			return fmt.Errorf("%s: run returned before the stage was ready", name)
		case <-g.ctx.Done():
			if err := g.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%s: not ready: %w", name, context.Cause(g.ctx))
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready: %w", name, context.Cause(ctx))
		}
	}
	return nil
}

// Done is closed when the named stage's Run has returned (nil for a
// stage never started).
func (g *Group) Done(name string) <-chan struct{} {
	m, err := g.member(name)
	if err != nil {
		return nil
	}
	return m.done
}

// Failed is closed when a stage has failed (or the group's context
// ended).
func (g *Group) Failed() <-chan struct{} { return g.ctx.Done() }

// Context is the group's context: it ends when a stage fails or the
// context the group was made with ends. Work that uses the stages runs
// under it.
func (g *Group) Context() context.Context { return g.ctx }

// Err returns the first stage failure so far, or nil.
func (g *Group) Err() error {
	g.mu.Lock()
	ms := append([]*member(nil), g.members...)
	g.mu.Unlock()
	for _, m := range ms {
		select {
		case <-m.done:
			if m.err != nil {
				return m.err
			}
		default:
		}
	}
	return nil
}

// Stop stops the stages one at a time, each one's Run returning before
// the next is cancelled: first those named in first, in that order, then
// the others, the last added first. It waits for every goroutine and
// returns the first stage failure (again on a second call). The stages
// stay open, their results readable, until Close.
func (g *Group) Stop(first ...string) error {
	g.mu.Lock()
	ms := append([]*member(nil), g.members...)
	g.mu.Unlock()
	for _, name := range first {
		for _, m := range ms {
			if m.name == name {
				m.cancel()
				<-m.done
			}
		}
	}
	for i := len(ms) - 1; i >= 0; i-- {
		ms[i].cancel()
		<-ms[i].done
	}
	return g.eg.Wait()
}

// StopStages stops the named stages only, one at a time in that order,
// and returns the first of their failures; the others keep running.
func (g *Group) StopStages(names ...string) error {
	var errs []error
	for _, name := range names {
		m, err := g.member(name)
		if err != nil {
			return err
		}
		m.cancel()
		<-m.done
		errs = append(errs, m.err)
	}
	return errors.Join(errs...)
}

// Close stops the group if it is running (the last added first), then
// closes the stages, the last added first. It returns the first stage
// failure joined with every Close error; a second Close returns nil.
func (g *Group) Close() error {
	err := g.Stop()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	ms := append([]*member(nil), g.members...)
	g.mu.Unlock()
	errs := []error{err}
	for i := len(ms) - 1; i >= 0; i-- {
		if err := ms[i].s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: close: %w", ms[i].name, err))
		}
	}
	return errors.Join(errs...)
}
