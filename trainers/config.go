package trainers

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/engine"
)

// Default topic and group names, shared with the producers.
const (
	DefaultTopicByID       = "samples.byid"
	DefaultTopicInstance   = "samples.instance"
	DefaultTopicDeadLetter = "samples.deadletter"
	DefaultGroup           = "ffc-trainer"
)

// Config configures a Trainer.
type Config struct {
	// Kafka.
	Brokers         []string
	Group           string
	TopicByID       string
	TopicInstance   string
	TopicDeadLetter string

	// Model names the model: its NATS stream and its checkpoint prefix.
	Model string
	// Engine configures the FFC engine (Head must be ffc; KeepFeatures is
	// set by the trainer).
	Engine  engine.Options
	Backend kernels.Backend

	// Object storage for checkpoints: <Bucket>/checkpoints/<Model>/...
	S3     *minio.Client
	Bucket string
	// CheckpointEvery and CheckpointInterval: a checkpoint is written every
	// that many steps or that much time, whichever comes first (defaults
	// 50 steps, 30 s), and at shutdown. Offsets are committed after it.
	CheckpointEvery    int
	CheckpointInterval time.Duration
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

	Log      *slog.Logger
	Registry prometheus.Registerer
}

func (c *Config) defaults() error {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.TopicByID == "" {
		c.TopicByID = DefaultTopicByID
	}
	if c.TopicInstance == "" {
		c.TopicInstance = DefaultTopicInstance
	}
	if c.TopicDeadLetter == "" {
		c.TopicDeadLetter = DefaultTopicDeadLetter
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 50
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 30 * time.Second
	}
	if c.JoinAttempts == 0 {
		c.JoinAttempts = 60
	}
	if c.IdleCheckpoint == 0 {
		c.IdleCheckpoint = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	switch {
	case len(c.Brokers) == 0:
		return errors.New("trainer: no Kafka brokers")
	case c.Model == "":
		return errors.New("trainer: no model name")
	case c.Backend == nil:
		return errors.New("trainer: no compute backend")
	case c.S3 == nil || c.Bucket == "":
		return errors.New("trainer: no object storage for checkpoints")
	case c.JS == nil:
		return errors.New("trainer: no JetStream for the center broadcast")
	case c.Engine.Head != "" && c.Engine.Head != engine.HeadFFC:
		return fmt.Errorf("trainer: streaming training runs the ffc head, not %q", c.Engine.Head)
	case c.Engine.Batch%2 != 0:
		return fmt.Errorf("trainer: batch %d must be even (B instances split into halves)", c.Engine.Batch)
	}
	c.Engine.Head = engine.HeadFFC
	c.Engine.KeepFeatures = true
	return nil
}
