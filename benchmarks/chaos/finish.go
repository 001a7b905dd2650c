package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/schemas"
)

// stopGrace bounds the wait for a child to exit after SIGTERM (a hang
// guard: the trainer writes a final checkpoint first).
const stopGrace = 2 * time.Minute

// auditTimeout bounds reading back every topic (a hang guard).
const auditTimeout = 10 * time.Minute

// finish stops the producer, drains the topics, stops the trainer and
// audits: offsets, bad messages, IDs, the subscriber and the exits.
func (r *runner) finish(ctx context.Context) {
	a := &r.report.Audit
	r.stopProducer(ctx)
	dctx, cancel := context.WithTimeout(ctx, r.o.drainTimeout)
	switch {
	case r.trainer.running() == nil:
		a.DrainError = "not drained: the trainer is not running (it was not restarted after too many unexpected exits)"
	default:
		if err := r.drain(dctx, a); err != nil {
			a.DrainError = err.Error()
		} else {
			a.Drained = true
		}
	}
	cancel()
	if _, err := r.trainer.Stop(stopGrace); err != nil {
		r.report.FailedStops = append(r.report.FailedStops, err.Error())
	}
	r.settleSubscriber(ctx)
	if err := r.stopSubscriber(); err != nil {
		r.report.Errors = append(r.report.Errors, err.Error())
	}
	actx, cancelAudit := context.WithTimeout(ctx, auditTimeout)
	defer cancelAudit()
	if err := r.account(actx, a); err != nil {
		r.report.Errors = append(r.report.Errors, "audit: "+err.Error())
	}
	if err := r.checkIDs(ctx); err != nil {
		r.report.Errors = append(r.report.Errors, "IDs: "+err.Error())
	}
	r.report.Subscriber = r.sub.Stats()
	r.report.Exits = r.exits.list()
}

// stopProducer stops the producer with SIGTERM, scraping its /metrics
// until it is gone: what it gives up on while stopping counts too.
func (r *runner) stopProducer(ctx context.Context) {
	if !r.scrapeProducer(ctx) {
		r.report.Notes = append(r.report.Notes, "could not scrape the producer's /metrics before stopping it")
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.producer.Stop(stopGrace)
		done <- err
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				r.report.FailedStops = append(r.report.FailedStops, err.Error())
			}
			return
		case <-tick.C:
			r.scrapeProducer(ctx)
		}
	}
}

// stopAll ends whatever still runs (after an error of the harness).
func (r *runner) stopAll() {
	for _, c := range []*child{r.producer, r.trainer} {
		if c != nil {
			_, _ = c.Stop(10 * time.Second)
		}
	}
	_ = r.stopSubscriber()
}

// stopSubscriber stops the subscriber (once) and returns its error.
func (r *runner) stopSubscriber() error {
	if r.stopSub == nil {
		return nil
	}
	r.stopSub()
	r.stopSub = nil
	return <-r.subDone
}

// settleSubscriber waits until the subscriber has seen every message the
// stream holds (a hang guard of a minute).
func (r *runner) settleSubscriber(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := r.js.Stream(ctx, schemas.CentersStream(r.names.model))
	if err != nil {
		r.report.Notes = append(r.report.Notes, "subscriber not settled: "+err.Error())
		return
	}
	info, err := stream.Info(ctx)
	if err != nil {
		r.report.Notes = append(r.report.Notes, "subscriber not settled: "+err.Error())
		return
	}
	last := info.State.LastSeq
	if _, err := r.sub.waitUntil(ctx, func() bool { return r.sub.lastSeq >= last }); err != nil {
		r.report.Notes = append(r.report.Notes, fmt.Sprintf("subscriber not settled: saw stream sequence %d of %d", r.sub.Stats().LastSeq, last))
	}
}

