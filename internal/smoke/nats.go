package smoke

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions tunes the NATS check.
type NATSOptions struct {
	// Subjects is how many per-ID subjects the stream gets; default 5.
	Subjects int
	// Versions is how many values are published per subject; default 3.
	Versions int
}

// NATSReport is what the NATS check observed.
type NATSReport struct {
	Server    string // server version
	Stream    string
	Published int
	// Retained messages in the stream: one per subject under
	// last-value-per-subject retention.
	Retained uint64
	// Replayed is how many messages an ordered consumer replayed from the
	// start (the bootstrap a centers subscriber does).
	Replayed int
	Bucket   string
	// KVOps is the number of key-value operations verified.
	KVOps int
}

// String renders the report on one line.
func (r NATSReport) String() string {
	return fmt.Sprintf("server %s; stream %s: published %d, retained %d (last value per subject), replayed %d; KV bucket %s: %d operations verified",
		r.Server, r.Stream, r.Published, r.Retained, r.Replayed, r.Bucket, r.KVOps)
}

// NATS checks a NATS server with JetStream through nats.go: a stream with
// last-value-per-subject retention (the shape of centers.<model>.<id>) keeps
// only the newest message of each subject and replays them in order, and a
// KV bucket supports put, get, optimistic update, delete and watch. It
// removes the stream and the bucket at the end.
func NATS(ctx context.Context, url string, opts NATSOptions) (rep NATSReport, err error) {
	if opts.Subjects == 0 {
		opts.Subjects = 5
	}
	if opts.Versions == 0 {
		opts.Versions = 3
	}
	nc, err := nats.Connect(url, nats.Name("ffc-smoke"), nats.Timeout(10*time.Second))
	if err != nil {
		return rep, fmt.Errorf("nats check: connect %s: %w", url, err)
	}
	defer nc.Close()
	rep.Server = nc.ConnectedServerVersion()
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, fmt.Errorf("nats check: jetstream: %w", err)
	}

	suffix := uniqueSuffix()
	rep.Stream = "FFC_SMOKE_" + suffix
	prefix := "ffcsmoke." + suffix
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:              rep.Stream,
		Subjects:          []string{prefix + ".>"},
		Storage:           jetstream.FileStorage,
		MaxMsgsPerSubject: 1,
	})
	if err != nil {
		return rep, fmt.Errorf("nats check: create stream %s: %w", rep.Stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := js.DeleteStream(dctx, rep.Stream); derr != nil {
			err = errors.Join(err, fmt.Errorf("nats check: delete stream %s: %w", rep.Stream, derr))
		}
	}()
	for v := 0; v < opts.Versions; v++ {
		for s := 0; s < opts.Subjects; s++ {
			subj := fmt.Sprintf("%s.id%d", prefix, s)
			if _, err := js.Publish(ctx, subj, []byte(strconv.Itoa(v))); err != nil {
				return rep, fmt.Errorf("nats check: publish %s: %w", subj, err)
			}
			rep.Published++
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return rep, fmt.Errorf("nats check: stream info: %w", err)
	}
	rep.Retained = info.State.Msgs
	if rep.Retained != uint64(opts.Subjects) {
		return rep, fmt.Errorf("nats check: stream retains %d messages, want %d (one per subject)", rep.Retained, opts.Subjects)
	}
	last := strconv.Itoa(opts.Versions - 1)
	for s := 0; s < opts.Subjects; s++ {
		subj := fmt.Sprintf("%s.id%d", prefix, s)
		m, err := stream.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			return rep, fmt.Errorf("nats check: last message of %s: %w", subj, err)
		}
		if string(m.Data) != last {
			return rep, fmt.Errorf("nats check: last value of %s is %q, want %q", subj, m.Data, last)
		}
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return rep, fmt.Errorf("nats check: ordered consumer: %w", err)
	}
	batch, err := cons.Fetch(opts.Subjects, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return rep, fmt.Errorf("nats check: replay: %w", err)
	}
	for m := range batch.Messages() {
		if string(m.Data()) != last {
			return rep, fmt.Errorf("nats check: replayed %s = %q, want %q", m.Subject(), m.Data(), last)
		}
		rep.Replayed++
	}
	if batch.Error() != nil {
		return rep, fmt.Errorf("nats check: replay: %w", batch.Error())
	}
	if rep.Replayed != opts.Subjects {
		return rep, fmt.Errorf("nats check: replayed %d messages, want %d", rep.Replayed, opts.Subjects)
	}

	rep.Bucket = "ffc_smoke_" + suffix
	if err := checkKV(ctx, js, rep.Bucket, &rep.KVOps); err != nil {
		return rep, err
	}
	return rep, nil
}

func checkKV(ctx context.Context, js jetstream.JetStream, bucket string, ops *int) (err error) {
	// History 5, not 1: a consumer delivers from the stream, so with one
	// revision per key kept, an update replaced (here by the delete) before
	// the watcher's consumer reached it is never delivered — the watcher
	// then sees put and delete only (it happened on a loaded CI machine).
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, History: 5, Storage: jetstream.FileStorage})
	if err != nil {
		return fmt.Errorf("nats check: create KV bucket %s: %w", bucket, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if derr := js.DeleteKeyValue(dctx, bucket); derr != nil {
			err = errors.Join(err, fmt.Errorf("nats check: delete KV bucket %s: %w", bucket, derr))
		}
	}()
	watcher, err := kv.Watch(ctx, "model.*", jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("nats check: KV watch: %w", err)
	}
	defer func() { _ = watcher.Stop() }()

	rev, err := kv.Put(ctx, "model.step", []byte("1"))
	if err != nil {
		return fmt.Errorf("nats check: KV put: %w", err)
	}
	*ops++
	e, err := kv.Get(ctx, "model.step")
	if err != nil || string(e.Value()) != "1" || e.Revision() != rev {
		return fmt.Errorf("nats check: KV get returned %v (err %v), want value 1 at revision %d", e, err, rev)
	}
	*ops++
	if _, err := kv.Update(ctx, "model.step", []byte("stale"), rev+100); err == nil {
		return errors.New("nats check: KV update with a wrong revision succeeded")
	}
	*ops++
	rev2, err := kv.Update(ctx, "model.step", []byte("2"), rev)
	if err != nil {
		return fmt.Errorf("nats check: KV update at revision %d: %w", rev, err)
	}
	*ops++
	if err := kv.Delete(ctx, "model.step"); err != nil {
		return fmt.Errorf("nats check: KV delete: %w", err)
	}
	if _, err := kv.Get(ctx, "model.step"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("nats check: KV get after delete: %v, want key not found", err)
	}
	*ops++
	// The watcher saw put, update and delete, in that order.
	want := []struct {
		op  jetstream.KeyValueOp
		rev uint64
	}{{jetstream.KeyValuePut, rev}, {jetstream.KeyValuePut, rev2}, {jetstream.KeyValueDelete, 0}}
	for i, w := range want {
		select {
		case u := <-watcher.Updates():
			if u == nil || u.Operation() != w.op || (w.rev != 0 && u.Revision() != w.rev) {
				return fmt.Errorf("nats check: KV watch update %d = %v, want op %v rev %d", i, u, w.op, w.rev)
			}
		case <-time.After(5 * time.Second):
			return fmt.Errorf("nats check: KV watch update %d did not arrive", i)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	*ops++
	return nil
}
