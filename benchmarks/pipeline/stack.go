package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/schemas"
)

// endpoints are one stack's addresses.
type endpoints struct {
	brokers         []string
	natsURL, s3     string
	accessKey, skey string
}

// bench is one stack's run.
type bench struct {
	o      options
	name   string
	ep     endpoints
	stack  *stages // the embedded stack's stage (none on real services); phases run under its context
	sfx    string
	bucket string
	mc     *minio.Client
	nc     *nats.Conn
	js     jetstream.JetStream
	be     kernels.Backend
	// material is the secure stack's (nil on the others); roles are the
	// connections of each part of a phase.
	material *security.Material
	roles    roles
	gen      *synth.Generator
	log      *slog.Logger
	rep      *report
	topics   []string
	groups   []string
	models   []string
}

const idBase = 1_000_000 // storage IDs idBase + i

// phaseFunc runs a phase; it returns one result per run of it (the fresh
// phase runs once per lead).
type phaseFunc func(*bench, context.Context) ([]result, error)

// phaseFuncs are the phases by name.
var phaseFuncs = map[string]phaseFunc{
	"s3get":    one((*bench).phaseS3Get),
	"disabled": one((*bench).phaseDisabled),
	"consume":  one((*bench).phaseConsume),
	"enabled":  one((*bench).phaseEnabled),
	"fresh":    (*bench).phaseFresh,
}

// one makes a phase of one run a phaseFunc.
func one(f func(*bench, context.Context) (result, error)) phaseFunc {
	return func(b *bench, ctx context.Context) ([]result, error) {
		r, err := f(b, ctx)
		if err != nil {
			return nil, err
		}
		return []result{r}, nil
	}
}

// runStack runs every phase of o on the stack name ("embedded": started
// here as a stage; "embedded-secure": the same in secure mode, with
// material generated for the run; "real": the FFC_* services).
func runStack(ctx context.Context, o options, name string, rep *report) (res []result, err error) {
	b := &bench{o: o, name: name, rep: rep,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))}
	var sfx [4]byte
	_, _ = rand.Read(sfx[:])
	b.sfx = hex.EncodeToString(sfx[:])
	b.bucket = "ffc-bench-" + b.sfx
	if name == secureStack {
		m, removeMaterial, err := newMaterial()
		if err != nil {
			return nil, err
		}
		defer removeMaterial()
		b.material = m
	}
	// Deferred first (after the material), so run last: the stack
	// outlives every client.
	b.stack = b.stages(ctx)
	defer b.stack.close(&err, b.log)
	closeClients, err := b.open(ctx)
	defer closeClients()
	if err != nil {
		return nil, err
	}
	// Everything else runs under the stack's context: a failure of the
	// embedded servers ends the phase at once.
	ctx = b.stack.Context()
	if name == "real" && !o.keep {
		defer b.cleanup()
	}
	rep.printf("## %s stack\n\n", name)
	if b.material != nil {
		rep.printf("%s\n\n", secureMeaning)
	}
	rep.printf("Kafka %s, NATS %s, S3 %s; backend %s\n\n", strings.Join(b.ep.brokers, ","), b.ep.natsURL, b.ep.s3, b.be.Name())
	t0 := time.Now()
	n, err := b.upload(ctx, 0, o.ids)
	if err != nil {
		return nil, err
	}
	el := time.Since(t0)
	rep.printf("Uploaded %d images of %d IDs in %s (%.0f objects/s).\n\n", n, o.ids, el.Round(time.Millisecond), float64(n)/el.Seconds())
	for _, ph := range o.phases {
		f := phaseFuncs[ph]
		if f == nil {
			return res, fmt.Errorf("unknown phase %q", ph)
		}
		rs, err := f(b, ctx)
		for _, r := range rs {
			r.stack, r.phase = name, ph
			res = append(res, r)
		}
		if err != nil {
			return res, fmt.Errorf("%s phase: %w", ph, err)
		}
	}
	return res, nil
}

