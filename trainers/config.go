package trainers

import (
	"cmp"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// Config configures a Trainer. A zero field takes its default; New
// validates the result and does no I/O.
type Config struct {
	// Kafka: the bootstrap brokers, the trainers' consumer group and the
	// topics (defaults: schemas.TrainerGroup, schemas.TopicByID, ...).
	Brokers []string
	Group   string
	// KafkaTLS, when set, encrypts every Kafka connection; KafkaSASL, when
	// set, authenticates it (e.g. SCRAM-SHA-512 from
	// github.com/segmentio/kafka-go/sasl/scram).
	KafkaTLS        *tls.Config
	KafkaSASL       sasl.Mechanism
	TopicByID       string
	TopicInstance   string
	TopicDeadLetter string
	// TopicFresh is the fresh lane (default schemas.TopicFresh): pairs of
	// newly announced IDs, drained before the other topics, and REMOVE
	// records. A fresh pair of an ID not in the pool gets a provisional
	// center between steps (see Trainer).
	TopicFresh string
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
	// ConnectTimeout bounds how long Run waits for Kafka at start: when no
	// metadata request or group join has succeeded for that long before
	// the trainer first joined its group, Run returns an error wrapping
	// ErrKafkaUnreachable (default 60 s). Missing topics are waited for
	// without bound (Health says so), and once the trainer has joined,
	// broker outages are ridden out however long they last.
	ConnectTimeout time.Duration
	// PartitionWatchInterval is how often the group checks its topics'
	// partition counts and rejoins when they change (default 5 s).
	PartitionWatchInterval time.Duration

	// DeadLetterMaxBytes bounds a dead-letter record, key and headers
	// included: a larger rejected message is dead-lettered with its
	// payload truncated and its original size in a header (default 512
	// KiB, well below Kafka's default 1 MB message limit; at least 4 KiB).
	DeadLetterMaxBytes int
	// DeadLetterRetry bounds the attempts of each dead-letter write
	// (default: 5 attempts, 100 ms to 2 s apart). A write that still fails
	// is logged and counted with the offset it skipped; it never stops the
	// trainer.
	DeadLetterRetry Backoff
	// StorageRetry bounds each object-storage call of a checkpoint (get,
	// put, list, delete; default: 200 ms to 5 s apart for up to 30 s). A
	// checkpoint that still fails does not stop the trainer: it trains on,
	// commits no offset past the last durable checkpoint, reports the
	// "storage" Health condition failing and checkpoints again when the
	// next one is due.
	StorageRetry Backoff

	// JetStream for the center broadcast.
	JS jetstream.JetStream
	// SigningKey, when set, signs every center update and step commit
	// (ed25519; subscribers verify with its public key), and the trainer's
	// publisher is not fenced by a step record that key did not sign.
	SigningKey ed25519.PrivateKey

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
	c.TopicFresh = cmp.Or(c.TopicFresh, schemas.TopicFresh)
	c.KafkaTimeout = cmp.Or(c.KafkaTimeout, 30*time.Second)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, 60*time.Second)
	c.PartitionWatchInterval = cmp.Or(c.PartitionWatchInterval, 5*time.Second)
	c.DeadLetterMaxBytes = cmp.Or(c.DeadLetterMaxBytes, 512<<10)
	c.DeadLetterRetry = c.DeadLetterRetry.or(deadLetterRetry())
	c.StorageRetry = c.StorageRetry.or(storageRetry())
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
	if c.MaxSteps < 0 {
		bad("MaxSteps %d: want ≥ 0", c.MaxSteps)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"IdleCheckpoint", c.IdleCheckpoint}, {"KafkaTimeout", c.KafkaTimeout}, {"ConnectTimeout", c.ConnectTimeout}, {"PartitionWatchInterval", c.PartitionWatchInterval}} {
		if d.v < 0 {
			bad("%s %v: want ≥ 0", d.name, d.v)
		}
	}
	if c.DeadLetterMaxBytes < minDeadLetterBytes {
		bad("DeadLetterMaxBytes %d: want ≥ %d", c.DeadLetterMaxBytes, minDeadLetterBytes)
	}
	if len(errs) > 0 {
		return fmt.Errorf("trainer: config: %w", errors.Join(errs...))
	}
	return nil
}

// dialer is the Kafka dialer of the consumer group and the partition
// readers (kafka-go takes a Dialer there, not a Transport): the defaults
// plus KafkaTLS and KafkaSASL.
func (c Config) dialer() *kafka.Dialer {
	return &kafka.Dialer{ClientID: "ffc-trainer", Timeout: 10 * time.Second, DualStack: true, TLS: c.KafkaTLS, SASLMechanism: c.KafkaSASL}
}
