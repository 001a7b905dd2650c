// Package engine owns one training step of the trainer and the offline
// loop around it: the probe and gallery networks with the moving average,
// the heads (FFC with the dual batch, full FC, Partial FC), the optimizer
// and its schedule, the assembly of an FFC batch (DualBatch, the one place
// for offline and streaming training), the dual id/instance loaders over a
// local data set, checkpoints, and the evaluation (closed-set top-1,
// open-set TAR@FAR). Input scaling is nn.AppendScaled's.
//
// It computes only through kernels, keeps class centers only through
// centers, and reads data through internal/dataset; it knows nothing about
// Kafka or NATS (the streaming trainer in package trainers feeds it).
package engine
