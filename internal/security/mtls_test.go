package security_test

import (
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestMutualTLS: with mutual TLS the embedded Kafka and NATS refuse a
// client with the right credentials but no certificate, and accept it
// with its role's certificate.
func TestMutualTLS(t *testing.T) {
	m := security.Material{Dir: filepath.Join(t.TempDir(), "secure")}
	if err := m.Generate(); err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Start(embedded.StackOptions{NoS3: true, Secure: &embedded.Secure{Material: m, MutualTLS: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	tg := target{m: m, brokers: st.Kafka.Brokers(), natsURL: st.NATS.URL()}
	for _, withCert := range []bool{false, true} {
		ksec, err := m.KafkaClient(security.RoleTrainer, withCert)
		if err != nil {
			t.Fatal(err)
		}
		_, kerr := kafkaClient(t, tg, ksec).Metadata(testutil.Context(t), &kafka.MetadataRequest{})
		opts, err := m.NATSClient(security.RoleTrainer, withCert).Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, nerr := nats.Connect(tg.natsURL, opts...)
		if nerr == nil {
			nc.Close()
		}
		if (kerr == nil) != withCert || (nerr == nil) != withCert {
			t.Errorf("client certificate %v: kafka %v, nats %v; want accepted only with the certificate", withCert, kerr, nerr)
		}
	}
}
