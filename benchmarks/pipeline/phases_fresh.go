package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
)

// backlogShare is the share of the lead the producer's lag must reach
// before the new IDs are announced: the backlog a new ID would otherwise
// wait behind.
const backlogShare = 0.9

// warmupTimeout bounds the wait for the fresh phase's first checkpoint
// (an IR-ResNet step takes about a second on 2 cores, after the
// trainer's start).
const warmupTimeout = 3 * time.Minute

// perIDBacklogWait bounds the wait for the backlog before each
// announcement (the lag dips after each offset commit).
const perIDBacklogWait = 10 * time.Second

// fresh is what happened to one new ID.
type fresh struct {
	id                  uint64
	images              int
	lagByID, lagInst    int64 // the producer's lag when it was announced
	fromAnn             time.Duration
	timedOut            bool
	stepBefore, stepGot int64
}

// freshRun is one run of the fresh phase (one lead): its pipeline and
// what the report says of it.
type freshRun struct {
	lead, k          int
	p                *producers.Producer
	tr               *trainers.Trainer
	rp               *broadcast.Replica
	reg              *prometheus.Registry
	backlog          bool          // the lag reached backlogShare of the lead
	backlogAfter     time.Duration // the wait for it
	lagByID, lagInst int64         // when the wait ended
	steps            int64         // steps while the new IDs were announced
	el               time.Duration // the time that took
	got              []fresh
}

// phaseFresh runs the freshness measurement once per lead of
// --fresh-leads, each on its own topics, group and model.
func (b *bench) phaseFresh(ctx context.Context) ([]result, error) {
	var res []result
	for k, lead := range b.o.freshLeads {
		r, err := b.freshLead(ctx, k, lead)
		if err != nil {
			return res, fmt.Errorf("lead %d: %w", lead, err)
		}
		res = append(res, r)
	}
	return res, nil
}

// freshLead: the real producer (MaxLead = lead) → Kafka → the real
// trainer → NATS → a broadcast.Replica. Once the trainer has checkpointed
// and the producer's lag has reached backlogShare of the lead, new IDs
// are uploaded and announced one at a time while training runs, and each
// is timed from its announcement until it has a center in the replica.
func (b *bench) freshLead(ctx context.Context, k, lead int) (_ result, err error) {
	t := b.names("fresh" + strconv.Itoa(k+1) + "-lead" + strconv.Itoa(lead))
	fr := &freshRun{lead: lead, k: k, reg: prometheus.NewRegistry()}
	s, p, tr, err := b.startPipeline(ctx, t, pipeSpec{lead: lead, notify: true, set: b.o.freshSettings(), reg: fr.reg})
	defer s.close(&err, b.log)
	if err != nil {
		return result{}, err
	}
	fr.p, fr.tr = p, tr
	if fr.rp, err = broadcast.NewReplica(b.roles.subscriber, broadcast.ReplicaOptions{Model: t.model, Codec: broadcast.NewProtoCodec(b.o.dim), Dim: b.o.dim,
		Log: b.log.With("component", "replica")}); err != nil {
		return result{}, fmt.Errorf("replica: %w", err)
	}
	if err := s.start(ctx, "replica", fr.rp, false); err != nil {
		return result{}, err
	}
	if err := s.until(ctx, warmupTimeout, "the trainer did not checkpoint (or the replica saw no step)", func() bool {
		return tr.Stats().Checkpoints > 0 && fr.rp.Stats().LastStep >= 0
	}); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	smp := newSampler(p, tr)
	if err := s.start(ctx, "sampler", smp, false); err != nil {
		return result{}, err
	}
	if err := b.waitBacklog(ctx, s, fr); err != nil {
		return result{}, err
	}
	steps0, t0 := tr.Stats().Steps, time.Now()
	for i := range b.o.newIDs {
		f, err := b.freshOne(ctx, s, fr, b.o.ids+k*b.o.newIDs+i)
		if err != nil {
			return result{}, fmt.Errorf("new ID %d: %w", f.id, err)
		}
		fr.got = append(fr.got, f)
	}
	fr.steps, fr.el = int64(tr.Stats().Steps-steps0), time.Since(t0)
	ps, st := p.Stats(), tr.Stats()
	if err := s.stop("sampler", "producer", "trainer", "replica"); err != nil {
		return result{}, err
	}
	return b.reportFresh(fr, smp.series(), ps, st), nil
}

