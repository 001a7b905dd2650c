package glyphs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ffc-stream/ffc/internal/dataset"
	"golang.org/x/sync/errgroup"
)

// Options configures Build. Start from DefaultOptions: a zero fraction
// means none, not the default.
type Options struct {
	// Packages are Debian package names fetched with apt-get download.
	Packages []string
	// Local are font folders already on disk, used as packages.
	Local []LocalPackage
	// Ranges name the characters (see Range).
	Ranges []string
	// Size is the image side in pixels; default 32.
	Size int
	// OutDir receives the file set; required.
	OutDir string
	// CacheDir keeps downloads, unpacked packages and per-face renders;
	// default DefaultCacheDir().
	CacheDir string
	// OpensetFrac of the classes are never trained on.
	OpensetFrac float64
	// HeldoutFrac of the fonts (with images) are held out of training.
	HeldoutFrac float64
	// Seed makes the splits.
	Seed uint64
	// Workers render faces in parallel; default min(GOMAXPROCS, 4).
	Workers int
	// TofuShare and DupMaxDiff: see DefaultTofuShare, DefaultDupMaxDiff.
	TofuShare  int
	DupMaxDiff float64
	Logger     *slog.Logger
	Progress   func(dataset.Progress)
}

// DefaultOptions returns the defaults: GB2312 level 1 at 32×32, 10% of
// classes open-set, 20% of fonts held out, seed 1.
func DefaultOptions() Options {
	return Options{
		Ranges:      []string{RangeGB2312L1},
		Size:        32,
		OpensetFrac: 0.1,
		HeldoutFrac: 0.2,
		Seed:        1,
		TofuShare:   DefaultTofuShare,
		DupMaxDiff:  DefaultDupMaxDiff,
	}
}

// DefaultCacheDir is $FFC_CACHE_DIR/glyphs, else ~/.cache/ffc/glyphs.
func DefaultCacheDir() string {
	if d := os.Getenv("FFC_CACHE_DIR"); d != "" {
		return filepath.Join(d, "glyphs")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ffc", "glyphs")
	}
	return filepath.Join(os.TempDir(), "ffc-cache", "glyphs")
}

// Params are the build parameters recorded in the manifest.
type Params struct {
	Ranges        []string `json:"ranges"`
	Size          int      `json:"size"`
	Margin        int      `json:"margin"`
	Layout        string   `json:"layout"`
	RenderVersion int      `json:"render_version"`
	MinInk        int      `json:"min_ink"`
	TofuShare     int      `json:"tofu_share"`
	DupMaxDiff    float64  `json:"dup_max_diff"`
	DupMaxPixels  int      `json:"dup_max_pixels"`
	Seed          uint64   `json:"seed"`
	OpensetFrac   float64  `json:"openset_frac"`
	HeldoutFrac   float64  `json:"heldout_frac"`
}

// Result reports a build.
type Result struct {
	Dir      string
	Manifest *dataset.Manifest
	// Faces read (with or without images), of which served from the
	// render cache.
	Faces, FacesCached int
	// DuplicateFiles are font files skipped because an identical file was
	// already used (package:path).
	DuplicateFiles []string
	// Dropped images and characters, summed over faces.
	Dropped Dropped
	// ImagesPerClass summarises the class sizes.
	ImagesPerClass Summary
	// Elapsed is the whole build: fetching (download, unpack), rendering
	// (hashing fonts, rendering or loading cached renders), filtering
	// (tofu, near-duplicates, splits) and writing.
	Elapsed                                      time.Duration
	FetchTime, RenderTime, FilterTime, WriteTime time.Duration
}

// Dropped counts what the filters removed.
type Dropped struct {
	Unmapped    int `json:"unmapped"`
	Empty       int `json:"empty"`
	GlyphErrors int `json:"glyph_errors"`
	Tofu        int `json:"tofu"`
	Duplicates  int `json:"duplicates"`
	// Chars of the range no font gave an image of.
	EmptyClasses int `json:"empty_classes"`
}

// Summary is a distribution's quantiles.
type Summary struct {
	Min, P10, Median, Max int
	Mean                  float64
}

