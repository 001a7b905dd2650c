package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/security"
)

// demoRoles are the connection settings of each part of a demo run: the
// same for all, or, with --secure, the credentials of each part's role
// (internal/security): the uploads and announcements as uploader, the
// producer, the trainer, and the replica as subscriber.
type demoRoles struct {
	uploader, producer, trainer, subscriber endpoints
	// material is the secure material (nil without --secure).
	material *security.Material
}

func plainRoles(e endpoints) demoRoles {
	return demoRoles{uploader: e, producer: e, trainer: e, subscriber: e}
}

// secureRoles are e's addresses with each role's credentials from m.
func secureRoles(e endpoints, m security.Material) (demoRoles, error) {
	as := func(role string) (endpoints, error) {
		r := e
		r.Kafka, r.NATS = kafkaAuth{}, natsAuth{}
		for _, k := range security.KafkaRoles() {
			if k == role {
				sec, err := m.KafkaClient(role, false)
				if err != nil {
					return r, err
				}
				r.Kafka.sec = sec
			}
		}
		for _, n := range security.NATSRoles() {
			if n == role {
				r.NATS.sec = m.NATSClient(role, false)
			}
		}
		s3, err := m.S3Client(role)
		if err != nil {
			return r, err
		}
		r.S3 = s3Auth{accessKey: s3.AccessKey, secretKey: s3.SecretKey, tls: s3.TLS}
		return r, nil
	}
	out := demoRoles{material: &m}
	for _, x := range []struct {
		role string
		to   *endpoints
	}{{security.RoleUploader, &out.uploader}, {security.RoleProducer, &out.producer}, {security.RoleTrainer, &out.trainer}, {security.RoleSubscriber, &out.subscriber}} {
		ep, err := as(x.role)
		if err != nil {
			return out, fmt.Errorf("demo: --secure: %w", err)
		}
		*x.to = ep
	}
	return out, nil
}

// secureMaterial returns the material of a --secure demo, generated in
// dir (or in a temporary folder that done removes).
func secureMaterial(dir string) (m security.Material, done func(), err error) {
	done = func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "ffc-demo-secure-*")
		if err != nil {
			return m, done, fmt.Errorf("demo: --secure: %w", err)
		}
		dir, done = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	m = security.Material{Dir: filepath.Join(dir, "secure")}
	if err := m.Generate(); err != nil {
		done()
		return m, func() {}, fmt.Errorf("demo: --secure: %w", err)
	}
	return m, done, nil
}

// secureStack is the embedded stack option of a --secure demo.
func secureStack(m *security.Material) *embedded.Secure {
	if m == nil {
		return nil
	}
	return &embedded.Secure{Material: *m}
}

// provision creates the run's Kafka ACLs (its topics and group are named
// after the run) as admin, as an operator provisions a deployment.
func (r *demoRun) provision(ctx context.Context) error {
	m := r.roles.material
	if m == nil {
		return nil
	}
	cl, done, err := m.AdminClient(r.roles.producer.KafkaBrokers, false)
	if err != nil {
		return err
	}
	defer done()
	names := security.Names{TopicPrefix: "demo-" + r.id + ".", DeadLetter: r.dead, GroupPrefix: r.group, CentersPrefix: "centers."}
	if err := security.ProvisionKafkaACLs(ctx, cl, names); err != nil {
		return fmt.Errorf("demo: --secure: %w", err)
	}
	return nil
}

var errSecureAddrs = errors.New("demo: --secure runs the embedded stack with TLS, credentials and least privilege; give no service addresses (for the real services: deploy/local/services.sh with FFC_SECURE=1, and ffc produce/train with each role's credentials)")

// demoClients are the connections of a demo run's parts.
type demoClients struct {
	trainer    *clients
	producer   *minio.Client
	uploader   *minio.Client
	subscriber jetstream.JetStream
	closers    []func()
}

// connect opens each part's connections with its role's settings.
func (r *demoRun) connect() (*demoClients, error) {
	tc, err := connect(r.roles.trainer, r.log)
	if err != nil {
		return nil, err
	}
	c := &demoClients{trainer: tc, closers: []func(){tc.Close}}
	var done func()
	if c.producer, done, err = s3Client(r.roles.producer); err != nil {
		c.Close()
		return nil, err
	}
	c.closers = append(c.closers, done)
	if c.uploader, done, err = s3Client(r.roles.uploader); err != nil {
		c.Close()
		return nil, err
	}
	c.closers = append(c.closers, done)
	nc, js, err := natsConn(r.roles.subscriber.NATSURL, "ffc-demo-subscriber", r.roles.subscriber.NATS.sec, r.log)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.subscriber, c.closers = js, append(c.closers, nc.Close)
	return c, nil
}

// Close closes every connection.
func (c *demoClients) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}