// waitBacklog waits (up to --fresh-backlog-wait) until the producer's lag
// on both streams has reached backlogShare of the lead. Past the wait the
// run goes on and is flagged (fr.backlog false).
func (b *bench) waitBacklog(ctx context.Context, s *stages, fr *freshRun) error {
	t0 := time.Now()
	var err error
	fr.backlog, fr.lagByID, fr.lagInst, err = backlogReached(ctx, s, fr, b.o.freshBacklog)
	fr.backlogAfter = time.Since(t0)
	return err
}

// backlogReached waits up to limit until the producer's lag on both
// streams has reached backlogShare of the lead; it returns whether it did
// and the last lags measured.
func backlogReached(ctx context.Context, s *stages, fr *freshRun, limit time.Duration) (ok bool, lagByID, lagInst int64, err error) {
	want := backlogWant(fr.lead)
	t0 := time.Now()
	for {
		st := fr.p.Stats()
		ok = st.ByID.LagMeasured && min(st.ByID.Lag, st.Instance.Lag) >= want
		if ok || time.Since(t0) > limit {
			return ok, st.ByID.Lag, st.Instance.Lag, nil
		}
		if err := s.wait(ctx, 5*time.Millisecond); err != nil {
			return false, st.ByID.Lag, st.Instance.Lag, fmt.Errorf("backlog: %w", err)
		}
	}
}

// backlogWant is the lag that counts as the backlog of lead.
func backlogWant(lead int) int64 {
	return int64(backlogShare*float64(lead) + 0.999)
}

// freshOne uploads the images of synthetic identity idx, announces it and
// waits (up to --fresh-timeout from the announcement) for its center in
// the replica.
func (b *bench) freshOne(ctx context.Context, s *stages, fr *freshRun, idx int) (fresh, error) {
	f := fresh{id: idBase + uint64(idx), images: b.gen.InstancesOf(uint64(idx))}
	for k := range f.images {
		if err := b.putImage(ctx, idx, k); err != nil {
			return f, err
		}
	}
	// Each announcement meets the backlog: after a commit the lag drops by
	// what the trainer consumed since the last one, until the producer
	// refills (bounded: a run whose backlog never came does not wait).
	limit := time.Duration(0)
	if fr.backlog {
		limit = perIDBacklogWait
	}
	var err error
	if _, f.lagByID, f.lagInst, err = backlogReached(ctx, s, fr, limit); err != nil {
		return f, err
	}
	f.stepBefore = fr.rp.Stats().LastStep
	// producers.Announce stamps the marker with the time it is called.
	announced := time.Now()
	if err := producers.Announce(ctx, b.mc, b.bucket, f.id); err != nil {
		return f, fmt.Errorf("announce %d: %w", f.id, err)
	}
	for {
		if c, ok := fr.rp.Get(f.id); ok {
			f.fromAnn, f.stepGot = time.Since(announced), c.Step
			return f, nil
		}
		if time.Since(announced) > b.o.freshTimeout {
			f.timedOut = true
			return f, nil
		}
		if err := s.wait(ctx, 2*time.Millisecond); err != nil {
			return f, err
		}
	}
}

// announcedBy says how the producer learns of the announcements.
func (b *bench) announcedBy(ps producers.Stats) string {
	topic, arn := b.notify()
	if topic == "" {
		return fmt.Sprintf("polling announce/ every %s (no bucket notifications)", b.o.pollInterval)
	}
	return fmt.Sprintf("bucket notifications on Kafka topic %s (target %q; %d announcement markers came that way, %d events in all), with polling announce/ every %s as the fallback",
		topic, arn, ps.Notify.Markers, ps.Notify.Events, b.o.pollInterval)
}

