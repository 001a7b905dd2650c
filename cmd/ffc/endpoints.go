package main

import (
	"log/slog"
	"time"

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
	// KafkaTimeout bounds one Kafka request of the producer and trainer.
	KafkaTimeout time.Duration
}

func (e *endpoints) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&e.KafkaBrokers, "kafka-brokers", nil, "Kafka bootstrap brokers, host:port, comma-separated (env FFC_KAFKA_BROKERS); demo starts an embedded broker when empty")
	fs.StringVar(&e.NATSURL, "nats-url", "", "NATS server URL with JetStream (env FFC_NATS_URL); demo starts an embedded server when empty")
	fs.StringVar(&e.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port, e.g. MinIO (env FFC_S3_ENDPOINT); demo starts an embedded server when empty")
	fs.StringVar(&e.S3AccessKey, "s3-access-key", "", "S3 access key (env FFC_S3_ACCESS_KEY)")
	fs.StringVar(&e.S3SecretKey, "s3-secret-key", "", "S3 secret key (env FFC_S3_SECRET_KEY)")
	fs.BoolVar(&e.S3Secure, "s3-secure", false, "use HTTPS for S3 (env FFC_S3_SECURE)")
	fs.DurationVar(&e.KafkaTimeout, "kafka-timeout", 30*time.Second, "bound on one Kafka request (metadata, topic creation, lag measurement, dead letter, commit); a busy host answers slowly, and what times out is retried")
}

// missing reports whether any service lacks an address.
func (e endpoints) missing(needNATS bool) bool {
	return len(e.KafkaBrokers) == 0 || e.S3Endpoint == "" || (needNATS && e.NATSURL == "")
}

// embeddedStack returns the stage that starts an embedded server for each
// service without an address (NATS only when needNATS); dataDir, when
// set, makes them persist under it.
func (e endpoints) embeddedStack(dataDir string, needNATS bool, log *slog.Logger) *embedded.Stack {
	return embedded.NewStack(embedded.StackOptions{DataDir: dataDir, Log: log,
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
		e.S3AccessKey, e.S3SecretKey = st.S3.Credentials()
		e.S3Secure = false
	}
	return e
}
