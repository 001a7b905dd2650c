package trainers

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// Config configures a Trainer. A zero field takes its default; New
// validates the result and does no I/O.
type Config struct {
	// Kafka: the bootstrap brokers, the trainers' consumer group and the
	// topics (defaults: schemas.TrainerGroup, schemas.TopicByID, ...).
	Brokers         []string
	Group           string
	TopicByID       string
	TopicInstance   string
	TopicDeadLetter string
	// KafkaTimeout bounds one request to Kafka: a dead-letter write or an
	// offset commit attempt (default 30 s; a busy host answers slowly).
	KafkaTimeout time.Duration

	// Model names the model: its NATS stream and its checkpoint prefix.
	Model string
	// Settings of the run as given. Pool 0 keeps the pool size Q of the
	// checkpoint Run restores (or derives it when there is none); Run
	// reconciles them with the checkpoint (settings.Resume) and derives
	// them for streaming: the ffc head, dual loader, CheckpointEvery and
	// CheckpointInterval.
	Settings settings.Settings
	Backend  kernels.Backend

	// Object storage for checkpoints: <Bucket>/checkpoints/<Model>/...
	// (Run creates the bucket when missing).
	S3     *minio.Client
	Bucket string
	// IdleCheckpoint: when no message arrives for this long, the steps done
	// since the last checkpoint are checkpointed and their offsets
	// committed (default 2 s). Producers' flow control waits for those
	// commits, so without it a producer lead smaller than what the trainer
	// consumes between checkpoints would stall both.
	IdleCheckpoint time.Duration
	// JoinAttempts bounds consecutive failures to join the consumer group
	// (about a second apart) before Run gives up (default 60).
	JoinAttempts int

	// JetStream for the center broadcast.
	JS jetstream.JetStream

	// Limits for decoding samples (image size, message size).
	Limits schemas.Limits
	// MaxSteps stops the trainer after that many steps in this run (0:
	// run until the context ends).
	MaxSteps int
	// ConsumeOnly consumes, validates, dead-letters and assembles batches
	// and commits their offsets as a trainer does, without the engine: no
	// step, no centers, no checkpoint (the committed offsets are the only
	// state). It measures the ingest path (benchmarks/pipeline); a step
	// counts one assembled batch.
	ConsumeOnly bool

	Log      *slog.Logger
	Registry prometheus.Registerer
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Group = cmp.Or(c.Group, schemas.TrainerGroup)
	c.TopicByID = cmp.Or(c.TopicByID, schemas.TopicByID)
	c.TopicInstance = cmp.Or(c.TopicInstance, schemas.TopicInstance)
	c.TopicDeadLetter = cmp.Or(c.TopicDeadLetter, schemas.TopicDeadLetter)
	c.KafkaTimeout = cmp.Or(c.KafkaTimeout, 30*time.Second)
	c.JoinAttempts = cmp.Or(c.JoinAttempts, 60)
	c.IdleCheckpoint = cmp.Or(c.IdleCheckpoint, 2*time.Second)
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	return c
}

// validate reports every problem of a defaulted Config, joined.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Brokers) == 0 {
		bad("no Kafka brokers")
	}
	if err := schemas.ValidateModel(c.Model); err != nil {
		bad("%w", err)
	}
	if c.Backend == nil && !c.ConsumeOnly {
		bad("no compute backend")
	}
	if (c.S3 == nil || c.Bucket == "") && !c.ConsumeOnly {
		bad("no object storage for checkpoints")
	}
	if c.JS == nil && !c.ConsumeOnly {
		bad("no JetStream for the center broadcast")
	}
	if h := c.Settings.Head; h != "" && h != "ffc" {
		bad("streaming training runs the ffc head, not %q", h)
	}
	if !c.Settings.DualLoader {
		bad("streaming training takes id pairs and instances: DualLoader must be set")
	}
	if _, err := c.Settings.Derive(settings.Streaming, 0); err != nil {
		bad("%w", err)
	}
	if c.MaxSteps < 0 || c.JoinAttempts < 1 || c.IdleCheckpoint < 0 || c.KafkaTimeout < 0 {
		bad("MaxSteps %d, JoinAttempts %d, IdleCheckpoint %v, KafkaTimeout %v: want ≥ 0, ≥ 1, ≥ 0, ≥ 0", c.MaxSteps, c.JoinAttempts, c.IdleCheckpoint, c.KafkaTimeout)
	}
	if len(errs) > 0 {
		return fmt.Errorf("trainer: config: %w", errors.Join(errs...))
	}
	return nil
}