// Summarize computes a Summary (P10 and Median by nearest rank).
func Summarize(v []int) Summary {
	if len(v) == 0 {
		return Summary{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	sum := 0
	for _, x := range s {
		sum += x
	}
	q := func(p float64) int { return s[max(0, int(math.Ceil(p*float64(len(s))))-1)] }
	return Summary{Min: s[0], P10: q(0.1), Median: q(0.5), Max: s[len(s)-1], Mean: float64(sum) / float64(len(s))}
}

// Build fetches the packages, renders every face and writes the file set.
// A rerun reuses downloads, unpacked packages and per-face renders.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chars, err := Chars(o.Ranges)
	if err != nil {
		return nil, err
	}
	if err := o.complete(); err != nil {
		return nil, err
	}
	// Create the output first: an unwritable directory fails before the
	// downloads and the rendering.
	w, err := dataset.Create(o.OutDir, o.Size)
	if err != nil {
		return nil, fmt.Errorf("glyphs: %w", err)
	}
	defer w.Abort()

	res := &Result{Dir: o.OutDir}
	pkgs, err := gatherPackages(ctx, o, log)
	if err != nil {
		return nil, err
	}
	res.FetchTime = time.Since(start)

	files, dups, err := listFonts(pkgs, loadHashMemo(filepath.Join(o.CacheDir, "font-hashes.json")))
	if err != nil {
		return nil, err
	}
	res.DuplicateFiles = dups
	jobs := faceJobs(files)
	if len(jobs) == 0 {
		return nil, errors.New("glyphs: the packages hold no font files")
	}
	log.Info("rendering", "packages", len(pkgs), "files", len(files), "faces", len(jobs), "chars", len(chars), "size", o.Size, "workers", o.Workers)

	renders, cached, err := renderAll(ctx, jobs, chars, o, log)
	if err != nil {
		return nil, err
	}
	res.Faces, res.FacesCached = len(jobs), cached
	renderEnd := time.Now()
	res.RenderTime = renderEnd.Sub(start) - res.FetchTime

	m, sel, err := assemble(jobs, pkgs, renders, chars, o, res)
	if err != nil {
		return nil, err
	}
	filterEnd := time.Now()
	res.FilterTime = filterEnd.Sub(renderEnd)
	if err := writeImages(w, m, sel); err != nil {
		return nil, err
	}
	if err := w.Commit(m); err != nil {
		return nil, fmt.Errorf("glyphs: %w", err)
	}
	res.Manifest = m
	res.WriteTime = time.Since(filterEnd)
	res.Elapsed = time.Since(start)
	res.ImagesPerClass = classSizes(m)
	log.Info("glyph set written", "dir", o.OutDir, "classes", len(m.Classes), "images", m.Counts.Images,
		"fonts", len(m.Fonts), "unreadable", len(m.Unreadable), "median_per_class", res.ImagesPerClass.Median,
		"p10_per_class", res.ImagesPerClass.P10, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}

// complete fills in the defaults of the unset options and checks them all.
func (o *Options) complete() error {
	if o.Size == 0 {
		o.Size = 32
	}
	if o.Size < 8 || o.Size > 1024 {
		return fmt.Errorf("glyphs: image size %d outside 8..1024", o.Size)
	}
	if o.Workers <= 0 {
		o.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if o.TofuShare == 0 {
		o.TofuShare = DefaultTofuShare
	}
	if o.TofuShare < 2 {
		return fmt.Errorf("glyphs: tofu share %d: want at least 2", o.TofuShare)
	}
	if o.DupMaxDiff == 0 {
		o.DupMaxDiff = DefaultDupMaxDiff
	}
	if o.DupMaxDiff < 0 || o.DupMaxDiff >= 1 {
		return fmt.Errorf("glyphs: duplicate threshold %v outside [0, 1)", o.DupMaxDiff)
	}
	for _, f := range []float64{o.OpensetFrac, o.HeldoutFrac} {
		if f < 0 || f >= 1 || math.IsNaN(f) {
			return fmt.Errorf("glyphs: split fraction %v outside [0, 1)", f)
		}
	}
	if o.OutDir == "" {
		return errors.New("glyphs: no output directory")
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if len(o.Packages) == 0 && len(o.Local) == 0 {
		return errors.New("glyphs: no packages and no local font folders")
	}
	return nil
}

// gatherPackages fetches o.Packages and returns them followed by o.Local.
func gatherPackages(ctx context.Context, o Options, log *slog.Logger) ([]LocalPackage, error) {
	pkgs := slices.Clone(o.Local)
	if len(o.Packages) > 0 {
		fetched, err := Fetch(ctx, o.Packages, FetchOptions{CacheDir: o.CacheDir, Workers: o.Workers, Logger: log, Progress: o.Progress})
		if err != nil {
			return nil, err
		}
		pkgs = append(fetched, pkgs...)
	}
	return pkgs, nil
}

// faceJobs returns one render job per face of every file, in file order.
func faceJobs(files []*fontFile) []faceJob {
	var jobs []faceJob
	for _, f := range files {
		for i := range f.faces {
			jobs = append(jobs, faceJob{file: f, face: i})
		}
	}
	return jobs
}

// writeImages appends the selected images of every class to w, each in its
// split: open-set classes whole, else held-out fonts, else train.
func writeImages(w *dataset.Writer, m *dataset.Manifest, sel [][]selImage) error {
	for label, imgs := range sel {
		for _, im := range imgs {
			split := dataset.SplitTrain
			switch {
			case m.Classes[label].Split == "openset":
				split = dataset.SplitOpenset
			case m.Fonts[im.font].Heldout:
				split = dataset.SplitHeldout
			}
			if err := w.Append(im.img, dataset.Meta{Class: label, Source: im.font, Split: split}); err != nil {
				return fmt.Errorf("glyphs: %w", err)
			}
		}
	}
	return nil
}

// classSizes summarises the number of images of each class.
func classSizes(m *dataset.Manifest) Summary {
	per := make([]int, len(m.Classes))
	for i, c := range m.Classes {
		per[i] = c.Images
	}
	return Summarize(per)
}

// listFonts finds the font files of every package, hashes them (through
// the memo) and drops files identical to one already listed.
func listFonts(pkgs []LocalPackage, memo *hashMemo) ([]*fontFile, []string, error) {
	var files []*fontFile
	var dups []string
	seen := map[string]string{}
	for pi, p := range pkgs {
		rels, err := FindFonts(p.Dir)
		if err != nil {
			return nil, nil, err
		}
		for _, rel := range rels {
			path := filepath.Join(p.Dir, filepath.FromSlash(rel))
			name := displayName(p.Name, rel, 0, 1)
			sha, faces, err := memo.hash(path)
			if err != nil {
				return nil, nil, fmt.Errorf("glyphs: %s: %w", name, err)
			}
			if first, ok := seen[sha]; ok {
				dups = append(dups, name+" = "+first)
				continue
			}
			seen[sha] = name
			files = append(files, &fontFile{pkg: pi, rel: rel, path: path, sha: sha, faces: faces})
		}
	}
	if err := memo.save(); err != nil {
		return nil, nil, fmt.Errorf("glyphs: save font hashes: %w", err)
	}
	return files, dups, nil
}

// renderAll renders every face with o.Workers goroutines.
func renderAll(ctx context.Context, jobs []faceJob, chars []rune, o Options, log *slog.Logger) ([]*FaceRender, int, error) {
	cache := renderCache{dir: filepath.Join(o.CacheDir, "render")}
	ckey := charsKey(chars)
	out := make([]*FaceRender, len(jobs))
	var done, cached atomic.Int64
	total := int64(len(jobs)) * int64(len(chars))
	start := time.Now()
	progress := func(n int) {
		d := done.Add(int64(n))
		if o.Progress != nil {
			o.Progress(dataset.Progress{Stage: "render", Done: d, Total: total, Elapsed: time.Since(start)})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, o.Workers))
	for i := range jobs {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			r, hit, err := jobs[i].run(gctx, cache, chars, ckey, o.Size, progress)
			if err != nil {
				return err
			}
			if hit {
				cached.Add(1)
			}
			out[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if o.Progress != nil {
		o.Progress(dataset.Progress{Stage: "render", Done: total, Total: total, Elapsed: time.Since(start), Final: true})
	}
	log.Debug("rendered", "faces", len(jobs), "cached", cached.Load(), "elapsed", time.Since(start).Round(time.Millisecond))
	return out, int(cached.Load()), nil
}
