// Package producers owns the first stage of the pipeline: it indexes the
// identities and images in object storage and publishes them to Kafka — the
// id stream (uniform over IDs, image pairs, keyed by id, topic
// samples.byid) and the instance stream (shuffled epochs over all images,
// topic samples.instance) — with flow control against the trainers'
// committed offsets and a watcher that puts new IDs into rotation.
//
// It only produces: it must not import trainers or centers.
package producers
