package producers

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/schemas"
)

// Defaults of Config.
const (
	DefaultMaxLead          = 4096
	DefaultPartitions       = 8
	DefaultPollInterval     = 200 * time.Millisecond
	DefaultFreshMaxLead     = 1024
	DefaultFreshPairs       = 2
	DefaultAnnounceLookback = 10 * time.Second
	DefaultRescanInterval   = 5 * time.Minute
	DefaultFlowInterval     = 200 * time.Millisecond
	DefaultConcurrency      = 8
	DefaultMaxInFlight      = 1024
	DefaultKafkaTimeout     = 30 * time.Second
	DefaultConnectTimeout   = 60 * time.Second
	DefaultS3RetryTimeout   = 30 * time.Second
)

// Config configures a Producer. A zero field takes its default; New
// validates the result. The shape follows nats-server's Options: one
// struct, validated once, then New, Run and Ready.
type Config struct {
	// Brokers are the Kafka bootstrap addresses (host:port). Required.
	Brokers []string
	// KafkaTLS, when set, encrypts every Kafka connection; KafkaSASL, when
	// set, authenticates it (e.g. SCRAM-SHA-512 from
	// github.com/segmentio/kafka-go/sasl/scram).
	KafkaTLS  *tls.Config
	KafkaSASL sasl.Mechanism
	// S3 is the object-storage client; Bucket the bucket holding
	// ids/<id>/<name>.png and announce/. Both required; the bucket must
	// exist when Run starts.
	S3     *minio.Client
	Bucket string

	// Topics; defaults schemas.TopicByID, schemas.TopicInstance and
	// schemas.TopicDeadLetter.
	TopicByID       string
	TopicInstance   string
	TopicDeadLetter string
	// TopicFresh is the fresh lane (default schemas.TopicFresh), created
	// with Partitions partitions: the pairs of newly announced IDs and the
	// REMOVE records of removed ones, key = the ID. It has a flow control
	// of its own (FreshMaxLead), so a new ID never waits behind the id
	// and instance streams' lead.
	TopicFresh string
	// FreshMaxLead bounds the fresh lane's messages written and not yet
	// committed by TrainerGroup (default 1024; negative: no bound).
	FreshMaxLead int
	// FreshPairs is the number of id pairs of a new ID written to the
	// fresh lane when it is announced (default 2); it also joins the id
	// rotation ahead of the uniform order.
	FreshPairs int
	// NotifyTopic, when set, is a Kafka topic on which the object store
	// publishes its bucket notifications (S3 event records as JSON, as
	// MinIO's Kafka notification target writes them): new announcement
	// and removal markers are handled as soon as they are written, and
	// created or removed images of known IDs update the catalog. Polling
	// announce/ goes on as the fallback (PollInterval).
	NotifyTopic string
	// NotifyARN, when set with NotifyTopic, is the notification target
	// (arn:minio:sqs::FFC:kafka as deploy/local/services.sh configures
	// MinIO; the ARN is case-sensitive) that Run configures on Bucket for
	// object created/removed events under announce/ and ids/; empty
	// leaves the bucket's notification configuration to the operator.
	NotifyARN string
	// Partitions of the id and instance topics when Run creates them
	// (default 8); DeadLetterPartitions of the dead-letter topic (default
	// 1); ReplicationFactor of all three (default 1). Existing topics are
	// used as they are.
	Partitions           int
	DeadLetterPartitions int
	ReplicationFactor    int

	// TrainerGroup is the consumer group whose committed offsets flow
	// control measures the lead against (default schemas.TrainerGroup).
	TrainerGroup string
	// MaxLead bounds, per topic, the messages written but not yet
	// committed by TrainerGroup (Σ over partitions of end offset −
	// committed offset). Default 4096 (the commands derive it from the
	// trainers' settings: settings.DefaultMaxLead); negative turns flow
	// control off (the lag is still measured and reported).
	MaxLead int
	// FlowInterval is how often the lag is measured (default 200 ms).
	FlowInterval time.Duration
	// KafkaTimeout bounds one request to Kafka (metadata, topic creation,
	// a lag measurement; default 30 s). A busy host answers slowly: a
	// measurement that times out holds the streams until the next one
	// succeeds, and topic creation is retried with backoff.
	KafkaTimeout time.Duration
	// MaxInFlight bounds the messages handed to the Kafka writer and not
	// yet acknowledged, per topic, whatever MaxLead says (default 1024).
	// Messages Kafka refused and that wait for a retry count as in flight.
	MaxInFlight int
	// ConnectTimeout bounds the wait at start for each service — object
	// storage (the bucket, the first listing) and Kafka (the topics) —
	// whose requests are retried with backoff until then: Run then fails
	// with ErrObjectStorageUnreachable or ErrKafkaUnreachable and the last
	// error. Default 60 s; negative waits until ctx ends. Once started, an
	// outage is never fatal: the producer holds its streams and retries.
	ConnectTimeout time.Duration
	// S3RetryTimeout bounds the retries, with exponential backoff and
	// jitter, of one object-storage request once started (an image GET, a
	// listing) that fails with a transient error (no answer, 5xx, 429);
	// the image is then skipped for now and the object-storage health
	// condition fails. Errors that say the request is wrong (NoSuchKey,
	// 403) are not retried. Default 30 s; negative retries until ctx ends.
	S3RetryTimeout time.Duration

	// Shard selects the IDs this producer owns when several split a
	// bucket; the zero value owns all.
	Shard Shard

	// PollInterval is how often announce/ is polled for new IDs (default
	// 200 ms). AnnounceLookback is how far behind the newest announcement
	// seen each poll lists again, so that markers that land late (a slow
	// PUT, a skewed uploader clock) are not missed (default 10 s).
	PollInterval     time.Duration
	AnnounceLookback time.Duration
	// RescanInterval is the period of the full listing of ids/ that
	// catches IDs uploaded without an announcement and drops deleted ones
	// (default 5 min; negative disables).
	RescanInterval time.Duration

	// Concurrency is the number of fetch workers per stream (default 8):
	// S3 GETs are latency bound.
	Concurrency int
	// Limits validate every image before it is sent (zero: schemas
	// defaults, 32×32 PNGs of at most 256 KiB).
	Limits schemas.Limits
	// Source names this producer in the messages (default
	// "producer-<host>-<index>of<count>").
	Source string
	// Seed makes the shuffles reproducible; 0 draws one at random.
	Seed uint64

	// Registry receives the metrics; nil creates one per Producer (see
	// Producer.Gatherer). No metric is registered globally. The commands
	// serve it with internal/metrics.
	Registry prometheus.Registerer

	// Log receives progress and problems; nil discards.
	Log *slog.Logger
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.TopicByID = cmp.Or(c.TopicByID, schemas.TopicByID)
	c.TopicInstance = cmp.Or(c.TopicInstance, schemas.TopicInstance)
	c.TopicDeadLetter = cmp.Or(c.TopicDeadLetter, schemas.TopicDeadLetter)
	c.TopicFresh = cmp.Or(c.TopicFresh, schemas.TopicFresh)
	c.FreshMaxLead = cmp.Or(c.FreshMaxLead, DefaultFreshMaxLead)
	c.FreshPairs = cmp.Or(c.FreshPairs, DefaultFreshPairs)
	c.TrainerGroup = cmp.Or(c.TrainerGroup, schemas.TrainerGroup)
	c.KafkaTimeout = cmp.Or(c.KafkaTimeout, DefaultKafkaTimeout)
	c.Partitions = cmp.Or(c.Partitions, DefaultPartitions)
	c.DeadLetterPartitions = cmp.Or(c.DeadLetterPartitions, 1)
	c.ReplicationFactor = cmp.Or(c.ReplicationFactor, 1)
	c.MaxLead = cmp.Or(c.MaxLead, DefaultMaxLead)
	c.FlowInterval = cmp.Or(c.FlowInterval, DefaultFlowInterval)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	c.S3RetryTimeout = cmp.Or(c.S3RetryTimeout, DefaultS3RetryTimeout)
	if c.Shard.Count == 0 {
		c.Shard = Shard{Index: 0, Count: 1}
	}
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.AnnounceLookback = cmp.Or(c.AnnounceLookback, DefaultAnnounceLookback)
	c.RescanInterval = cmp.Or(c.RescanInterval, DefaultRescanInterval)
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	if c.Source == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "unknown"
		}
		c.Source = fmt.Sprintf("producer-%s-%dof%d", host, c.Shard.Index, c.Shard.Count)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// validate reports every problem of a defaulted Config.
