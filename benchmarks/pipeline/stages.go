package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// readyTimeout bounds the wait for a stage to become ready.
const readyTimeout = 90 * time.Second

// settings are the trainer's settings as given (the trainer derives and
// validates them): streaming defaults, an mlp backbone of the flags'
// shape, a checkpoint (and offset commit) every ckptEvery steps.
func (o options) settings(ckptEvery int) settings.Settings {
	s := settings.Defaults(settings.Streaming)
	s.Backbone, s.Hidden, s.Dim = "mlp", o.hidden, o.dim
	s.Batch, s.Pool, s.LR, s.Seed = o.batch, o.pool, 0.1, 1
	s.CheckpointEvery, s.CheckpointInterval = ckptEvery, time.Minute
	return s
}

// freshSettings are the fresh phase's trainer settings as given: those of
// ffc demo (D = --dim, B = --fresh-batch, the pool left to derivation:
// 3·B), the --fresh-backbone backbone (mlp: --hidden), a checkpoint (and
// offset commit) every --fresh-ckpt-every steps.
func (o options) freshSettings() settings.Settings {
	s := settings.Defaults(settings.Demo)
	s.Backbone, s.Hidden, s.Dim = o.freshBackbone, o.hidden, o.dim
	s.Batch, s.Pool, s.Seed = o.freshBatch, 0, 1
	s.CheckpointEvery = o.freshCkptEvery
	return s
}

// notify returns the bucket notification topic and target ARN the
// producer uses: on real services, FFC_S3_NOTIFY_TOPIC and
// FFC_S3_NOTIFY_ARN (deploy/local/services.sh); none on the embedded
// stack (its object store sends no notifications).
func (b *bench) notify() (topic, arn string) {
	if b.name != "real" || os.Getenv("FFC_S3_NOTIFY_TOPIC") == "" {
		return "", ""
	}
	return os.Getenv("FFC_S3_NOTIFY_TOPIC"), os.Getenv("FFC_S3_NOTIFY_ARN")
}

// pipeSpec is what startPipeline starts: the producer's lead and whether
// it takes bucket notifications (b.notify), and the trainer's settings,
// mode and metrics registry.
type pipeSpec struct {
	lead        int
	notify      bool
	set         settings.Settings
	consumeOnly bool
	reg         prometheus.Registerer
}

// producer returns the real producer on the phase's topics, with flow
// control against the phase's trainer group at lead, connected as the
// producer role (b.roles).
func (b *bench) producer(t phaseNames, lead int, notify bool) (*producers.Producer, error) {
	cfg := producers.Config{
		Brokers: b.ep.brokers, KafkaTLS: b.roles.producer.tls, KafkaSASL: b.roles.producer.sasl, S3: b.roles.producerS3, Bucket: b.bucket,
		TopicByID: t.byID, TopicInstance: t.instance, TopicDeadLetter: t.dead, TopicFresh: t.fresh, Partitions: b.o.partitions,
		TrainerGroup: t.group, MaxLead: lead, Concurrency: b.o.concurrency, PollInterval: b.o.pollInterval,
		Seed: 1, Log: b.log.With("component", "producer"),
	}
	if notify {
		cfg.NotifyTopic, cfg.NotifyARN = b.notify()
	}
	p, err := producers.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	return p, nil
}

// trainer returns the real trainer on the phase's topics and group, with
// settings set, connected as the trainer role (b.roles; its NATS
// connection is b.js). consumeOnly runs it without the engine (no backend,
// object storage or JetStream: it only commits offsets); otherwise it
// trains, publishes centers and checkpoints. Its metrics go to reg.
func (b *bench) trainer(t phaseNames, set settings.Settings, consumeOnly bool, reg prometheus.Registerer) (*trainers.Trainer, error) {
	cfg := trainers.Config{
		Brokers: b.ep.brokers, KafkaTLS: b.roles.trainer.tls, KafkaSASL: b.roles.trainer.sasl, Group: t.group, TopicByID: t.byID, TopicInstance: t.instance, TopicDeadLetter: t.dead,
		TopicFresh: t.fresh, Model: t.model, Settings: set, ConsumeOnly: consumeOnly,
		Log: b.log.With("component", "trainer"), Registry: reg,
	}
	if !consumeOnly {
		cfg.Backend, cfg.S3, cfg.Bucket, cfg.JS = b.be, b.roles.trainerS3, b.bucket, b.js
		b.models = append(b.models, t.model)
	}
	tr, err := trainers.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	return tr, nil
}

// stages are one phase's running stages: a stage.Group under the stack's
// context, and the names of the stages that must run until the phase
// stops them.
type stages struct {
	*stage.Group
	names []string
}

func (b *bench) stages(ctx context.Context) *stages {
	return &stages{Group: stage.NewGroup(ctx, b.log)}
}

// start runs s as the stage name and, when ready is set, waits until it
// is ready.
func (s *stages) start(ctx context.Context, name string, st stage.Stage, ready bool) error {
	s.Go(name, st)
	s.names = append(s.names, name)
	if !ready {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.WaitReady(wctx, name); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return nil
}

// check returns the failure of a stage, or an error naming a stage whose
// Run returned by itself.
func (s *stages) check() error {
	if err := s.Err(); err != nil {
		return err
	}
	for _, name := range s.names {
		select {
		case <-s.Done(name):
			return fmt.Errorf("%s: stopped early", name)
		default:
		}
	}
	select {
	case <-s.Failed():
		return fmt.Errorf("stages: %w", context.Cause(s.Context()))
	default:
	}
	return nil
}

// wait waits d while every stage runs (checking every 20 ms); it returns
// early with check's error or when ctx ends.
func (s *stages) wait(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if err := s.check(); err != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.Failed():
		case <-time.After(min(left, 20*time.Millisecond)):
		}
	}
}

// until waits, checking the stages, until ok holds or limit has passed
// (then it returns an error saying what).
func (s *stages) until(ctx context.Context, limit time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %s", what, limit)
		}
		if err := s.wait(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// stop stops the stages, those named first in that order, and returns
// the first failure.
func (s *stages) stop(first ...string) error {
	if err := s.Stop(first...); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	return nil
}

// close stops and closes the stages (for a deferred call): their error
// becomes *err when there is none yet; otherwise it is the same failure
// again, or one that follows from it, and is only logged.
func (s *stages) close(err *error, log *slog.Logger) {
	cerr := s.Close()
	switch {
	case cerr == nil:
	case *err == nil:
		*err = fmt.Errorf("close: %w", cerr)
	default:
		log.Debug("pipeline: close stages after an error", "err", cerr)
	}
}

// startPipeline starts a phase's producer (the topics, the fresh lane's
// included, exist once it is ready) and then its trainer, as stages of a
// new group that the caller closes. On the secure stack their ACLs are
// provisioned first.
func (b *bench) startPipeline(ctx context.Context, t phaseNames, spec pipeSpec) (*stages, *producers.Producer, *trainers.Trainer, error) {
	s := b.stages(ctx)
	if err := b.provision(ctx, t); err != nil {
		return s, nil, nil, err
	}
	p, err := b.producer(t, spec.lead, spec.notify)
	if err != nil {
		return s, nil, nil, err
	}
	if err := s.start(ctx, "producer", p, true); err != nil {
		return s, nil, nil, err
	}
	tr, err := b.trainer(t, spec.set, spec.consumeOnly, spec.reg)
	if err != nil {
		return s, nil, nil, err
	}
	if err := s.start(ctx, "trainer", tr, false); err != nil {
		return s, nil, nil, err
	}
	return s, p, tr, nil
}