// open reaches the stack's services (starting the embedded stack as a
// stage of b.stack), connects the clients (b.connect), opens the backend and the
// generator and creates the bucket. The returned function closes what was
// opened, also after an error.
func (b *bench) open(ctx context.Context) (closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if b.ep, err = b.endpoints(ctx); err != nil {
		return closeAll, err
	}
	if err := b.connect(&closers); err != nil {
		return closeAll, err
	}
	if b.be, err = cpu.New(cpu.Options{Threads: b.o.threads}); err != nil {
		return closeAll, fmt.Errorf("cpu backend: %w", err)
	}
	closers = append(closers, func() {
		if err := b.be.Close(); err != nil {
			b.log.Error("pipeline: close backend", "err", err)
		}
	})
	if b.gen, err = synth.New(synth.Options{Seed: 11, IDs: uint64(b.o.ids + len(b.o.freshLeads)*b.o.newIDs), Alpha: 1.2, Min: 2, Max: 8}); err != nil {
		return closeAll, fmt.Errorf("synthetic identities: %w", err)
	}
	if err := b.mc.MakeBucket(ctx, b.bucket, minio.MakeBucketOptions{}); err != nil {
		return closeAll, fmt.Errorf("make bucket %s: %w", b.bucket, err)
	}
	return closeAll, nil
}

// endpoints starts the embedded stack (secure with b.material) as a
// stage, or reads the real
// services' addresses from the environment.
func (b *bench) endpoints(ctx context.Context) (endpoints, error) {
	if b.name == "real" {
		return endpoints{brokers: splitList(os.Getenv("FFC_KAFKA_BROKERS")), natsURL: os.Getenv("FFC_NATS_URL"),
			s3: os.Getenv("FFC_S3_ENDPOINT"), accessKey: os.Getenv("FFC_S3_ACCESS_KEY"), skey: os.Getenv("FFC_S3_SECRET_KEY")}, nil
	}
	opts := embedded.StackOptions{Log: b.log.With("component", "embedded")}
	if b.material != nil {
		opts.Secure = &embedded.Secure{Material: *b.material}
	}
	st := embedded.NewStack(opts)
	if err := b.stack.start(ctx, "embedded", st, true); err != nil {
		return endpoints{}, fmt.Errorf("embedded stack: %w", err)
	}
	ak, sk := st.S3.Credentials()
	return endpoints{brokers: st.Kafka.Brokers(), natsURL: st.NATS.URL(), s3: st.S3.Endpoint(), accessKey: ak, skey: sk}, nil
}

// phaseNames are the topic, group and model names of one phase; they
// reach the stages only through producers.Config and trainers.Config.
type phaseNames struct {
	byID, instance, dead, fresh, group, model string
	prefix                                    string // starts every topic of the phase
}

// names returns the phase's names, each with the run's suffix, and
// records them for cleanup.
func (b *bench) names(phase string) phaseNames {
	p := "bench." + b.sfx + "." + phase
	t := phaseNames{byID: p + ".byid", instance: p + ".instance", dead: p + ".deadletter", fresh: p + ".fresh",
		group: "bench-" + b.sfx + "-" + phase, model: "bench-" + b.sfx + "-" + phase, prefix: p + "."}
	b.topics = append(b.topics, t.byID, t.instance, t.dead, t.fresh)
	b.groups = append(b.groups, t.group)
	return t
}

// cleanup deletes what this run created on real services.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.cleanupKafka(ctx)
	for _, m := range b.models {
		if err := b.js.DeleteStream(ctx, schemas.CentersStream(m)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.log.Error("pipeline: cleanup: delete stream", "stream", schemas.CentersStream(m), "err", err)
		}
	}
	objs := b.mc.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Recursive: true})
	for e := range b.mc.RemoveObjects(ctx, b.bucket, objs, minio.RemoveObjectsOptions{}) {
		b.log.Error("pipeline: cleanup: remove object", "key", e.ObjectName, "err", e.Err)
	}
	if err := b.mc.RemoveBucket(ctx, b.bucket); err != nil {
		b.log.Error("pipeline: cleanup: remove bucket", "bucket", b.bucket, "err", err)
	}
}

// cleanupKafka deletes the run's topics and consumer groups.
func (b *bench) cleanupKafka(ctx context.Context) {
	cl := &kafka.Client{Addr: kafka.TCP(b.ep.brokers...), Timeout: 30 * time.Second}
	if r, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: b.topics}); err != nil {
		b.log.Error("pipeline: cleanup: delete topics", "err", err)
	} else {
		for topic, err := range r.Errors {
			if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
				b.log.Error("pipeline: cleanup: delete topic", "topic", topic, "err", err)
			}
		}
	}
	if r, err := cl.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: b.groups}); err != nil {
		b.log.Error("pipeline: cleanup: delete groups", "err", err)
	} else {
		for g, err := range r.Errors {
			if err != nil && !errors.Is(err, kafka.GroupIdNotFound) {
				b.log.Error("pipeline: cleanup: delete group", "group", g, "err", err)
			}
		}
	}
}
