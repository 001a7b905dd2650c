package trainers

import (
	"fmt"
	"maps"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// lagSeries reads ffc_trainer_consumer_lag from reg: "topic/partition" →
// value.
func lagSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "ffc_trainer_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[l["topic"]+"/"+l["partition"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// expectedLag is, for the 4 partitions of the id and instance topics,
// their high watermark minus the group's committed offset (0 when none),
// and 0 for the fresh lane's (empty), with the sum per topic.
func (e *env) expectedLag(t *testing.T) (map[string]float64, map[string]float64) {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: e.transport}
	ctx := testutil.Context(t)
	req := map[string][]kafka.OffsetRequest{}
	for _, topic := range []string{e.byID, e.instance, e.fresh} {
		for p := range 4 {
			req[topic] = append(req[topic], kafka.LastOffsetOf(p))
		}
	}
	ends, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		t.Fatal(err)
	}
	com, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: e.group, Topics: map[string][]int{e.byID: {0, 1, 2, 3}, e.instance: {0, 1, 2, 3}, e.fresh: {0, 1, 2, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	committed := map[string]int64{}
	for topic, ps := range com.Topics {
		for _, p := range ps {
			committed[topic+"/"+strconv.Itoa(p.Partition)] = max(p.CommittedOffset, 0)
		}
	}
	want, sums := map[string]float64{}, map[string]float64{}
	for topic, ps := range ends.Topics {
		for _, p := range ps {
			if p.Error != nil {
				t.Fatalf("%s/%d: %v", topic, p.Partition, p.Error)
			}
			k := topic + "/" + strconv.Itoa(p.Partition)
			want[k] = float64(p.LastOffset - committed[k])
			sums[topic] += want[k]
		}
	}
	return want, sums
}

// TestConsumerLag: 40 pairs and 40 instances wait in the 4 partitions of
// each topic when a trainer limited to 3 steps of 8 starts. Once it has
// stopped, ffc_trainer_consumer_lag of each of the 12 partitions is its
// high watermark minus the offset the trainer reached (and committed):
// 16 messages left per topic, none in the empty fresh lane. A second run
// takes the 2 steps left: every lag is 0.
func TestConsumerLag(t *testing.T) {
	e, _ := embeddedEnv(t)
	e.produce(t, 10, 40, 0)
	for i, tc := range []struct {
		steps int
		left  float64
	}{{3, 40 - 3*8}, {2, 0}} {
		cfg := e.config(tc.steps)
		reg := prometheus.NewRegistry()
		cfg.Registry = reg
		s, _ := run(t, cfg)
		if s.Steps != tc.steps || s.Pairs != 8*tc.steps || s.Instances != 8*tc.steps {
			t.Fatalf("run %d: stats %+v, want %d steps of 8 pairs and 8 instances", i, s, tc.steps)
		}
		want, sums := e.expectedLag(t)
		if sums[e.byID] != tc.left || sums[e.instance] != tc.left || sums[e.fresh] != 0 {
			t.Fatalf("run %d: the topics hold %v messages past the committed offsets, want %v, %v and 0", i, sums, tc.left, tc.left)
		}
		got := lagSeries(t, reg)
		if !maps.Equal(got, want) {
			t.Errorf("run %d: ffc_trainer_consumer_lag %v, want %v", i, got, want)
		}
		if n := promtest.CollectAndCount(reg, "ffc_trainer_consumer_lag"); n != 12 {
			t.Errorf("run %d: %d lag series, want one per partition: 12", i, n)
		}
	}
}

// TestConsumerLagRebalance: a trainer alone in its group has a lag
// series for each of the 12 partitions; once a second member has joined,
// each keeps the series of the partitions it holds and no other.
func TestConsumerLagRebalance(t *testing.T) {
	e, _ := embeddedEnv(t)
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	cfg := e.config(0)
	cfg.Registry = regA
	a := runAsync(t, cfg).tr
	testutil.WaitFor(t, "12 lag series of the only member", func() error {
		if got := lagSeries(t, regA); len(got) != 12 || a.Stats().Partitions != 12 {
			return fmt.Errorf("%d partitions, lag %v", a.Stats().Partitions, got)
		}
		return nil
	})
	cfg = e.config(0)
	cfg.Model, cfg.Registry = e.model+"-b", regB
	b := runAsync(t, cfg).tr
	testutil.WaitFor(t, "the partitions shared, each member with the series of its own", func() error {
		la, lb := lagSeries(t, regA), lagSeries(t, regB)
		pa, pb := a.Stats().Partitions, b.Stats().Partitions
		if pa == 0 || pb == 0 || pa+pb != 12 || len(la) != pa || len(lb) != pb {
			return fmt.Errorf("partitions %d and %d, lag series %v and %v", pa, pb, la, lb)
		}
		for k, v := range la {
			if _, dup := lb[k]; dup || v != 0 {
				return fmt.Errorf("partition %s: lag %v, in both members' series %v", k, v, dup)
			}
		}
		for k, v := range lb {
			if v != 0 {
				return fmt.Errorf("partition %s: lag %v", k, v)
			}
		}
		return nil
	})
}