func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Brokers) == 0 {
		bad("Brokers: none given")
	}
	if c.S3 == nil {
		bad("S3: no client")
	}
	if c.Bucket == "" {
		bad("Bucket: empty")
	}
	topics := map[string]string{}
	for _, t := range []struct{ field, name string }{
		{"TopicByID", c.TopicByID}, {"TopicInstance", c.TopicInstance}, {"TopicDeadLetter", c.TopicDeadLetter},
		{"TopicFresh", c.TopicFresh},
	} {
		if err := checkTopicName(t.name); err != nil {
			bad("%s: %w", t.field, err)
		}
		if other, dup := topics[t.name]; dup {
			bad("%s: %q is also %s", t.field, t.name, other)
		}
		topics[t.name] = t.field
	}
	if c.Partitions < 1 || c.DeadLetterPartitions < 1 {
		bad("Partitions %d, DeadLetterPartitions %d: want ≥ 1", c.Partitions, c.DeadLetterPartitions)
	}
	if c.ReplicationFactor < 1 {
		bad("ReplicationFactor %d: want ≥ 1", c.ReplicationFactor)
	}
	if err := c.Shard.validate(); err != nil {
		bad("Shard: %w", err)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"FlowInterval", c.FlowInterval}, {"PollInterval", c.PollInterval}, {"AnnounceLookback", c.AnnounceLookback}, {"KafkaTimeout", c.KafkaTimeout}} {
		if d.v < 0 {
			bad("%s %v: want > 0", d.field, d.v)
		}
	}
	if c.FreshPairs < 1 {
		bad("FreshPairs %d: want ≥ 1", c.FreshPairs)
	}
	if c.NotifyTopic != "" {
		if err := checkTopicName(c.NotifyTopic); err != nil {
			bad("NotifyTopic: %w", err)
		}
	}
	if c.NotifyARN != "" && c.NotifyTopic == "" {
		bad("NotifyARN %q without NotifyTopic", c.NotifyARN)
	}
	if c.Concurrency < 1 || c.MaxInFlight < 1 {
		bad("Concurrency %d, MaxInFlight %d: want ≥ 1", c.Concurrency, c.MaxInFlight)
	}
	if c.Source == "" || len(c.Source) > schemas.MaxNameBytes {
		bad("Source %q: want 1 to %d bytes", c.Source, schemas.MaxNameBytes)
	}
	if len(errs) > 0 {
		return fmt.Errorf("producers: config: %w", errors.Join(errs...))
	}
	return nil
}

