// Package trainers owns the consuming stage: a Kafka consumer group over
// samples.byid and samples.instance that assembles FFC batches (B id pairs
// plus B instances), runs the probe/gallery networks and their updates, and
// checkpoints model, optimizer, pool and the Kafka offsets they cover into
// object storage before committing those offsets.
//
// It computes only through kernels and keeps class centers only through
// centers; it must not import producers.
package trainers
