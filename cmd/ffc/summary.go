package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// demoSummary is what a demo run did; --json writes it as is.
type demoSummary struct {
	Run      string            `json:"run"`
	Model    string            `json:"model"`
	Data     string            `json:"data"`
	Settings settings.Settings `json:"settings"`
	Checks   []checkResult     `json:"checks"`
	Compute  computeInfo       `json:"compute"`

	TrainingSeconds    float64          `json:"training_seconds"`
	Steps              int              `json:"steps"`
	Skipped            int              `json:"skipped_steps"`
	Checkpoints        int              `json:"checkpoints"`
	SamplesPerSecond   float64          `json:"samples_per_second"`
	ProducedPairs      int64            `json:"produced_pairs"`
	ProducedInst       int64            `json:"produced_instances"`
	DeadLetters        map[string]int64 `json:"dead_letters"`         // the producer's, by reason
	TrainerDeadLetters int              `json:"trainer_dead_letters"` // messages the trainer rejected
	PoolLen            int              `json:"pool_len"`
	Pool               int              `json:"pool"`
	Published          int              `json:"centers_published"`
	ReplicaIDs         int              `json:"replica_ids"`
	ReplicaLastStep    int64            `json:"replica_last_step"`
	CatalogIDs         int              `json:"catalog_ids"`

	Top1       float64 `json:"top1"`        // held-out images against the replica's centers
	Top1Images int     `json:"top1_images"` // held-out images of IDs with a center
	Chance     float64 `json:"chance_top1"`
	NewTop1    float64 `json:"new_ids_top1"`
	NewImages  int     `json:"new_ids_images"`
	// The same held-out images against the same IDs, without training:
	// the network of the same seed untrained (a center is its embedding
	// of one train image, as the pool's first gallery feature would be),
	// and raw pixels (a center is the mean of the ID's train images).
	Baselines baselines `json:"baselines"`

	Freshness freshnessSummary `json:"freshness"`
	Removal   removalSummary   `json:"removal"`
}