// reportFresh prints the run's table and series and returns its result.
func (b *bench) reportFresh(fr *freshRun, rows []sample, ps producers.Stats, st trainers.Stats) result {
	b.rep.printf("### Freshness, lead %d: announcement → the new ID's center in a NATS replica\n\n", fr.lead)
	b.rep.printf("Producer: lead %d (MaxLead of the id and instance streams), the fresh lane on a topic of its own; announcements seen by %s. Trainer: %s backbone, D = %d, B = %d, pool %d, checkpoint (and offset commit) every %d steps, %s. %d new IDs uploaded (all images, then the announcement) one at a time while training runs, each after the previous one's center arrived.\n\n",
		fr.lead, b.announcedBy(ps), b.o.freshBackbone, b.o.dim, b.o.freshBatch, b.o.freshPool, b.o.freshCkptEvery, threadsOf(b.o.threads), b.o.newIDs)
	want := backlogWant(fr.lead)
	if fr.backlog {
		b.rep.printf("Backlog: the producer's lag reached byid %d / instance %d (≥ %d, %.0f%% of the lead) %s after the trainer's first checkpoint.\n\n",
			fr.lagByID, fr.lagInst, want, 100*backlogShare, fr.backlogAfter.Round(time.Millisecond))
	} else {
		b.rep.printf("**Backlog NOT reached**: the producer's lag was byid %d / instance %d after %s (want ≥ %d, %.0f%% of the lead); measured anyway, so this is not a measurement at lead %d.\n\n",
			fr.lagByID, fr.lagInst, fr.backlogAfter.Round(time.Millisecond), want, 100*backlogShare, fr.lead)
	}
	r := result{lead: fr.lead, backlog: fr.backlog}
	var ann []time.Duration
	b.rep.printf("| new ID | images | lag at announcement (byid / instance) | announcement → center | replica step before → center's step |\n|---:|---:|---:|---:|---|\n")
	for _, f := range fr.got {
		if f.timedOut {
			r.timeouts++
			b.rep.printf("| %d | %d | %d / %d | timed out (> %s) | %d → — |\n", f.id, f.images, f.lagByID, f.lagInst, b.o.freshTimeout, f.stepBefore)
			continue
		}
		ann = append(ann, f.fromAnn)
		b.rep.printf("| %d | %d | %d / %d | %s | %d → %d |\n", f.id, f.images, f.lagByID, f.lagInst, f.fromAnn.Round(time.Millisecond), f.stepBefore, f.stepGot)
	}
	b.rep.printf("\n")
	b.rep.printSeries(rows)
	if len(ann) > 0 {
		r.p50, r.p99, r.max = quantile(ann, 0.5), quantile(ann, 0.99), quantile(ann, 1)
	}
	r.got, r.of = len(ann), len(fr.got)
	r.note = freshNote(r, fr)
	hist := "no observation"
	if p50, p99, n := histogramQuantile(fr.reg, "ffc_trainer_freshness_seconds", 0.5), histogramQuantile(fr.reg, "ffc_trainer_freshness_seconds", 0.99), histogramCount(fr.reg, "ffc_trainer_freshness_seconds"); n > 0 {
		hist = fmt.Sprintf("p50 ≈ %s, p99 ≈ %s over %d (bucket estimates)", p50.Round(time.Millisecond), p99.Round(time.Millisecond), n)
	}
	b.rep.printf("Lead %d: announcement → center %s. Trainer: %d steps while the new IDs came (%.2f steps/s), %d steps and %d checkpoints in the run, %d provisional centers (Stats.Fresh); its freshness histogram (marker time → center committed on NATS): %s.\n\n",
		fr.lead, r.note, fr.steps, float64(fr.steps)/fr.el.Seconds(), st.Steps, st.Checkpoints, st.Fresh, hist)
	return r
}

// freshNote sums up a run's freshness for the report and the summary.
func freshNote(r result, fr *freshRun) string {
	lagLo, lagHi := int64(-1), int64(0)
	for _, f := range fr.got {
		if lagLo < 0 || f.lagByID < lagLo {
			lagLo = f.lagByID
		}
		lagHi = max(lagHi, f.lagByID)
	}
	note := fmt.Sprintf("none of the %d new IDs got a center", r.of)
	if r.got > 0 {
		note = fmt.Sprintf("p50 %s, p99 %s, max %s; %d of %d got a center", r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond),
			r.max.Round(time.Millisecond), r.got, r.of)
	}
	note += fmt.Sprintf("; byid lag at announcement %d–%d (lead %d)", max(lagLo, 0), lagHi, fr.lead)
	if !fr.backlog {
		note += ", backlog NOT reached"
	}
	return note
}
