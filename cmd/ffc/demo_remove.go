package main

import (
	"context"
	"fmt"

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

// removeNewIDs removes n of the streamed-in IDs that have a center: their
// objects are deleted, then the removal marker is written.
func (r *demoRun) removeNewIDs(ctx context.Context, n int) error {
	var ids []uint64
	centered, _ := r.fresh.done()
	for _, id := range centered {
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
		r.removed.asked(id)
	}
	fmt.Fprintf(r.out, "demo: removed %d new IDs (objects deleted, removal announced): %v\n", len(ids), ids)
	return nil
}
