package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"

	"github.com/ffc-stream/ffc/internal/security"
)

// secureStack is the stack of the embedded servers in secure mode.
const secureStack = "embedded-secure"

// secureMeaning says in one sentence what the secure stack runs.
const secureMeaning = "Secure mode (" + secureStack + ") is the same embedded stack with every connection on TLS (a CA generated for the run), " +
	"Kafka authenticating with SASL/SCRAM-SHA-512 and enforcing the roles' ACLs, NATS requiring nkey users with their subject permissions " +
	"and S3 served over HTTPS (gofakes3 checks no signature); the producer runs as the producer role, the trainer as the trainer role " +
	"(Kafka and its own NATS connection), the fresh phase's replica as the subscriber role, and the benchmark's own clients " +
	"(bucket, uploads, the consume phase's topic fill, ACL provisioning) as admin."

// kafkaAuth is one role's Kafka TLS configuration and SASL mechanism;
// the zero value is plaintext without authentication.
type kafkaAuth struct {
	tls  *tls.Config
	sasl sasl.Mechanism
}

// roles are the connections of each part of a phase: on the plaintext
// stacks all share the benchmark's; on the secure stack each part has its
// role's.
type roles struct {
	// Kafka of the producer and the trainer.
	producer, trainer kafkaAuth
	// admin is the transport of the benchmark's own Kafka clients (nil:
	// kafka-go's default, plaintext).
	admin kafka.RoundTripper
	// S3 clients of the producer and the trainer (the benchmark's own is
	// bench.mc).
	producerS3, trainerS3 *minio.Client
	// subscriber is the replica's JetStream (the trainer's is bench.js).
	subscriber jetstream.JetStream
}

// newMaterial generates the secure stack's material in a temporary
// folder that done removes.
func newMaterial() (m *security.Material, done func(), err error) {
	tmp, err := os.MkdirTemp("", "ffc-bench-pipeline-secure-*")
	if err != nil {
		return nil, func() {}, fmt.Errorf("secure material: %w", err)
	}
	done = func() { _ = os.RemoveAll(tmp) }
	m = &security.Material{Dir: filepath.Join(tmp, "secure")}
	if err := m.Generate(); err != nil {
		done()
		return nil, func() {}, fmt.Errorf("secure material: %w", err)
	}
	return m, done, nil
}

// connect opens the benchmark's S3 client and the trainer's NATS
// connection and, on the secure stack, the other roles' connections. What
// it opens that needs closing is added to closers.
func (b *bench) connect(closers *[]func()) error {
	var err error
	if b.mc, err = b.s3Client(security.RoleAdmin, closers); err != nil {
		return err
	}
	if b.nc, b.js, err = b.natsConn(security.RoleTrainer); err != nil {
		return err
	}
	*closers = append(*closers, b.nc.Close)
	b.roles = roles{producerS3: b.mc, trainerS3: b.mc, subscriber: b.js}
	if b.material == nil {
		return nil
	}
	if b.roles.producerS3, err = b.s3Client(security.RoleProducer, closers); err != nil {
		return err
	}
	if b.roles.trainerS3, err = b.s3Client(security.RoleTrainer, closers); err != nil {
		return err
	}
	nc, js, err := b.natsConn(security.RoleSubscriber)
	if err != nil {
		return err
	}
	*closers = append(*closers, nc.Close)
	b.roles.subscriber = js
	var admin kafkaAuth
	for _, k := range []struct {
		role string
		to   *kafkaAuth
	}{{security.RoleAdmin, &admin}, {security.RoleProducer, &b.roles.producer}, {security.RoleTrainer, &b.roles.trainer}} {
		sec, err := b.material.KafkaClient(k.role, false)
		if err != nil {
			return fmt.Errorf("kafka credentials: %w", err)
		}
		if k.to.tls, k.to.sasl, err = sec.Client(); err != nil {
			return fmt.Errorf("kafka credentials of %s: %w", k.role, err)
		}
	}
	tr := &kafka.Transport{ClientID: "ffc-bench-admin", TLS: admin.tls, SASL: admin.sasl}
	*closers = append(*closers, tr.CloseIdleConnections)
	b.roles.admin = tr
	return nil
}

// s3Client is an S3 client of the stack: with its keys in plaintext, and
// with role's keys over TLS with the CA on the secure stack.
func (b *bench) s3Client(role string, closers *[]func()) (*minio.Client, error) {
	if b.material == nil {
		mc, err := minio.New(b.ep.s3, &minio.Options{Creds: credentials.NewStaticV4(b.ep.accessKey, b.ep.skey, "")})
		if err != nil {
			return nil, fmt.Errorf("s3 client %s: %w", b.ep.s3, err)
		}
		return mc, nil
	}
	sec, err := b.material.S3Client(role)
	if err != nil {
		return nil, fmt.Errorf("s3 client as %s: %w", role, err)
	}
	tr, err := sec.Transport()
	if err != nil {
		return nil, fmt.Errorf("s3 client as %s: %w", role, err)
	}
	*closers = append(*closers, tr.CloseIdleConnections)
	mc, err := minio.New(b.ep.s3, &minio.Options{Creds: credentials.NewStaticV4(sec.AccessKey, sec.SecretKey, ""), Secure: sec.TLS.On(), Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("s3 client %s as %s: %w", b.ep.s3, role, err)
	}
	return mc, nil
}

// natsConn connects to NATS: without credentials in plaintext, as role
// (its nkey, TLS with the CA) on the secure stack. role also names the
// connection.
func (b *bench) natsConn(role string) (*nats.Conn, jetstream.JetStream, error) {
	// The server's asynchronous errors (the subscriber's refused stream
	// creation while the replica waits for the trainer's stream) go to the
	// log instead of nats.go's own line on stderr.
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		b.log.Warn("pipeline: nats: asynchronous error", "role", role, "err", err)
	})
	opts := []nats.Option{nats.Name("ffc-bench-" + role), onErr}
	if b.material != nil {
		sec, err := b.material.NATSClient(role, false).Options()
		if err != nil {
			return nil, nil, fmt.Errorf("NATS as %s: %w", role, err)
		}
		opts = append(opts, sec...)
	}
	nc, err := nats.Connect(b.ep.natsURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS %s as %s: %w", b.ep.natsURL, role, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// provision creates, as admin, the Kafka ACLs of the producer and the
// trainer for the phase's topics and group (nothing on the plaintext
// stacks), as an operator provisions a deployment.
func (b *bench) provision(ctx context.Context, t phaseNames) error {
	if b.material == nil {
		return nil
	}
	cl := &kafka.Client{Addr: kafka.TCP(b.ep.brokers...), Timeout: 30 * time.Second, Transport: b.roles.admin}
	n := security.Names{TopicPrefix: t.prefix, DeadLetter: t.dead, GroupPrefix: t.group, CentersPrefix: "centers."}
	if err := security.ProvisionKafkaACLs(ctx, cl, n); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return nil
}
