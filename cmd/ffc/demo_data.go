package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/glyphs"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
)

// demoSet is the demo's data set with the storage ID of every class and
// the classes held back to stream in part-way.
type demoSet struct {
	*dataset.Reader
	what string   // what the data is, for the summary
	ids  []uint64 // storage ID of class c
	back map[int]bool
}

// openDemoSet opens (building it when needed) the demo's data set and
// picks newIDs classes with held-out images to hold back.
func openDemoSet(ctx context.Context, out io.Writer, log *slog.Logger, o pipelineOptions) (*demoSet, error) {
	ds, what, err := demoData(ctx, out, log, o.dataDir, o.synthOnly, o.synthIDs)
	if err != nil {
		return nil, fmt.Errorf("demo: data: %w", err)
	}
	d := &demoSet{Reader: ds, what: what, back: map[int]bool{}}
	for _, c := range ds.Classes() {
		id, err := c.StorageID()
		if err != nil {
			ds.Close()
			return nil, err
		}
		d.ids = append(d.ids, id)
	}
	// Classes held back from the start and streamed in part-way: train
	// classes with held-out images, so they can be identified afterwards.
	withHeldOut := map[int]bool{}
	for _, i := range ds.Split(dataset.SplitHeldout) {
		withHeldOut[ds.Meta(i).Class] = true
	}
	var candidates []int
	for c := range withHeldOut {
		candidates = append(candidates, c)
	}
	sort.Ints(candidates)
	for i := 0; i < len(candidates) && len(d.back) < o.newIDs; i += max(1, len(candidates)/max(1, o.newIDs)) {
		d.back[candidates[i]] = true
	}
	return d, nil
}

// demoData returns the demo's data set: the CI glyph set, built into
// dataDir (cached), or synthetic identities where the font packages cannot
// be fetched.
func demoData(ctx context.Context, out io.Writer, log *slog.Logger, dataDir string, synthOnly bool, synthIDs int) (*dataset.Reader, string, error) {
	if !synthOnly {
		r, err := glyphData(ctx, log, filepath.Join(dataDir, "glyphs-ci"))
		if err == nil {
			return r, "CJK glyph identities from 12 Debian font packages (GB2312 level 1)", nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		fmt.Fprintf(out, "demo: the font packages could not be fetched or rendered (%v): RUNNING ON SYNTHETIC IDENTITIES instead\n", err)
	}
	if synthIDs <= 0 {
		synthIDs = 2000
	}
	what := fmt.Sprintf("synthetic identities (%d IDs)", synthIDs)
	dir := filepath.Join(dataDir, fmt.Sprintf("synth-%d", synthIDs))
	if r, err := dataset.Open(dir); err == nil {
		return r, what, nil
	}
	g, err := synth.New(synth.Options{Seed: 1, IDs: uint64(synthIDs), Alpha: 1.5, Min: 4, Max: 30, Size: 32})
	if err != nil {
		return nil, "", err
	}
	if _, err := synth.WriteSample(ctx, g, dir, synth.SampleOptions{IDs: uint64(synthIDs), OpensetFrac: 0.1, HeldoutFrac: 0.2}); err != nil {
		return nil, "", err
	}
	r, err := dataset.Open(dir)
	return r, what, err
}

// glyphData builds (or reuses) the CI glyph set in dir and opens it.
func glyphData(ctx context.Context, log *slog.Logger, dir string) (*dataset.Reader, error) {
	pkgs, err := glyphs.PackageList(glyphs.PackagesCI)
	if err != nil {
		return nil, err
	}
	o := glyphs.DefaultOptions()
	o.Packages, o.OutDir, o.Logger = pkgs, dir, log
	if _, err := glyphs.Build(ctx, o); err != nil {
		return nil, err
	}
	return dataset.Open(dir)
}
