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
// Faults are ridden out, never fatal once it has started: Kafka, NATS and
// object storage outages are retried with backoff and reported on Health
// (served on /readyz) and as metrics; while a checkpoint fails, training
// goes on and no offset is committed past the last durable checkpoint; a
// message that cannot be processed is dead-lettered (truncated when too
// large), and one that cannot be dead-lettered is counted and logged with
// its offset. At start, Kafka and object storage get ConnectTimeout. The
// center publisher takes a new, fenced epoch at every start, republishes
// the restored pool under it, and a trainer whose epoch a later start has
// taken stops (broadcast.ErrFenced). Per-ID memory is bounded by the pool.
//
// One concern per file:
//
//	config.go      Config, defaults and validation
//	trainer.go     Trainer: New, Run (start, restore), Stats, Close
//	connect.go     waiting for the topics, joining the group, Health
//	               conditions
//	retry.go       the retry policies (exponential backoff with jitter)
//	consume.go     the consumer group, a reader per assigned partition, the
//	               train loop of one generation
//	assemble.go    batch assembly from messages; invalid ones are rejected
//	deadletter.go  the dead-letter topic
//	step.go        one engine step, its center updates, consumed offsets
//	publish.go     the center publisher beside Run: epoch, restored pool,
//	               queued changes, its metrics
//	checkpoint.go  CheckpointStore (object storage) and the checkpoint that
//	               precedes every offset commit
//	metrics.go     the Prometheus series (ffc_trainer_*)
//	lag.go         the consumer lag per assigned partition
//
// It computes only through kernels and keeps class centers only through
// centers; it must not import producers.
package trainers
