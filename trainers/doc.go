// Package trainers owns the consuming stage: a Kafka consumer group over
// samples.byid and samples.instance that assembles FFC batches (B id pairs
// plus B instances, engine.DualBatch), runs the probe/gallery networks and
// their updates, publishes every center change (centers/broadcast), and
// checkpoints model, optimizer, pool, settings and the Kafka offsets they
// cover into object storage before committing those offsets.
//
// A Trainer is a stage (internal/stage): New validates its Config and does
// no I/O; Run creates the checkpoint bucket and the centers stream when
// missing, restores the newest complete checkpoint (reconciling the
// settings with it: settings.Resume), trains until its context ends and
// writes a final checkpoint; Ready says it joined the group; Close stops
// Run and releases the engine.
//
// One concern per file:
//
//	config.go      Config, defaults and validation
//	trainer.go     Trainer: New, Run (start, restore), Stats, Close
//	consume.go     the consumer group, a reader per assigned partition, the
//	               train loop of one generation
//	assemble.go    batch assembly from messages; invalid ones are rejected
//	deadletter.go  the dead-letter topic
//	step.go        one engine step, its center updates, consumed offsets
//	checkpoint.go  CheckpointStore (object storage) and the checkpoint that
//	               precedes every offset commit
//	metrics.go     the Prometheus series (ffc_trainer_*)
//
// It computes only through kernels and keeps class centers only through
// centers; it must not import producers.
package trainers
