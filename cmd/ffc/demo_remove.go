package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/producers"
)

// removalSummary: how long removed IDs took from their removal marker to
// leaving the replica (a tombstone on NATS).
type removalSummary struct {
	Removed    int     `json:"removed_ids"`
	Gone       int     `json:"gone_from_replica"`
	P50Seconds float64 `json:"p50_seconds"`
	MaxSeconds float64 `json:"max_seconds"`
}

// removals records the IDs the demo removed, as ffc ids remove does.
type removals struct {
	mu  sync.Mutex
	ids map[uint64]*freshID // announced: the removal marker; center: gone
}

func newRemovals() *removals { return &removals{ids: map[uint64]*freshID{}} }

// removeNewIDs removes n of the streamed-in IDs that have a center: their
// objects are deleted, then the removal marker is written.
func (r *demoRun) removeNewIDs(ctx context.Context, n int) error {
	var ids []uint64
	for _, id := range r.fresh.centered() {
		if len(ids) == n {
			break
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if _, err := deleteID(ctx, r.mc, r.bucket, id); err != nil {
			return fmt.Errorf("demo: remove id %d: %w", id, err)
		}
		if err := producers.AnnounceRemoval(ctx, r.mc, r.bucket, id); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		r.removed.mu.Lock()
		r.removed.ids[id] = &freshID{announced: time.Now()}
		r.removed.mu.Unlock()
	}
	fmt.Fprintf(r.out, "demo: removed %d new IDs (objects deleted, removal announced): %v\n", len(ids), ids)
	return nil
}

// check records the removed IDs that left the replica.
func (m *removals) check(rep *broadcast.Replica, out io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, x := range m.ids {
		if x.center.IsZero() {
			if _, ok := rep.Get(id); !ok {
				x.center = time.Now()
				fmt.Fprintf(out, "demo: removed ID %d: gone from the replica (tombstone on NATS) %s after its removal\n", id, x.center.Sub(x.announced).Round(time.Millisecond))
			}
		}
	}
}

func (m *removals) summary() removalSummary {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lat []time.Duration
	for _, x := range m.ids {
		if !x.center.IsZero() {
			lat = append(lat, x.center.Sub(x.announced))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s := removalSummary{Removed: len(m.ids), Gone: len(lat)}
	if len(lat) > 0 {
		s.P50Seconds = lat[int(math.Ceil(0.5*float64(len(lat))))-1].Seconds()
		s.MaxSeconds = lat[len(lat)-1].Seconds()
	}
	return s
}

// centered returns the new IDs whose center has arrived, ascending.
func (f *freshness) centered() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for id, x := range f.ids {
		if !x.center.IsZero() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// allCentered reports whether every new ID announced has its center.
func (f *freshness) allCentered() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range f.ids {
		if x.center.IsZero() {
			return false
		}
	}
	return len(f.ids) > 0
}
