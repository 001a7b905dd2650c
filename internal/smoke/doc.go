// Package smoke owns the end-to-end checks of the three services the
// pipeline stands on — a Kafka-protocol broker, NATS JetStream and S3 — with
// the same client libraries the pipeline uses (kafka-go, nats.go, minio-go).
//
// The checks are ordinary functions so that `ffc demo` can run them against
// the embedded stack and the tests can run them against both the embedded
// stack and real servers. Every check creates uniquely named resources and
// removes them when it ends, so it can run repeatedly against long-lived
// servers.
package smoke

import (
	"crypto/rand"
	"encoding/hex"
)

// uniqueSuffix returns a short random hex string for resource names.
func uniqueSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
