package main

import (
	"fmt"
	"log/slog"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/internal/security"
)

// clients are the connections of a streaming component.
type clients struct {
	mc   *minio.Client
	done func() // releases mc's connections
	nc   *nats.Conn
	js   jetstream.JetStream
}

// s3Client returns the object-storage client of e, with a transport of
// its own: done releases its connections.
func s3Client(e endpoints) (mc *minio.Client, done func(), err error) {
	sec := e.s3()
	tr, err := sec.Transport()
	if err != nil {
		return nil, nil, fmt.Errorf("s3 %s: %w", e.S3Endpoint, err)
	}
	mc, err = minio.New(e.S3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(sec.AccessKey, sec.SecretKey, ""), Secure: sec.TLS.On(), Transport: tr})
	if err != nil {
		return nil, nil, fmt.Errorf("s3 %s: %w", e.S3Endpoint, err)
	}
	return mc, tr.CloseIdleConnections, nil
}

// natsConn connects to NATS, reconnecting for ever after an outage.
func natsConn(url, name string, sec security.NATS, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := sec.Options()
	if err != nil {
		return nil, nil, err
	}
	// The server's asynchronous errors (a permissions violation, a slow
	// consumer) go to the log instead of nats.go's own line on stderr.
	onErr := nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		log.Warn("nats: asynchronous error", "connection", name, "subscription", subject, "err", err)
	})
	nc, err := nats.Connect(url, append(opts, nats.Name(name), nats.MaxReconnects(-1), onErr)...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats %s: %w", url, err)
	}
	return nc, js, nil
}

// connect opens the S3 and NATS clients of e.
func connect(e endpoints, log *slog.Logger) (*clients, error) {
	mc, done, err := s3Client(e)
	if err != nil {
		return nil, err
	}
	nc, js, err := natsConn(e.NATSURL, "ffc", e.NATS.sec, log)
	if err != nil {
		done()
		return nil, err
	}
	return &clients{mc: mc, done: done, nc: nc, js: js}, nil
}

// Close closes the NATS connection and the S3 client's connections.
func (c *clients) Close() {
	c.nc.Close()
	c.done()
}
