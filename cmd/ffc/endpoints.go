package main

import (
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/internal/embedded"
)

// endpoints are the addresses of the services a command talks to.
type endpoints struct {
	KafkaBrokers []string
	NATSURL      string
	S3Endpoint   string
	S3AccessKey  string
	S3SecretKey  string
	S3Secure     bool
}

func (e *endpoints) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&e.KafkaBrokers, "kafka-brokers", nil, "Kafka bootstrap brokers, host:port, comma-separated (env FFC_KAFKA_BROKERS); demo starts an embedded broker when empty")
	fs.StringVar(&e.NATSURL, "nats-url", "", "NATS server URL with JetStream (env FFC_NATS_URL); demo starts an embedded server when empty")
	fs.StringVar(&e.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port, e.g. MinIO (env FFC_S3_ENDPOINT); demo starts an embedded server when empty")
	fs.StringVar(&e.S3AccessKey, "s3-access-key", "", "S3 access key (env FFC_S3_ACCESS_KEY)")
	fs.StringVar(&e.S3SecretKey, "s3-secret-key", "", "S3 secret key (env FFC_S3_SECRET_KEY)")
	fs.BoolVar(&e.S3Secure, "s3-secure", false, "use HTTPS for S3 (env FFC_S3_SECURE)")
}

// resolved is a set of endpoints with the embedded servers that fill in
// the ones not given.
type resolved struct {
	endpoints
	// Embedded names the services that run in-process.
	Embedded []string
	closers  []func() error
}

// Close stops the embedded servers.
func (r *resolved) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i]())
	}
	return errors.Join(errs...)
}

// resolve starts an embedded server for each service without an address.
// dataDir, when set, makes them persist under it.
func (e endpoints) resolve(dataDir string, log *slog.Logger) (*resolved, error) {
	r := &resolved{endpoints: e}
	sub := func(name string) string {
		if dataDir == "" {
			return ""
		}
		return filepath.Join(dataDir, name)
	}
	fail := func(err error) (*resolved, error) { return nil, errors.Join(err, r.Close()) }
	if len(e.KafkaBrokers) == 0 {
		k, err := embedded.StartKafka(embedded.KafkaOptions{DataDir: sub("kafka")})
		if err != nil {
			return fail(err)
		}
		r.closers = append(r.closers, k.Close)
		r.KafkaBrokers, r.Embedded = k.Brokers(), append(r.Embedded, "kafka")
		log.Info("embedded Kafka-protocol broker (kfake) started", "brokers", r.KafkaBrokers)
	}
	if e.NATSURL == "" {
		n, err := embedded.StartNATS(embedded.NATSOptions{StoreDir: sub("nats")})
		if err != nil {
			return fail(err)
		}
		r.closers = append(r.closers, n.Close)
		r.NATSURL, r.Embedded = n.URL(), append(r.Embedded, "nats")
		log.Info("embedded NATS server with JetStream started", "url", r.NATSURL)
	}
	if e.S3Endpoint == "" {
		s, err := embedded.StartS3(embedded.S3Options{DataDir: sub("s3")})
		if err != nil {
			return fail(err)
		}
		r.closers = append(r.closers, s.Close)
		r.S3Endpoint, r.Embedded = s.Endpoint(), append(r.Embedded, "s3")
		r.S3AccessKey, r.S3SecretKey = s.Credentials()
		r.S3Secure = false
		log.Info("embedded S3 server (gofakes3) started", "endpoint", r.S3Endpoint)
	}
	return r, nil
}
