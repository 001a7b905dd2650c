package security

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// The SASL mechanisms Kafka settings name.
const (
	SASLNone        = ""
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLPlain       = "PLAIN"
)

// Kafka are a Kafka client's security settings. The zero value is a
// plaintext, unauthenticated client.
type Kafka struct {
	TLS TLS
	// SASL is the mechanism (SASLScramSHA512, ...), empty for none.
	SASL string
	// User and Password authenticate with SASL.
	User     string
	Password string
}

// Check reports settings that cannot work: an unknown mechanism, or a
// mechanism without user and password.
func (k Kafka) Check() error {
	_, err := k.mechanism()
	return err
}

// Describe says what the settings do, with no secret in it: for logs.
func (k Kafka) Describe() string {
	var parts []string
	if k.TLS.On() {
		parts = append(parts, "TLS")
		if k.TLS.CertFile != "" {
			parts = append(parts, "client certificate "+k.TLS.CertFile)
		}
	}
	if k.SASL != "" {
		parts = append(parts, "SASL "+k.SASL+" as "+k.User)
	}
	if len(parts) == 0 {
		return "plaintext, no authentication"
	}
	return strings.Join(parts, ", ")
}

func (k Kafka) mechanism() (sasl.Mechanism, error) {
	name := strings.ToUpper(k.SASL)
	if name == SASLNone {
		return nil, nil
	}
	if k.User == "" || k.Password == "" {
		return nil, fmt.Errorf("kafka: SASL %s needs a user and a password", name)
	}
	switch name {
	case SASLScramSHA512, SASLScramSHA256:
		algo := scram.SHA512
		if name == SASLScramSHA256 {
			algo = scram.SHA256
		}
		m, err := scram.Mechanism(algo, k.User, k.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka: SASL %s: %w", name, err)
		}
		return m, nil
	case SASLPlain:
		return plain.Mechanism{Username: k.User, Password: k.Password}, nil
	}
	return nil, fmt.Errorf("kafka: SASL mechanism %q: want %s, %s or %s", k.SASL, SASLScramSHA512, SASLScramSHA256, SASLPlain)
}

// Transport returns a kafka-go Transport (for Client and Writer) with the
// settings' TLS and SASL; the other fields are the caller's to set.
func (k Kafka) Transport(clientID string) (*kafka.Transport, error) {
	cfg, m, err := k.Client()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{ClientID: clientID, TLS: cfg, SASL: m}, nil
}

// Dialer returns a kafka-go Dialer (for Reader and ConsumerGroup) with the
// settings' TLS and SASL.
func (k Kafka) Dialer(clientID string) (*kafka.Dialer, error) {
	cfg, m, err := k.Client()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{ClientID: clientID, Timeout: 10 * time.Second, DualStack: true, TLS: cfg, SASLMechanism: m}, nil
}

// Client returns the TLS configuration (nil: plaintext) and the SASL
// mechanism (nil: none) of the settings, for configurations that take
// them separately (producers.Config, trainers.Config).
func (k Kafka) Client() (*tls.Config, sasl.Mechanism, error) {
	cfg, err := k.TLS.Config()
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: %w", err)
	}
	m, err := k.mechanism()
	if err != nil {
		return nil, nil, err
	}
	return cfg, m, nil
}