// freshnessSummary: how long new IDs took from their announcement to their
// first center on NATS.
type freshnessSummary struct {
	NewIDs     int     `json:"new_ids"`
	WithCenter int     `json:"with_center"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
	MaxSeconds float64 `json:"max_seconds"`
}

// summary gathers the run's numbers after the stages stopped.
func (r *demoRun) summary(ctx context.Context) (*demoSummary, error) {
	r.fresh.check(r.rep, r.out) // centers that arrived since the last poll
	r.removed.check(r.rep, r.out)
	st, rs, ps := r.tr.Stats(), r.rep.Stats(), r.prod.Stats()
	el := time.Since(r.start)
	s := &demoSummary{Run: r.id, Model: r.model, Data: r.data.what, Settings: r.o.set,
		TrainingSeconds: el.Seconds(), Steps: st.Steps, Skipped: st.Skipped, Checkpoints: st.Checkpoints,
		SamplesPerSecond: float64(st.Pairs+st.Instances) / el.Seconds(),
		ProducedPairs:    ps.ByID.Produced, ProducedInst: ps.Instance.Produced, DeadLetters: ps.DeadLetters, TrainerDeadLetters: st.DeadLetters,
		PoolLen: st.PoolLen, Pool: r.o.set.Pool, Published: st.Published,
		ReplicaIDs: rs.IDs, ReplicaLastStep: rs.LastStep, CatalogIDs: ps.IDs,
		Chance: 1 / math.Max(1, float64(rs.IDs)), Freshness: r.fresh.freshnessSummary(), Removal: r.removed.removalSummary()}
	if err := r.identify(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// identify embeds the held-out images of the classes with a center and
// finds their nearest center in the replica.
func (r *demoRun) identify(ctx context.Context, s *demoSummary) error {
	imgs := r.evalImages()
	emb, err := engine.EmbedImages(ctx, r.tr.Engine(), r.data, imgs)
	if err != nil {
		return fmt.Errorf("demo: identify: %w", err)
	}
	d := r.o.set.Dim
	correct, newCorrect := 0, 0
	for k, i := range imgs {
		c := r.data.Meta(i).Class
		m, err := r.rep.Search(emb[k*d:(k+1)*d], 1)
		if err != nil {
			return fmt.Errorf("demo: identify: %w", err)
		}
		hit := len(m) == 1 && m[0].ID == r.data.ids[c]
		if hit {
			correct++
		}
		if r.data.back[c] {
			s.NewImages++
			if hit {
				newCorrect++
			}
		}
	}
	s.Top1Images = len(imgs)
	s.Top1 = float64(correct) / math.Max(1, float64(len(imgs)))
	s.NewTop1 = float64(newCorrect) / math.Max(1, float64(s.NewImages))
	if len(imgs) == 0 {
		return nil
	}
	b, err := r.baselines(ctx, imgs, emb)
	if err != nil {
		return fmt.Errorf("demo: baselines: %w", err)
	}
	s.Baselines = b
	return nil
}

// print writes the summary for people.
func (s *demoSummary) print(out io.Writer) {
	fmt.Fprintf(out, "\ndemo summary (%s of training)\n", (time.Duration(s.TrainingSeconds * float64(time.Second))).Round(time.Second))
	fmt.Fprintf(out, "  steps               %d (%d skipped), %d checkpoints\n", s.Steps, s.Skipped, s.Checkpoints)
	fmt.Fprintf(out, "  samples/s           %.0f (id pairs + instances consumed by the trainer)\n", s.SamplesPerSecond)
	fmt.Fprintf(out, "  produced            %d id pairs, %d instances\n", s.ProducedPairs, s.ProducedInst)
	fmt.Fprintf(out, "  dead letters        %s\n", deadLetterText(s.DeadLetters, s.TrainerDeadLetters))
	fmt.Fprintf(out, "  pool occupancy      %d/%d\n", s.PoolLen, s.Pool)
	fmt.Fprintf(out, "  centers published   %d updates; the replica holds %d IDs (last step %d); the catalog has %d IDs\n", s.Published, s.ReplicaIDs, s.ReplicaLastStep, s.CatalogIDs)
	s.printIdentification(out)
	f := s.Freshness
	switch {
	case f.WithCenter > 0:
		fmt.Fprintf(out, "  freshness           new ID announced → center on NATS: p50 %s, p99 %s, max %s (%d of %d new IDs got a center)\n",
			seconds(f.P50Seconds), seconds(f.P99Seconds), seconds(f.MaxSeconds), f.WithCenter, f.NewIDs)
	case f.NewIDs > 0:
		fmt.Fprintf(out, "  freshness           none of the %d new IDs got a center yet\n", f.NewIDs)
	}
	if rm := s.Removal; rm.Removed > 0 {
		fmt.Fprintf(out, "  removal             removal marker → ID gone from the replica (tombstone): p50 %s, max %s (%d of %d removed IDs gone)\n",
			seconds(rm.P50Seconds), seconds(rm.MaxSeconds), rm.Gone, rm.Removed)
	}
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

// writeJSONTo writes v as indented JSON.
func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// idTimer records, for each ID, when something was asked of it (a new
// ID announced, an ID removed) and when the replica first showed the
// result (a center; the ID gone): the demo's freshness and removal times.
type idTimer struct {
	// arrived reports whether the replica shows the result for an ID;
	// say is printed with the ID and the time when it does.
	arrived func(rep *broadcast.Replica, id uint64) bool
	say     string

	mu  sync.Mutex
	ids map[uint64]*idTimes
}

type idTimes struct{ asked, arrived time.Time }

// newFreshness times new IDs: announcement → center in the replica.
func newFreshness() *idTimer {
	return &idTimer{ids: map[uint64]*idTimes{}, say: "new ID %d: center on NATS %s after its announcement",
		arrived: func(rep *broadcast.Replica, id uint64) bool { _, ok := rep.Get(id); return ok }}
}

// newRemovals times removed IDs: removal marker → gone from the replica
// (a tombstone on NATS).
func newRemovals() *idTimer {
	return &idTimer{ids: map[uint64]*idTimes{}, say: "removed ID %d: gone from the replica (tombstone on NATS) %s after its removal",
		arrived: func(rep *broadcast.Replica, id uint64) bool { _, ok := rep.Get(id); return !ok }}
}

// asked records that id was asked now.
func (f *idTimer) asked(id uint64) {
	f.mu.Lock()
	f.ids[id] = &idTimes{asked: time.Now()}
	f.mu.Unlock()
}

// check records the IDs whose result has arrived.
func (f *idTimer) check(rep *broadcast.Replica, out io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, x := range f.ids {
		if x.arrived.IsZero() && f.arrived(rep, id) {
			x.arrived = time.Now()
			fmt.Fprintf(out, "demo: "+f.say+"\n", id, x.arrived.Sub(x.asked).Round(time.Millisecond))
		}
	}
}

// done returns the IDs whose result has arrived, ascending, and whether
// every ID asked has it.
func (f *idTimer) done() (ids []uint64, all bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, x := range f.ids {
		if !x.arrived.IsZero() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, len(ids) == len(f.ids) && len(ids) > 0
}

// times returns the number of IDs asked and the quantiles p of the times
// of those whose result arrived (nil when none has).
func (f *idTimer) times(p ...float64) (asked, arrived int, q []float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lat []time.Duration
	for _, x := range f.ids {
		if !x.arrived.IsZero() {
			lat = append(lat, x.arrived.Sub(x.asked))
		}
	}
	if len(lat) == 0 {
		return len(f.ids), 0, nil
	}
	slices.Sort(lat)
	for _, v := range p {
		q = append(q, lat[max(0, min(len(lat)-1, int(math.Ceil(v*float64(len(lat))))-1))].Seconds())
	}
	return len(f.ids), len(lat), q
}

func (f *idTimer) freshnessSummary() freshnessSummary {
	n, got, q := f.times(0.5, 0.99, 1)
	s := freshnessSummary{NewIDs: n, WithCenter: got}
	if q != nil {
		s.P50Seconds, s.P99Seconds, s.MaxSeconds = q[0], q[1], q[2]
	}
	return s
}

func (f *idTimer) removalSummary() removalSummary {
	n, got, q := f.times(0.5, 1)
	s := removalSummary{Removed: n, Gone: got}
	if q != nil {
		s.P50Seconds, s.MaxSeconds = q[0], q[1]
	}
	return s
}
