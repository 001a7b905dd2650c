package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/producers"
)

// endpoints are the addresses of the services a command talks to.
type endpoints struct {
	KafkaBrokers []string
	Kafka        kafkaAuth
	NATSURL      string
	NATS         natsAuth
	S3Endpoint   string
	S3           s3Auth
	// KafkaTimeout bounds one Kafka request of the producer and trainer.
	KafkaTimeout time.Duration
	// ConnectTimeout bounds the wait for Kafka (and, for produce, object
	// storage) when the producer or trainer starts.
	ConnectTimeout time.Duration
}

func (e *endpoints) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&e.KafkaBrokers, "kafka-brokers", nil, "Kafka bootstrap brokers, host:port, comma-separated (env FFC_KAFKA_BROKERS); demo starts an embedded broker when empty")
	fs.StringVar(&e.NATSURL, "nats-url", "", "NATS server URL with JetStream (env FFC_NATS_URL); demo starts an embedded server when empty")
	fs.StringVar(&e.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port, e.g. MinIO (env FFC_S3_ENDPOINT); demo starts an embedded server when empty")
	e.Kafka.addFlags(fs)
	e.NATS.addFlags(fs)
	e.S3.addFlags(fs)
	fs.DurationVar(&e.KafkaTimeout, "kafka-timeout", 30*time.Second, "bound on one Kafka request (metadata, topic creation, lag measurement, dead letter, commit); a busy host answers slowly, and what times out is retried")
	fs.DurationVar(&e.ConnectTimeout, "connect-timeout", 60*time.Second, "bound on the wait for Kafka (and object storage) at start, retried with backoff until then: produce and streaming train then fail with a non-zero exit status; once started, outages are waited out (env FFC_CONNECT_TIMEOUT)")
}

// checkTimeouts refuses a --connect-timeout that is not positive.
func (e endpoints) checkTimeouts() error {
	if e.ConnectTimeout <= 0 {
		return fmt.Errorf("--connect-timeout %v: want > 0", e.ConnectTimeout)
	}
	return nil
}

// errNotReady is wrapped by the error of a command interrupted (SIGINT,
// SIGTERM) before its stage was ready because a service it needs could
// not be reached.
var errNotReady = errors.New("interrupted before it was ready")

// notReady returns the error of a command whose stage (what) was stopped
// before it was ready: it names the failing health conditions — the
// services it was still waiting for — and does not wrap the context's
// error, so that the exit status is 1 (main). It is nil when no
// condition fails.
func notReady(what string, hs ...*stage.Health) error {
	var failing []string
	for _, h := range hs {
		for _, c := range h.Conditions() {
			// producer.started says the stage is not ready, not why.
			if !c.OK && c.Name != producers.CondStarted {
				failing = append(failing, c.Name+": "+c.Reason)
			}
		}
	}
	if len(failing) == 0 {
		return nil
	}
	return fmt.Errorf("%s %w: still waiting for %s", what, errNotReady, strings.Join(failing, "; "))
}

// missing reports whether any service lacks an address.
func (e endpoints) missing(needNATS bool) bool {
	return len(e.KafkaBrokers) == 0 || e.S3Endpoint == "" || (needNATS && e.NATSURL == "")
}

// embeddedStack returns the stage that starts an embedded server for each
// service without an address (NATS only when needNATS); dataDir, when
// set, makes them persist under it.
func (e endpoints) embeddedStack(dataDir string, needNATS bool, log *slog.Logger, secure *embedded.Secure) *embedded.Stack {
	return embedded.NewStack(embedded.StackOptions{DataDir: dataDir, Log: log, Secure: secure,
		NoKafka: len(e.KafkaBrokers) > 0, NoNATS: !needNATS || e.NATSURL != "", NoS3: e.S3Endpoint != ""})
}

// with fills the addresses the stack serves (once it is ready).
func (e endpoints) with(st *embedded.Stack) endpoints {
	if st.Kafka != nil {
		e.KafkaBrokers = st.Kafka.Brokers()
	}
	if st.NATS != nil {
		e.NATSURL = st.NATS.URL()
	}
	if st.S3 != nil {
		e.S3Endpoint = st.S3.Endpoint()
		e.S3.accessKey, e.S3.secretKey = st.S3.Credentials()
		e.S3.tls = security.TLS{}
	}
	return e
}