// account accounts for every offset of the sample topics and every
// injected bad message.
func (r *runner) account(ctx context.Context, a *Audit) error {
	parts, err := r.kafka.partitions(ctx, r.names.byID, r.names.instance)
	if err != nil {
		return err
	}
	first, err := r.kafka.offsets(ctx, parts, kafka.FirstOffset)
	if err != nil {
		return err
	}
	end, err := r.kafka.offsets(ctx, parts, kafka.LastOffset)
	if err != nil {
		return err
	}
	committed, err := r.kafka.committed(ctx, r.names.group, parts)
	if err != nil {
		return err
	}
	step, ckpt, err := r.latestCheckpoint(ctx)
	if err != nil {
		r.report.Notes = append(r.report.Notes, "checkpoint: "+err.Error())
		ckpt = map[tp]int64{}
	}
	a.CheckpointStep = step
	dl, others, err := r.readDeadLetters(ctx)
	if err != nil {
		return err
	}
	a.ProducerDeadLetters = others
	for _, m := range dl {
		a.DeadLetterRecords += int64(len(m))
	}
	err = r.kafka.read(ctx, first, end, func(rec *kgo.Record) {
		p, off := tp{rec.Topic, rec.Partition}, rec.Offset
		reason, source := classify(rec.Value, rec.Topic == r.names.byID)
		valid := reason == ""
		if valid {
			a.Valid++
			if source == producerSource {
				a.ProducerInTopics++
			}
		} else {
			a.Invalid++
		}
		a.Offsets++
		d, hasDL := dl[p][off]
		switch {
		case hasDL && d.reason != "" && valid:
			a.ValidDeadLettered++
		case hasDL && d.reason != "":
			a.DeadLettered++
		case off >= committed[p]:
			a.NotDrained++
			a.example("%s@%d: at or above the committed offset %d", p, off, committed[p])
		case valid && off >= ckpt[p]:
			a.NotCheckpointed++
			a.example("%s@%d: committed (%d) but not covered by the newest checkpoint (step %d, offset %d)", p, off, committed[p], step, ckpt[p])
		case valid:
			a.Trained++
		default:
			a.InvalidNotDeadLettered++
			a.example("%s@%d: invalid (%s), below the committed offset %d, no dead letter with a reason", p, off, reason, committed[p])
		}
	})
	if err != nil {
		return err
	}
	a.ProducerAcked, a.ProducerDropped = r.producerTotals()
	a.ProducerAckedMissing = max(0, a.ProducerAcked-a.ProducerInTopics)
	a.Lost = a.NotDrained + a.NotCheckpointed + a.InvalidNotDeadLettered + a.ProducerAckedMissing
	r.report.Bad = r.badRows(dl)
	return nil
}

// classify is the decoder's reason to reject b ("" when valid) and, when
// valid, the message's source.
func classify(b []byte, byID bool) (reason, source string) {
	var m interface {
		proto.Message
		GetSource() string
	}
	var err error
	if byID {
		m, err = schemas.DecodeIDPair(b, schemas.Limits{})
	} else {
		m, err = schemas.DecodeSample(b, schemas.Limits{})
	}
	if err != nil {
		return schemas.Reason(err), ""
	}
	return "", m.GetSource()
}

// badRows tallies the injected bad messages per kind.
func (r *runner) badRows(dl map[tp]map[int64]deadLetter) []BadRow {
	rows := map[string]*BadRow{}
	var order []string
	for _, k := range badKinds() {
		rows[k.name] = &BadRow{Kind: k.name, Reason: k.reason}
		order = append(order, k.name)
	}
	for _, in := range r.injected {
		row := rows[in.kind]
		row.Injected++
		d, ok := dl[in.p][in.offset]
		switch {
		case !ok || d.reason == "":
			row.NotDeadLettered++
		case d.reason == in.reason:
			row.DeadLettered++
			row.ExpectedReason++
		default:
			row.DeadLettered++
			row.OtherReasons = appendUnique(row.OtherReasons, d.reason)
		}
	}
	out := make([]BadRow, 0, len(order))
	for _, k := range order {
		out = append(out, *rows[k])
	}
	return out
}

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// checkIDs bootstraps a fresh replica of the centers (what ffc centers
// get does) and looks up every ID of the catalog that had a center.
func (r *runner) checkIDs(ctx context.Context) (err error) {
	ids := r.sub.IDsWithCenter()
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	r.report.IDs = IDCheck{InRotation: len(r.data.ids), HadCenter: len(ids)}
	rep, err := broadcast.NewReplica(r.js, broadcast.ReplicaOptions{Model: r.names.model, Codec: broadcast.NewProtoCodec(r.o.dim), Dim: r.o.dim})
	if err != nil {
		return err
	}
	g := stage.NewGroup(ctx, nil)
	defer func() { err = errors.Join(err, g.Close()) }()
	g.Go("replica", rep)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := g.WaitReady(wctx, "replica"); err != nil {
		return fmt.Errorf("fresh replica: %w", err)
	}
	for _, id := range ids {
		if _, ok := rep.Get(id); !ok {
			r.report.IDs.Lost++
			if len(r.report.IDs.Examples) < 8 {
				r.report.IDs.Examples = append(r.report.IDs.Examples, fmt.Sprint(id))
			}
		}
	}
	return nil
}

// cleanupShared deletes the run's bucket, topics, group and stream from
// shared services.
func (r *runner) cleanupShared() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.kafka.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{r.names.byID, r.names.instance, r.names.dead, r.names.fresh}}); err != nil {
		r.log.Warn("cleanup: delete topics", "err", err)
	}
	if _, err := r.kafka.client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{r.names.group}}); err != nil {
		r.log.Warn("cleanup: delete group", "err", err)
	}
	if err := r.js.DeleteStream(ctx, schemas.CentersStream(r.names.model)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		r.log.Warn("cleanup: delete stream", "err", err)
	}
	objs := r.mc.ListObjects(ctx, r.names.bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range r.mc.RemoveObjects(ctx, r.names.bucket, objs, minio.RemoveObjectsOptions{}) {
		r.log.Warn("cleanup: remove object", "key", e.ObjectName, "err", e.Err)
	}
	if err := r.mc.RemoveBucket(ctx, r.names.bucket); err != nil {
		r.log.Warn("cleanup: remove bucket", "err", err)
	}
}
