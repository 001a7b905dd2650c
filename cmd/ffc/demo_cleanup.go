package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/centers/broadcast"
)

// cleanupTimeout bounds the demo's cleanup.
const cleanupTimeout = time.Minute

// cleanup deletes what the run created, unless --keep: its bucket with
// every object (data, announcements, checkpoints), its topics, its
// trainer group's offsets and its centers stream. A failure is reported
// and the rest still deleted; none fails the run.
func (r *demoRun) cleanup(ctx context.Context, cl *demoClients) {
	if r.o.keep {
		fmt.Fprintf(r.out, "demo: --keep: left bucket %s, topics %s.*, group %s and NATS stream %s in place\n", r.bucket, "demo-"+r.id, r.group, broadcast.StreamName(r.model))
		return
	}
	if r.roles.material != nil {
		// Least privilege: no role of the run may delete it all. The
		// embedded secure stack goes with the process (unless --stack-dir).
		fmt.Fprintf(r.out, "demo: --secure: nothing deleted (no role may); the embedded stack ends with this process\n")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	var errs []error
	if err := r.deleteKafka(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := cl.trainer.js.DeleteStream(ctx, broadcast.StreamName(r.model)); err != nil {
		errs = append(errs, fmt.Errorf("NATS stream %s: %w", broadcast.StreamName(r.model), err))
	}
	if err := deleteBucket(ctx, cl.trainer.mc, r.bucket); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("demo: cleanup incomplete", "err", err)
		fmt.Fprintf(r.out, "demo: cleanup incomplete (--keep keeps everything): %v\n", err)
		return
	}
	fmt.Fprintf(r.out, "demo: deleted the run's bucket, topics, trainer group and centers stream (--keep keeps them)\n")
}

// deleteKafka deletes the run's topics and its trainer group.
func (r *demoRun) deleteKafka(ctx context.Context) error {
	tlsc, sasl, err := r.ends.Kafka.sec.Client()
	if err != nil {
		return err
	}
	tr := &kafka.Transport{TLS: tlsc, SASL: sasl}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(r.ends.KafkaBrokers...), Timeout: 30 * time.Second, Transport: tr}
	topics := []string{r.byID, r.inst, r.freshT, r.dead}
	res, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("delete topics: %w", err)
	}
	var errs []error
	for t, e := range res.Errors {
		if e != nil {
			errs = append(errs, fmt.Errorf("topic %s: %w", t, e))
		}
	}
	g, err := c.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{r.group}})
	if err != nil {
		errs = append(errs, fmt.Errorf("delete group %s: %w", r.group, err))
	} else if e := g.Errors[r.group]; e != nil {
		errs = append(errs, fmt.Errorf("group %s: %w", r.group, e))
	}
	return errors.Join(errs...)
}

// deleteBucket removes every object of bucket, then the bucket.
func deleteBucket(ctx context.Context, mc *minio.Client, bucket string) error {
	objs := mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range mc.RemoveObjects(ctx, bucket, objs, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return fmt.Errorf("bucket %s: remove %s: %w", bucket, e.ObjectName, e.Err)
		}
	}
	if err := mc.RemoveBucket(ctx, bucket); err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return nil
}
