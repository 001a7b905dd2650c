package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// baselines compare the trained network with no training, on the
// held-out images and IDs of the replica figure, each ID's reference
// being one of its train images (the first): its embedding by the
// trained network, by the untrained network of the same seed, or its raw
// pixels. The replica's centers are gallery features taken as training
// went, older ones by an earlier network; these references are all taken
// now, so the three figures differ only in the embedding.
type baselines struct {
	IDs       int     `json:"ids"` // the candidates: the IDs of the images
	Trained   float64 `json:"trained_top1"`
	Untrained float64 `json:"untrained_top1"`
	Pixels    float64 `json:"raw_pixels_top1"`
}

// demoEvalIDs bounds the IDs the summary evaluates, besides the new ones:
// embedding is the summary's cost (a forward pass per image, four sets).
const demoEvalIDs = 1000

// evalImages picks the held-out images the summary identifies: every
// held-out image of the streamed-in IDs with a center, and the first
// held-out image of up to demoEvalIDs other IDs with a center, spread
// evenly over them.
func (r *demoRun) evalImages() []int {
	var news, others []int
	seen := map[int]bool{}
	for _, i := range r.data.Split(dataset.SplitHeldout) {
		c := r.data.Meta(i).Class
		if _, ok := r.rep.Get(r.data.ids[c]); !ok {
			continue
		}
		switch {
		case r.data.back[c]:
			news = append(news, i)
		case !seen[c]:
			seen[c] = true
			others = append(others, i)
		}
	}
	if n := len(others); n > demoEvalIDs {
		picked := make([]int, demoEvalIDs)
		for k := range picked {
			picked[k] = others[k*n/demoEvalIDs]
		}
		others = picked
	}
	return append(others, news...)
}

// baselines scores the held-out images imgs against their IDs, each with
// one train image as its reference, embedded by the trained network, the
// untrained network of the run's seed, and as raw pixels.
// emb holds the trained network's embeddings of imgs (identify's).
func (r *demoRun) baselines(ctx context.Context, imgs []int, emb []float32) (baselines, error) {
	var b baselines
	var ids []uint64
	row := map[uint64]int{}
	for _, i := range imgs {
		id := r.data.ids[r.data.Meta(i).Class]
		if _, ok := row[id]; !ok {
			row[id] = len(ids)
			ids = append(ids, id)
		}
	}
	first := make([]int, len(row)) // a train image per ID
	for k := range first {
		first[k] = -1
	}
	for i := range r.data.Len() {
		m := r.data.Meta(i)
		if k, ok := row[r.data.ids[m.Class]]; ok && m.Split == dataset.SplitTrain && first[k] < 0 {
			first[k] = i
		}
	}
	want := make([]int, len(imgs))
	for j, i := range imgs {
		want[j] = row[r.data.ids[r.data.Meta(i).Class]]
	}
	b.IDs = len(ids)
	for k, i := range first {
		if i < 0 { // an ID with a center but no train image here
			return b, fmt.Errorf("ID %d has a center but no train image", ids[k])
		}
	}
	var err error
	if b.Trained, err = r.networkTop1(ctx, r.tr.Engine(), emb, first, want); err != nil {
		return b, err
	}
	e, err := probeEngine(r.be, r.o.set, settings.Streaming, r.log)
	if err != nil {
		return b, err
	}
	defer e.Close()
	q, err := engine.EmbedImages(ctx, e, r.data, imgs)
	if err != nil {
		return b, err
	}
	if b.Untrained, err = r.networkTop1(ctx, e, q, first, want); err != nil {
		return b, err
	}
	q, err = engine.Pixels(r.data, imgs)
	if err != nil {
		return b, err
	}
	c, err := engine.Pixels(r.data, first)
	if err != nil {
		return b, err
	}
	b.Pixels, err = top1(r, q, c, r.data.ImageSize()*r.data.ImageSize(), want)
	return b, err
}

// networkTop1 embeds the references refs with e's probe and scores the
// nearest reference of each held-out embedding q (e's too).
func (r *demoRun) networkTop1(ctx context.Context, e *engine.Engine, q []float32, refs, want []int) (float64, error) {
	c, err := engine.EmbedImages(ctx, e, r.data, refs)
	if err != nil {
		return 0, err
	}
	return top1(r, q, c, r.o.set.Dim, want)
}

func top1(r *demoRun, q, c []float32, d int, want []int) (float64, error) {
	got, err := engine.Nearest(r.be, q, c, d)
	if err != nil {
		return 0, err
	}
	hits := 0
	for j, k := range got {
		if k == want[j] {
			hits++
		}
	}
	return float64(hits) / float64(max(1, len(want))), nil
}

// printIdentification writes the top-1 lines of the summary.
func (s *demoSummary) printIdentification(out io.Writer) {
	if s.Top1Images == 0 {
		fmt.Fprintln(out, "  top-1 held-out      no held-out image of an ID with a center yet")
	} else {
		fmt.Fprintf(out, "  top-1 held-out      %.1f%% of %d held-out images (one per ID, all of the new IDs; never trained on, whole fonts for glyphs) against the replica's %d centers; chance %.2f%%\n",
			100*s.Top1, s.Top1Images, s.ReplicaIDs, 100*s.Chance)
		b := s.Baselines
		fmt.Fprintf(out, "  learning            the same images among their %d IDs, each ID's reference one of its train images:\n", b.IDs)
		fmt.Fprintf(out, "                      trained network %.1f%%, untrained network (same seed) %.1f%%, raw pixels %.1f%%, chance %.2f%%\n",
			100*b.Trained, 100*b.Untrained, 100*b.Pixels, 100/math.Max(1, float64(b.IDs)))
	}
	switch {
	case s.Freshness.NewIDs == 0:
		fmt.Fprintln(out, "  new IDs identified  no new IDs yet")
	case s.NewImages == 0:
		fmt.Fprintf(out, "  new IDs identified  none of the %d streamed-in IDs has a center and a held-out image yet\n", s.Freshness.NewIDs)
	default:
		fmt.Fprintf(out, "  new IDs identified  %.1f%% of %d held-out images of the %d streamed-in IDs\n", 100*s.NewTop1, s.NewImages, s.Freshness.NewIDs)
	}
}

// deadLetterText lists the dead letters by reason, or says there were none.
func deadLetterText(producer map[string]int64, trainer int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(producer)) {
		if producer[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, producer[k]))
		}
	}
	if len(parts) > 0 {
		parts = []string{"producer: " + strings.Join(parts, ", ")}
	}
	if trainer > 0 {
		parts = append(parts, fmt.Sprintf("trainer: %d rejected (see ffc_trainer_dead_letters_total by reason)", trainer))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}
