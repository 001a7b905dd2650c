package main

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Fault kinds.
const (
	faultTrainer  = "trainer SIGKILL"
	faultProducer = "producer SIGKILL"
	faultKafka    = "kafka"
	faultNATS     = "nats"
	faultS3       = "s3"
	faultBad      = "bad messages"
)

// faultKinds lists the kinds in report order.
func faultKinds() []string {
	return []string{faultTrainer, faultProducer, faultKafka, faultNATS, faultS3, faultBad}
}

// event is one scheduled fault.
type event struct {
	at    time.Duration // from the start of the schedule
	kind  string
	index int // of its kind
}

// schedule draws the time of every fault from seed: uniform over the
// middle 90 % of the duration, in time order.
func schedule(o options, seed uint64) []event {
	rng := mrand.New(mrand.NewPCG(seed, 0xfa17))
	var evs []event
	for _, k := range []struct {
		kind string
		n    int
	}{{faultTrainer, o.trainerKills}, {faultProducer, o.producerKills}, {faultKafka, o.kafkaFaults},
		{faultNATS, o.natsFaults}, {faultS3, o.s3Faults}, {faultBad, o.badBursts}} {
		for i := range k.n {
			at := time.Duration((0.05 + 0.9*rng.Float64()) * float64(o.duration))
			evs = append(evs, event{at: at, kind: k.kind, index: i})
		}
	}
	if o.badPerKind == 0 {
		evs = dropKind(evs, faultBad)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	return evs
}

func dropKind(evs []event, kind string) []event {
	out := evs[:0]
	for _, e := range evs {
		if e.kind != kind {
			out = append(out, e)
		}
	}
	return out
}

// FaultRecord is one injected fault.
type FaultRecord struct {
	Kind string        `json:"kind"`
	How  string        `json:"how"`
	At   time.Duration `json:"at_ns"` // when it began, from the start of the schedule
	// Recovered: after the fault's end the subscriber saw a step commit
	// above every step committed before, and a center update, Recovery
	// after the end (and a restarted child answered /readyz).
	Recovered bool          `json:"recovered"`
	Recovery  time.Duration `json:"recovery_ns"`
	// RecoveredBy names the step commit that ended the recovery.
	RecoveredBy string `json:"recovered_by,omitempty"`
	// ReadyAfter: when the restarted child answered /readyz (kills).
	ReadyAfter time.Duration `json:"ready_after_ns,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// faultLoop injects the scheduled faults, one at a time (each waits for
// the recovery from the one before), then waits out the duration.
func (r *runner) faultLoop(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.exits.gaveUp:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	for _, ev := range schedule(r.o, r.seed) {
		if !waitUntil(ctx, start.Add(ev.at)) {
			break
		}
		rec := r.inject(ctx, ev)
		rec.At = ev.at
		r.log.Info("fault", "kind", rec.Kind, "how", rec.How, "recovered", rec.Recovered, "recovery", rec.Recovery, "by", rec.RecoveredBy, "ready_after", rec.ReadyAfter, "err", rec.Error)
		r.report.Faults = append(r.report.Faults, rec)
		if r.o.stopWhenStuck && ev.kind != faultBad && !rec.Recovered && ctx.Err() == nil {
			// The pipeline is stuck: further faults would measure nothing.
			r.report.Stopped = fmt.Sprintf("stopped early: no recovery from the %s fault at %s within %s", rec.Kind, rec.At.Round(time.Second), r.o.recoveryTimeout)
			return
		}
	}
	waitUntil(ctx, start.Add(r.o.duration))
	if ctx.Err() != nil {
		select {
		case <-r.exits.gaveUp:
			r.report.Stopped = fmt.Sprintf("stopped early: %d unexpected exits", len(r.exits.list()))
		default:
			r.report.Stopped = "stopped early: " + ctx.Err().Error()
		}
	}
}

// waitUntil waits until t (the schedule's timer); false if ctx ended.
func waitUntil(ctx context.Context, t time.Time) bool {
	tm := time.NewTimer(time.Until(t))
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// inject injects one fault and measures the recovery from it.
func (r *runner) inject(ctx context.Context, ev event) FaultRecord {
	rec := FaultRecord{Kind: ev.kind}
	var restarted *child
	var exclude map[string]bool
	var err error
	switch ev.kind {
	case faultTrainer:
		rec.How, restarted = "SIGKILL, restarted at once", r.trainer
		exclude = r.sub.runs()
		err = r.trainer.Kill(ctx)
	case faultProducer:
		rec.How, restarted = "SIGKILL, restarted at once", r.producer
		if !r.scrapeProducer(ctx) {
			r.report.Notes = append(r.report.Notes, "could not scrape the producer's /metrics before a kill")
		}
		err = r.producer.Kill(ctx)
	case faultKafka, faultNATS, faultS3:
		rec.How, err = r.svc.fault(ctx, map[string]string{faultKafka: svcKafka, faultNATS: svcNATS, faultS3: svcS3}[ev.kind], r.o.outage)
		if err == nil {
			rec.How += fmt.Sprintf(" (%s)", r.o.outage)
		}
	case faultBad:
		rec.How, err = r.injectBad(ctx, ev.index)
		if err != nil {
			rec.Error = err.Error()
		}
		return rec
	}
	end, above := time.Now(), r.sub.maxCommitted()
	if err != nil {
		rec.Error = err.Error()
	}
	rctx, cancel := context.WithTimeout(ctx, r.o.recoveryTimeout)
	defer cancel()
	at, by, err := r.sub.waitRecovered(rctx, end, exclude, above)
	if err != nil {
		rec.Error = joinErr(rec.Error, "no step commit and center update after the fault: "+err.Error())
		return rec
	}
	rec.Recovered, rec.Recovery, rec.RecoveredBy = true, at.Sub(end), by
	if restarted != nil {
		// The restarted child must also report ready (it is not part of
		// the recovery time: the subscriber's view is).
		if err := restarted.WaitReady(rctx); err != nil {
			rec.Recovered = false
			rec.Error = joinErr(rec.Error, err.Error())
			return rec
		}
		rec.ReadyAfter = time.Since(end)
	}
	return rec
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// injection is one bad message written.
type injection struct {
	kind   string
	reason string // the reason the decoder gives
	p      tp
	offset int64
}

// share is burst i's share of n items over bursts.
func share(n, bursts, i int) int {
	s := n / bursts
	if i < n%bursts {
		s++
	}
	return s
}

// injectBad writes burst i of the bad messages to random partitions of
// both sample topics.
func (r *runner) injectBad(ctx context.Context, i int) (string, error) {
	parts, err := r.kafka.partitions(ctx, r.names.byID, r.names.instance)
	if err != nil {
		return "", err
	}
	byTopic := map[string][]tp{}
	for _, p := range parts {
		byTopic[p.topic] = append(byTopic[p.topic], p)
	}
	per := share(r.o.badPerKind, r.o.badBursts, i)
	rng := mrand.New(mrand.NewPCG(r.seed, 0xbad0+uint64(i)))
	var recs []*kgo.Record
	kinds := map[*kgo.Record]badKind{}
	for _, k := range badKinds() {
		for _, topic := range []string{r.names.byID, r.names.instance} {
			for range per {
				key, value, err := makeBad(k, r.data, rng, topic == r.names.byID)
				if err != nil {
					return "", err
				}
				ps := byTopic[topic]
				rec := &kgo.Record{Topic: topic, Partition: ps[rng.IntN(len(ps))].partition, Key: key, Value: value}
				recs = append(recs, rec)
				kinds[rec] = k
			}
		}
	}
	// The results come in the order the writes completed.
	res := r.kafka.produce(ctx, recs)
	var failed int
	for _, pr := range res {
		if pr.Err != nil {
			failed++
			continue
		}
		k := kinds[pr.Record]
		r.injected = append(r.injected, injection{kind: k.name, reason: k.reason, p: tp{pr.Record.Topic, pr.Record.Partition}, offset: pr.Record.Offset})
	}
	how := fmt.Sprintf("%d written: %d of each of %d kinds to each sample topic", len(recs)-failed, per, len(badKinds()))
	if failed > 0 {
		return how, fmt.Errorf("%d of %d bad messages not written: %w", failed, len(recs), res.FirstErr())
	}
	return how, nil
}

// scrapeProducer records what the running producer process reports
// acknowledged and given up on (its /metrics): a process's counters die
// with it, so this runs before each kill and while it stops. It reports
// whether a scrape succeeded.
func (r *runner) scrapeProducer(ctx context.Context) bool {
	p := r.producer.running()
	if p == nil {
		return false
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.producer.spec.metricsAddr+"/metrics", nil)
	if err != nil {
		return false
	}
	res, err := cl.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return false
	}
	acked, dropped := producerCounts(string(b), r.names.byID, r.names.instance)
	// Counters only grow: the last scrape of a process holds its totals.
	c := r.scraped[p.n]
	r.scraped[p.n] = [2]int64{max(c[0], acked), max(c[1], dropped)}
	return true
}

// producerTotals sums the last scrape of every producer process.
func (r *runner) producerTotals() (acked, dropped int64) {
	for _, c := range r.scraped {
		acked += c[0]
		dropped += c[1]
	}
	return acked, dropped
}

// producerCounts reads, from the Prometheus text format, the messages
// acknowledged on topics (ffc_producer_samples_total) and those given up
// on (ffc_producer_produce_failures_total and any ffc_producer_*dropped*
// series).
func producerCounts(text string, topics ...string) (acked, dropped int64) {
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		series := line[:sp]
		name, labels, _ := strings.Cut(series, "{")
		switch {
		case name == "ffc_producer_samples_total":
			for _, t := range topics {
				if strings.Contains(labels, `topic="`+t+`"`) {
					acked += int64(v)
				}
			}
		case name == "ffc_producer_produce_failures_total",
			strings.HasPrefix(name, "ffc_producer_") && strings.Contains(name, "dropped"):
			dropped += int64(v)
		}
	}
	return acked, dropped
}
