package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/ffc-stream/ffc/internal/stage"
)

// StackOptions configures a Stack.
type StackOptions struct {
	// DataDir, when set, makes the stack persistent: NATS JetStream, the
	// Kafka log and S3 objects live in subfolders nats/, kafka/ and s3/ and
	// are reloaded by the next start with the same folder. Empty keeps
	// everything in memory or in temporary folders.
	DataDir string
	// NoKafka, NoNATS and NoS3 leave that server out (a command given its
	// address uses the real one).
	NoKafka, NoNATS, NoS3 bool
	Log                   *slog.Logger
	// Secure, when set, makes every server TLS-only and, where it can,
	// authenticating with least privilege (see Secure).
	Secure *Secure
}

// Stack is the embedded default: NATS with JetStream, a Kafka-protocol
// broker and S3, all on loopback (those not left out). It is a stage
// (internal/stage): NewStack does no I/O, Run starts the servers and keeps
// them until its context ends, Ready says they accept connections, Close
// stops them. Start starts one at once instead, for tests.
type Stack struct {
	stage.Lifecycle
	opts StackOptions

	// Set before Ready (nil when left out).
	NATS  *NATS
	Kafka *Kafka
	S3    *S3

	closeOnce sync.Once
	closeErr  error
}

// NewStack validates opts; nothing starts until Run.
func NewStack(opts StackOptions) *Stack {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Stack{opts: opts}
}

// Start starts the servers and returns once they accept connections. On
// error, the ones already started are closed again.
func Start(opts StackOptions) (*Stack, error) {
	s := NewStack(opts)
	if err := s.start(); err != nil {
		return nil, err
	}
	s.SetReady()
	return s, nil
}

// Run starts the servers, reports them ready, and stops them when ctx
// ends.
func (s *Stack) Run(ctx context.Context) error {
	ctx, end, err := s.Begin(ctx)
	if err != nil {
		return fmt.Errorf("embedded stack: %w", err)
	}
	defer end()
	if err := s.start(); err != nil {
		return err
	}
	s.SetReady()
	<-ctx.Done()
	return s.shutdown()
}

// Embedded names the servers the stack runs.
func (s *Stack) Embedded() []string {
	var names []string
	if s.Kafka != nil {
		names = append(names, "kafka")
	}
	if s.NATS != nil {
		names = append(names, "nats")
	}
	if s.S3 != nil {
		names = append(names, "s3")
	}
	return names
}

func (s *Stack) start() (err error) {
	sub := func(name string) string {
		if s.opts.DataDir == "" {
			return ""
		}
		return filepath.Join(s.opts.DataDir, name)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.shutdown())
		}
	}()
	if !s.opts.NoNATS {
		if s.NATS, err = StartNATS(NATSOptions{StoreDir: sub("nats"), Secure: s.opts.Secure}); err != nil {
			return err
		}
		s.opts.Log.Info("embedded NATS server with JetStream started", "url", s.NATS.URL())
	}
	if !s.opts.NoKafka {
		if s.Kafka, err = StartKafka(KafkaOptions{DataDir: sub("kafka"), Secure: s.opts.Secure}); err != nil {
			return err
		}
		s.opts.Log.Info("embedded Kafka-protocol broker (kfake) started", "brokers", s.Kafka.Brokers())
	}
	if !s.opts.NoS3 {
		if s.S3, err = StartS3(S3Options{DataDir: sub("s3"), Secure: s.opts.Secure}); err != nil {
			return err
		}
		s.opts.Log.Info("embedded S3 server (gofakes3) started", "endpoint", s.S3.Endpoint())
	}
	return nil
}

// shutdown stops the servers started, once, and reports every error.
func (s *Stack) shutdown() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.S3 != nil {
			errs = append(errs, s.S3.Close())
		}
		if s.Kafka != nil {
			errs = append(errs, s.Kafka.Close())
		}
		if s.NATS != nil {
			errs = append(errs, s.NATS.Close())
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("embedded stack: %w", err)
		}
	})
	return s.closeErr
}

// Close stops Run (or the servers Start started) and reports every error.
func (s *Stack) Close() error {
	s.Stop()
	return s.shutdown()
}
