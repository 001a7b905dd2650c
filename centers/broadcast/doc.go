// Package broadcast owns how class centers leave the trainer and reach
// their users: every change of a center is published on NATS JetStream as
// centers.<model>.<id> (last value per subject, so the stream holds the
// newest center of every ID ever trained, also after it left the pool),
// evictions as centers.<model>.evicted.<id>, and step records on the
// fence subject centers.<model>.step.
//
// Versions. Every center message carries (epoch, step). The epoch grows
// at every start of the training job: the Publisher takes it with a START
// record published only if the subject's last record is still the one it
// read (JetStream's expected last subject sequence: a compare-and-set).
// Every later record (BEGIN before a flush's updates, COMMIT after them)
// expects the publisher's own previous record, so once a newer start has
// taken over, a stale trainer can publish nothing (ErrFenced). While NATS
// fails, the Publisher keeps the newest change per subject in a bounded
// backlog and retries with backoff.
//
// A Replica follows the stream: it bootstraps from the retained messages
// (each subject's last value, applied by version), then goes live: it
// applies updates when a COMMIT covers them, drops what an older epoch
// left uncommitted once a newer epoch starts, never lets an ID's version
// go backwards, survives reconnects, and answers exact nearest-center
// queries. A replica that bootstraps right after a crash may hold the
// part of the crashed trainer's last step that reached the stream; the
// restarted job supersedes it (it republishes its restored pool and
// trains the same offsets again).
//
// It must not import producers or trainers.
package broadcast
