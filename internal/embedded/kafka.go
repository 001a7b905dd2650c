package embedded

import (
	"fmt"
	"os"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaOptions configures the embedded Kafka-protocol broker.
type KafkaOptions struct {
	// Port to listen on (127.0.0.1 only); 0 picks a random free port.
	Port int
	// DataDir makes the broker persist its log and offsets there and reload
	// them on the next start. Empty keeps everything in memory.
	DataDir string
	// DefaultPartitions is the partition count of auto-created topics;
	// default 8.
	DefaultPartitions int
	// Secure, when set, makes the broker TLS-only with SASL and ACLs.
	Secure *Secure
}

// Kafka is a running embedded Kafka-protocol broker (franz-go kfake). It
// speaks the Kafka wire protocol, so kafka-go and franz-go clients use it
// exactly as they use Apache Kafka.
type Kafka struct {
	cluster *kfake.Cluster
}

// StartKafka starts a single-broker kfake cluster on loopback.
func StartKafka(opts KafkaOptions) (*Kafka, error) {
	if opts.DefaultPartitions == 0 {
		opts.DefaultPartitions = 8
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(opts.Port),
		kfake.ClusterID("ffc-embedded"),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(opts.DefaultPartitions),
	}
	if opts.DataDir != "" {
		if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded kafka: create data dir: %w", err)
		}
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
	}
	if opts.Secure != nil {
		sopts, err := opts.Secure.kafkaOpts()
		if err != nil {
			return nil, err
		}
		kopts = append(kopts, sopts...)
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	return &Kafka{cluster: c}, nil
}

// Brokers returns the bootstrap addresses ("127.0.0.1:port").
func (k *Kafka) Brokers() []string { return k.cluster.ListenAddrs() }

// Cluster exposes the kfake cluster for fault injection in tests.
func (k *Kafka) Cluster() *kfake.Cluster { return k.cluster }

// Close stops the broker (and flushes its data folder, if any).
func (k *Kafka) Close() error {
	k.cluster.Close()
	return nil
}
