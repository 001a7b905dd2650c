package trainers

import (
	"context"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Backoff bounds the retries of one call: the waits between attempts grow
// exponentially from Initial (doubling, ±20 % jitter) up to Max, and the
// call is given up after Tries attempts or once Elapsed has passed,
// whichever comes first. A zero field takes the default of the Config
// field that holds it; a zero Tries or Elapsed alone means no bound of
// that kind.
type Backoff struct {
	Initial, Max time.Duration
	Tries        uint
	Elapsed      time.Duration
}

// storageRetry is the default bound of each object-storage call of a
// checkpoint (Config.StorageRetry).
func storageRetry() Backoff {
	return Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Elapsed: 30 * time.Second}
}

// deadLetterRetry is the default bound of each dead-letter write
// (Config.DeadLetterRetry).
func deadLetterRetry() Backoff {
	return Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Tries: 5, Elapsed: 30 * time.Second}
}

// reconnect paces the unbounded waits on Kafka: for its topics, for a
// reader whose fetches fail.
func reconnect() Backoff { return Backoff{Initial: 200 * time.Millisecond, Max: 2 * time.Second} }

// or returns b with each zero duration taken from d, and d's bounds when
// b has none.
func (b Backoff) or(d Backoff) Backoff {
	if b.Initial <= 0 {
		b.Initial = d.Initial
	}
	if b.Max <= 0 {
		b.Max = max(d.Max, b.Initial)
	}
	if b.Tries == 0 && b.Elapsed <= 0 {
		b.Tries, b.Elapsed = d.Tries, d.Elapsed
	}
	return b
}

// exponential is the backoff.BackOff of b.
func (b Backoff) exponential() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: b.Initial, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: b.Max}
}

// retry runs op until it succeeds, returns a backoff.Permanent error or
// b's bounds are reached, logging each retry at debug level. It returns
// op's last error (ctx's when ctx ended first).
func retry[T any](ctx context.Context, b Backoff, log *slog.Logger, what string, op func() (T, error)) (T, error) {
	attempt := 0
	opts := []backoff.RetryOption{
		backoff.WithBackOff(b.exponential()),
		backoff.WithMaxElapsedTime(b.Elapsed),
		backoff.WithNotify(func(err error, next time.Duration) {
			if log != nil {
				log.Debug("trainer: retrying "+what, "attempt", attempt, "in", next, "err", err)
			}
		}),
	}
	if b.Tries > 0 {
		opts = append(opts, backoff.WithMaxTries(b.Tries))
	}
	return backoff.Retry(ctx, func() (T, error) {
		attempt++
		return op()
	}, opts...)
}

// pacer paces an unbounded retry loop: each wait is the next of an
// exponential backoff, and reset starts over after a success.
type pacer struct{ b *backoff.ExponentialBackOff }

func newPacer(b Backoff) *pacer {
	p := &pacer{b: b.exponential()}
	p.b.Reset()
	return p
}

func (p *pacer) reset() { p.b.Reset() }

// wait sleeps the next backoff or until ctx ends; false when ctx ended.
func (p *pacer) wait(ctx context.Context) bool {
	tm := time.NewTimer(p.b.NextBackOff())
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
