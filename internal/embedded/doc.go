// Package embedded owns the in-process servers that every ffc command falls
// back to when it is given no addresses: a NATS server with JetStream
// (nats-server/v2 used as a library), a Kafka-protocol broker (franz-go's
// kfake) and an S3 server (gofakes3). Each listens on a random loopback port,
// reports its address and is stopped with Close.
//
// Each server follows the nats-server shape: an options struct, a Start
// function that validates it and returns once the server is ready for
// connections, and Close. Stack starts all three together.
//
// This package must not import the pipeline packages (producers, trainers,
// centers, kernels): it only provides infrastructure.
package embedded
