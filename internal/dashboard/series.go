package dashboard

import (
	"math"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// chartDef is one chart of the page: extract reads its lines (name →
// value) from the gathered families; rate charts plot the per-second
// rate of those values (counters) instead.
type chartDef struct {
	id, title, unit, help string
	rate                  bool
	extract               func(m families, now time.Time) map[string]float64
}

// families are the gathered metric families by name.
type families map[string]*dto.MetricFamily

func index(fams []*dto.MetricFamily) families {
	m := make(families, len(fams))
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

// The series the charts read.
const (
	mSteps        = "ffc_trainer_steps_total"
	mLoss         = "ffc_trainer_loss"
	mSamples      = "ffc_trainer_samples_total"
	mPool         = "ffc_trainer_pool_labels"
	mConsumerLag  = "ffc_trainer_consumer_lag"
	mProducerLag  = "ffc_producer_lag_messages"
	mFreshness    = "ffc_trainer_freshness_seconds"
	mTrainerDead  = "ffc_trainer_dead_letters_total"
	mProducerDead = "ffc_producer_dead_letters_total"
	mCkptAge      = "ffc_trainer_checkpoint_age_seconds"
	mCkptUnix     = "ffc_trainer_checkpoint_unix_seconds"
)

// charts are the page's charts, in order.
var charts = []chartDef{
	{id: "loss", title: "Loss", help: mLoss + " (after the first step)", extract: loss},
	{id: "samples", title: "Samples/s", unit: "/s", help: "rate of " + mSamples + ", by topic", rate: true, extract: samples},
	{id: "pool", title: "Pool occupancy", unit: "labels", help: mPool, extract: gauge(mPool, "labels")},
	{id: "lag", title: "Consumer lag", unit: "messages", help: mConsumerLag + " by topic/partition (else " + mProducerLag + " by topic)", extract: lag},
	{id: "freshness", title: "Freshness", unit: "s", help: mFreshness + ": new ID announced → its center on NATS, quantiles since start", extract: freshness},
	{id: "dead_letters", title: "Dead letters", unit: "messages", help: mTrainerDead + " and " + mProducerDead + ", by reason", extract: deadLetters},
	{id: "checkpoint_age", title: "Last checkpoint", unit: "s ago", help: mCkptAge + " (else now − " + mCkptUnix + ")", extract: checkpointAge},
}

// value is the value of a gauge, counter or untyped sample.
func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

// label is the value of the metric's label name ("" when it has none).
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// sum adds the family's samples up by key (summed over other labels).
func sum(f *dto.MetricFamily, key func(*dto.Metric) string) map[string]float64 {
	out := map[string]float64{}
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		out[key(m)] += value(m)
	}
	return out
}

func gauge(name, line string) func(families, time.Time) map[string]float64 {
	return func(m families, _ time.Time) map[string]float64 {
		return sum(m[name], func(*dto.Metric) string { return line })
	}
}

func loss(m families, now time.Time) map[string]float64 {
	if steps := sum(m[mSteps], func(*dto.Metric) string { return "" }); steps[""] <= 0 {
		return map[string]float64{} // 0 before the first step is no loss
	}
	return gauge(mLoss, "loss")(m, now)
}

func samples(m families, _ time.Time) map[string]float64 {
	f := m[mSamples]
	out := sum(f, func(x *dto.Metric) string { return label(x, "topic") })
	if f != nil {
		total := 0.0
		for _, v := range out {
			total += v
		}
		out["total"] = total
	}
	return out
}

func lag(m families, _ time.Time) map[string]float64 {
	if f := m[mConsumerLag]; f != nil && len(f.GetMetric()) > 0 {
		return sum(f, func(x *dto.Metric) string { return label(x, "topic") + "/" + label(x, "partition") })
	}
	return sum(m[mProducerLag], func(x *dto.Metric) string { return label(x, "topic") + " (producer)" })
}

// freshness plots the median and the 99th percentile of the freshness
// histogram since start, once it has an observation.
func freshness(m families, _ time.Time) map[string]float64 {
	out := map[string]float64{}
	f := m[mFreshness]
	if f == nil || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetHistogram() == nil {
		return out
	}
	h := f.GetMetric()[0].GetHistogram()
	if h.GetSampleCount() == 0 {
		return out
	}
	out["p50"] = quantile(0.5, h)
	out["p99"] = quantile(0.99, h)
	return out
}

// quantile estimates the q-quantile of a cumulative histogram by linear
// interpolation within its bucket, as Prometheus' histogram_quantile: the
// highest finite bound when it falls past the last one.
func quantile(q float64, h *dto.Histogram) float64 {
	n := float64(h.GetSampleCount())
	rank := q * n
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if math.IsInf(upper, 1) {
			break
		}
		if cum >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return lower
}

// deadLetters plots the dead letters so far: every reason seen, of the
// trainer and of the producer, and their total (0 while there are none:
// the trainer's counters appear with the first, its steps from the start).
func deadLetters(m families, _ time.Time) map[string]float64 {
	out := map[string]float64{}
	if m[mTrainerDead] == nil && m[mProducerDead] == nil && m[mSteps] == nil {
		return out
	}
	total := 0.0
	for who, name := range map[string]string{"trainer": mTrainerDead, "producer": mProducerDead} {
		for reason, v := range sum(m[name], func(x *dto.Metric) string { return label(x, "reason") }) {
			if v > 0 {
				out[who+" "+reason] = v
				total += v
			}
		}
	}
	out["total"] = total
	return out
}

// checkpointAge is the age of the last durable checkpoint, from the
// trainer's age gauge when it has one, else from its time.
func checkpointAge(m families, now time.Time) map[string]float64 {
	if f := m[mCkptAge]; f != nil && len(f.GetMetric()) > 0 {
		return gauge(mCkptAge, "age")(m, now)
	}
	at := sum(m[mCkptUnix], func(*dto.Metric) string { return "" })[""]
	if at <= 0 {
		return map[string]float64{} // none yet
	}
	return map[string]float64{"age": max(0, float64(now.UnixMilli())/1e3-at)}
}

// sortedKeys returns the lines of a snapshot in a stable order, "total"
// first.
func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if (a == "total") != (b == "total") {
			if a == "total" {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return keys
}
