// Package stage owns the lifecycle that every long-running part of FFC
// stream shares — the producer, the trainer, the centers replica, the
// metrics server and the embedded stack — and the Group that composes
// them into a pipeline.
//
// The contract, after nats-server (Options, Start, ReadyForConnections,
// Shutdown) and Benthos (stages stopped in order):
//
//   - a constructor validates its options and does no I/O;
//   - Run(ctx) is called once; it works until ctx ends and then returns
//     nil, or returns an error when it cannot start or must stop;
//   - Ready() is closed once the stage does its job (listening, consuming,
//     producing);
//   - Close() stops a running Run, waits for it to return and releases what
//     the stage holds; it is idempotent and safe when Run never ran.
//
// Lifecycle implements that bookkeeping for a stage to embed. A Group runs
// stages with errgroup: the first stage that fails cancels the others,
// WaitReady names the stage that was not ready and why, Stop stops them one
// at a time — those named first, then the last added first — and joins
// every goroutine, and Close closes them.
//
// It imports nothing of the pipeline.
package stage