// checkTopicName accepts Kafka topic names: [a-zA-Z0-9._-]{1,249}.
func checkTopicName(s string) error {
	if s == "" || len(s) > 249 {
		return fmt.Errorf("%q: want 1 to 249 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q is not a Kafka topic name", s)
		}
	}
	return nil
}

// Shard is this producer's part of the IDs when Count producers split a
// bucket: it owns the IDs with dataset.Mix64(id) % Count == Index, Mix64 being the
// SplitMix64 finalizer (so consecutive IDs spread evenly). The zero value
// and {0, 1} own every ID.
type Shard struct {
	Index, Count int
}

// ParseShard reads "i/n" (0 ≤ i < n).
func ParseShard(s string) (Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want i/n", s)
	}
	i, err1 := strconv.Atoi(is)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want i/n with integers", s)
	}
	sh := Shard{Index: i, Count: n}
	if err := sh.validate(); err != nil {
		return Shard{}, err
	}
	return sh, nil
}

// String renders the shard as "i/n".
func (s Shard) String() string {
	if s.Count == 0 {
		return "0/1"
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

func (s Shard) validate() error {
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d/%d: want 0 ≤ index < count", s.Index, s.Count)
	}
	return nil
}

// Owns reports whether the shard emits id.
func (s Shard) Owns(id uint64) bool {
	if s.Count <= 1 {
		return true
	}
	return dataset.Mix64(id)%uint64(s.Count) == uint64(s.Index)
}

// dialer is the Kafka dialer of the readers (kafka-go's Reader takes a
// Dialer, not a Transport): the defaults plus KafkaTLS and KafkaSASL.
func (c Config) dialer(clientID string) *kafka.Dialer {
	return &kafka.Dialer{ClientID: clientID, Timeout: 10 * time.Second, DualStack: true, TLS: c.KafkaTLS, SASLMechanism: c.KafkaSASL}
}
