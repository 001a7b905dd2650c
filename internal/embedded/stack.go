package embedded

import (
	"errors"
	"fmt"
	"path/filepath"
)

// StackOptions configures Start.
type StackOptions struct {
	// DataDir, when set, makes the stack persistent: NATS JetStream, the
	// Kafka log and S3 objects live in subfolders nats/, kafka/ and s3/ and
	// are reloaded by the next Start with the same folder. Empty keeps
	// everything in memory or in temporary folders.
	DataDir string
}

// Stack is the whole embedded default: NATS with JetStream, a
// Kafka-protocol broker and S3, all on loopback.
type Stack struct {
	NATS  *NATS
	Kafka *Kafka
	S3    *S3
}

// Start starts the three servers. On error, the ones already started are
// closed again.
func Start(opts StackOptions) (*Stack, error) {
	sub := func(name string) string {
		if opts.DataDir == "" {
			return ""
		}
		return filepath.Join(opts.DataDir, name)
	}
	n, err := StartNATS(NATSOptions{StoreDir: sub("nats")})
	if err != nil {
		return nil, err
	}
	k, err := StartKafka(KafkaOptions{DataDir: sub("kafka")})
	if err != nil {
		return nil, errors.Join(err, n.Close())
	}
	s, err := StartS3(S3Options{DataDir: sub("s3")})
	if err != nil {
		return nil, errors.Join(err, k.Close(), n.Close())
	}
	return &Stack{NATS: n, Kafka: k, S3: s}, nil
}

// Close stops all three servers and reports every error.
func (s *Stack) Close() error {
	err := errors.Join(s.S3.Close(), s.Kafka.Close(), s.NATS.Close())
	if err != nil {
		return fmt.Errorf("embedded stack: %w", err)
	}
	return nil
}
