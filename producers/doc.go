// Package producers owns the first stage of the pipeline: it indexes the
// identities and images in object storage and publishes them to Kafka — the
// id stream (uniform over IDs, image pairs, keyed by id, topic
// samples.byid) and the instance stream (shuffled epochs over all images,
// topic samples.instance) — with flow control against the trainers'
// committed offsets and a watcher that puts new IDs into rotation. New
// IDs also go to the fresh lane (topic samples.fresh): a few pairs each,
// with the announcement's time, under a flow control of their own, so
// they never wait behind the streams' lead; removed IDs leave the catalog
// and get a REMOVE record there. Markers are polled and, when the object
// store publishes bucket notifications to Kafka, handled as they come.
//
// A Producer is a stage (internal/stage): a Config (zero fields take
// defaults), New validates it and does no I/O, Run blocks until its
// context ends, Ready says when the topics exist, the bucket is listed and
// both streams run, Close stops Run and waits for it; Health is its live
// readiness (served on /readyz), Stats and the Prometheus metrics (on Config.Registry, served by the commands'
// internal/metricsrv stage) say what it did.
//
//	p, err := producers.New(producers.Config{Brokers: brokers, S3: mc, Bucket: "ffc-data"})
//	go p.Run(ctx)
//	<-p.Ready()
//	defer p.Close()
//
// The topic and group names it defaults to live in schemas.
//
// One concern per file:
//
//	config.go    Config, defaults and validation; Shard (Mix64(id) % n == i)
//	catalog.go   the Catalog: a compact index of ids/<id>/<name>.png (sorted
//	             16-byte entries per ID, names in one byte arena, a bad bit
//	             per image), listing and incremental updates
//	announce.go  the new-ID and removal markers (announce/<20-digit unix
//	             nanos>-<id>[.remove]), Announce and AnnounceRemoval for
//	             uploaders, the watcher that polls them and handles the
//	             notified ones
//	fresh.go     the fresh lane: pairs of new IDs and REMOVE records of
//	             removed ones, off the watcher; warn-once bookkeeping
//	notify.go    bucket notifications (NotifyTopic): MinIO event JSON read
//	             from Kafka, the bucket's notification set (NotifyARN)
//	rotation.go  the id rotation (a fresh shuffle per pass, new IDs first)
//	             and the instance epochs (a shuffle of every image per epoch)
//	flow.go      flow control: a gate per topic that bounds end − committed
//	             offsets of the trainer group by MaxLead, and the lag meter
//	emit.go      the two emitters: S3 fetch, validation, dead letters,
//	             encoding, the async Kafka writer
//	outbox.go    the messages Kafka refused: held streams, retries with
//	             backoff until Kafka takes them, the final flush
//	retry.go     the waits for the services at start (ConnectTimeout), the
//	             retries of object-storage requests, health conditions
//	topics.go    creation of the four topics, retried with backoff
//	metrics.go   the Prometheus series (ffc_producer_*)
//	producer.go  Producer: New, Run, Ready, Close, Stats
//
// Acknowledgement. A message counts as produced when Kafka acknowledges it
// (acks=all); flow control counts it from the moment it is admitted, so
// the lag of a topic never exceeds MaxLead. An object that fails
// validation is marked bad in the catalog and dead-lettered once.
//
// Outages. Kafka refusing writes does not lose messages: a batch the
// writer gives up on goes to the outbox and is written again, with
// bounded backoff and jitter, for as long as Run runs; meanwhile the
// streams and the fresh lane are held (no S3 reads), Health fails CondKafka and a summary is
// logged every 30 s instead of a line per message. Delivery is
// at-least-once: a write that timed out may have been appended and is
// written again. When Run ends, what Kafka still refuses after a last
// KafkaTimeout is counted as failed (StreamStats.Failed). A transient
// object-storage error is retried with backoff for S3RetryTimeout;
// NoSuchKey drops the image from the catalog, a bad image is
// dead-lettered, neither is retried. At start, each service is waited for
// ConnectTimeout, then Run fails with ErrKafkaUnreachable or
// ErrObjectStorageUnreachable.
//
// It only produces: it must not import trainers, centers or kernels; it
// uses schemas for the wire and validation.
package producers
