package producers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/minio/minio-go/v7"
)

// Health conditions of a Producer (Producer.Health).
const (
	// CondStarted fails until Run has started both streams (Ready).
	CondStarted = "producer.started"
	// CondKafka fails while Kafka cannot be reached at start or refuses
	// writes (the streams are held meanwhile).
	CondKafka = "producer.kafka"
	// CondObjectStorage fails while object storage cannot be reached at
	// start or a request fails after its retries.
	CondObjectStorage = "producer.object-storage"
	// CondLag fails while the trainers' lag cannot be measured (flow
	// control holds the streams meanwhile).
	CondLag = "producer.lag"
)

// Errors of Run when a service is not there within Config.ConnectTimeout.
var (
	ErrKafkaUnreachable         = errors.New("kafka unreachable")
	ErrObjectStorageUnreachable = errors.New("object storage unreachable")
)

// connect runs op until it succeeds, with exponential backoff and jitter,
// for at most ConnectTimeout (negative: until ctx ends): the wait for a
// service at start. op marks an error that no retry mends with
// backoff.Permanent, which ends the wait at once. Each failure sets the
// health condition cond (logged when it changes); a summary is logged
// every outageSummaryEvery.
func (p *Producer) connect(ctx context.Context, service string, unreachable error, cond string, op func(context.Context) error) error {
	cctx, cancel := context.WithCancel(ctx)
	if p.cfg.ConnectTimeout > 0 {
		cctx, cancel = context.WithTimeout(ctx, p.cfg.ConnectTimeout)
	}
	defer cancel()
	start, logged, attempts := time.Now(), time.Now(), 0
	var last error
	_, err := backoff.Retry(cctx, func() (struct{}, error) {
		attempts++
		err := op(cctx)
		if err == nil || ctx.Err() != nil {
			return struct{}{}, err
		}
		if last == nil || cctx.Err() == nil {
			last = err
		}
		p.setCond(cond, false, fmt.Sprintf("%s: %v", service, err))
		if time.Since(logged) >= outageSummaryEvery {
			logged = time.Now()
			p.log.Warn("still waiting for "+service, "for", time.Since(start).Round(time.Second), "attempts", attempts, "err", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 200 * time.Millisecond, RandomizationFactor: 0.3, Multiplier: 2, MaxInterval: 5 * time.Second,
	}), backoff.WithMaxElapsedTime(0))
	switch {
	case err == nil:
		p.setCond(cond, true, "")
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case cctx.Err() != nil:
		return fmt.Errorf("producers: %s: %w: gave up after %v (%d attempts): %w", service, unreachable, p.cfg.ConnectTimeout, attempts, last)
	}
	return fmt.Errorf("producers: %s: %w", service, err)
}

// retryS3 runs the object-storage request op until it succeeds, fails
// with an error that is not transient, ctx ends or S3RetryTimeout
// passes, with exponential backoff and jitter. Each retry is counted; the
// object-storage condition fails when the retries run out and holds again
// after a success.
func retryS3[T any](ctx context.Context, p *Producer, op func() (T, error)) (T, error) {
	v, err := backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		if err != nil && !s3Transient(err) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 50 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second,
	}), backoff.WithMaxElapsedTime(max(p.cfg.S3RetryTimeout, 0)), backoff.WithNotify(func(error, time.Duration) {
		p.s3Retries.Add(1)
		p.met.s3Retries.Inc()
	}))
	switch {
	case err == nil:
		p.s3OK()
	case ctx.Err() == nil && s3Transient(err):
		p.s3Failed(err)
	}
	return v, err
}

// s3Transient reports whether an object-storage error may go away: no
// answer (a network error), a 5xx, 408 or 429. An answer that says the
// request is wrong (NoSuchKey, NoSuchBucket, 403) is not transient, nor is
// the end of the caller's context.
func s3Transient(err error) bool {
	if errors.Is(err, errGone) || errors.Is(err, context.Canceled) {
		return false
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) || resp.StatusCode == 0 {
		return true
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	}
	return resp.StatusCode >= 500
}

// s3OK sets the object-storage condition when it failed.
func (p *Producer) s3OK() {
	if !p.s3Down.Load() {
		return
	}
	p.s3Mu.Lock()
	defer p.s3Mu.Unlock()
	if p.s3Down.Load() {
		p.s3Down.Store(false)
		p.setCond(CondObjectStorage, true, "")
	}
}

// s3Failed fails the object-storage condition.
func (p *Producer) s3Failed(err error) {
	p.s3Failures.Add(1)
	p.s3Mu.Lock()
	defer p.s3Mu.Unlock()
	p.s3Down.Store(true)
	p.setCond(CondObjectStorage, false, err.Error())
}
