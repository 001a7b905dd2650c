// Package broadcast owns how class centers leave the trainer and reach
// their users: every change of a center is published on NATS JetStream as
// centers.<model>.<id> (last value per subject, so the stream holds the
// newest center of every ID ever trained, also after it left the pool),
// evictions as centers.<model>.evicted.<id>, and one commit per training
// step on centers.<model>.step.<run> after that step's changes (one
// subject per publishing run, so the stream keeps each run's last commit).
//
// A Replica follows the stream: it bootstraps from the retained messages,
// then goes live, applies a step's changes together when the step's commit
// arrives, never lets an ID's step go backwards, survives reconnects, and
// answers exact nearest-center queries.
//
// It must not import producers or trainers.
package broadcast
