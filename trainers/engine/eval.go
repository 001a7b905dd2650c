package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/kernels"
)

// EvalOptions configures Evaluate.
type EvalOptions struct {
	// ImpostorPairs bounds the impostor pairs of the open set: when it
	// has at most this many, every pair is scored and TAR@FAR is exact;
	// beyond, this many are sampled (default 50,000,000; about 5.2M on
	// the CI glyph set, so all of them).
	ImpostorPairs int
	// MaxGenuinePerClass caps the genuine pairs of one class when the
	// impostors are sampled (0: all of them). With every pair scored,
	// every genuine pair is too.
	MaxGenuinePerClass int
	// MaxCenterImages bounds the train images averaged into a class
	// center for top-1, the first by index (0: every one). Evaluate then
	// embeds only those, the held-out and the open-set images: the
	// learning curve's cheaper points.
	MaxCenterImages int
	Seed            uint64
	// Progress, when set, receives the embedding's progress ("embed",
	// images done of all) after every batch, and a Final report.
	Progress func(dataset.Progress)
}

// DefaultImpostorPairs is EvalOptions.ImpostorPairs when none is given.
const DefaultImpostorPairs = 50_000_000

// TailMaxImages is the most images (every split) a class of the tail
// has: EvalResult's tail top-1 counts the queries of those classes.
const TailMaxImages = 5

// FARs are the false accept rates TAR is reported at.
var FARs = []float64{1e-2, 1e-3, 1e-4}

// ROCPoint is one point of the verification ROC.
type ROCPoint struct {
	FAR       float64 `json:"far"`
	TAR       float64 `json:"tar"`
	Threshold float64 `json:"threshold"`
}

// EvalResult is the evaluation summary.
type EvalResult struct {
	// Closed-set identification: held-out images (whole held-out fonts)
	// against class centers averaged from the enrolled train images.
	Top1         float64 `json:"top1"`
	Top1Queries  int     `json:"top1_queries"`
	Top1Classes  int     `json:"top1_classes"`
	Top1Unscored int     `json:"top1_unscored"` // queries of classes without enrolled images
	// CenterImages is EvalOptions.MaxCenterImages (0: every train image
	// is in the centers).
	CenterImages int `json:"center_images,omitempty"`
	// Tail: top-1 of the queries whose class has at most TailMaxImages
	// images in the data set (every split), the classes the id loader
	// samples as often as the others and the instance loader seldom.
	TailTop1      float64 `json:"tail_top1"`
	TailQueries   int     `json:"tail_queries"`
	TailClasses   int     `json:"tail_classes"`
	ChanceTop1    float64 `json:"chance_top1"`
	OpenClasses   int     `json:"openset_classes"`
	GenuinePairs  int     `json:"genuine_pairs"`
	ImpostorPairs int     `json:"impostor_pairs"`
	// AllPairs: every genuine and impostor pair of the open set was
	// scored (TAR@FAR exact), not a sample.
	AllPairs bool `json:"all_pairs"`
	// Baselines: the same measures on the same images and pairs without
	// training ("untrained": the network of the same seed; "raw_pixels":
	// the images themselves, L2-normalized); set by the commands.
	Baselines map[string]*EvalResult `json:"baselines,omitempty"`
	// Network is the checkpoint's network evaluated (probe or gallery),
	// set by the commands that load one.
	Network string `json:"network,omitempty"`
	// TAR at each of FARs, and the ROC for the plot.
	TAR []ROCPoint `json:"tar_at_far"`
	ROC []ROCPoint `json:"roc"`
}

// Evaluate embeds the data set with the probe in eval mode and measures
// closed-set top-1 and open-set verification.
func Evaluate(ctx context.Context, e *Engine, ds Images, opts EvalOptions) (EvalResult, error) {
	emb, err := embedAll(ctx, e, ds, evalImages(ds, opts.MaxCenterImages), opts.Progress)
	if err != nil {
		return EvalResult{}, err
	}
	return EvaluateEmbeddings(e.be, emb, e.opts.Dim, ds, opts)
}

// evalImages lists the images an evaluation reads: every one, or with
// maxPerClass > 0 the train images inCenter keeps and every held-out and
// open-set image.
func evalImages(ds Images, maxPerClass int) []int {
	keep := inCenter(ds, maxPerClass)
	var idx []int
	for i := 0; i < ds.Len(); i++ {
		if ds.Meta(i).Split != dataset.SplitTrain || keep(i) {
			idx = append(idx, i)
		}
	}
	return idx
}

// inCenter reports, for an image of ds in increasing index order, whether
// it is a train image averaged into its class center: the first
// maxPerClass of each class by index (0: every one). The one home of that
// rule, for what Evaluate embeds and what classCenters averages.
func inCenter(ds Images, maxPerClass int) func(i int) bool {
	used := map[int]int{}
	return func(i int) bool {
		m := ds.Meta(i)
		if m.Split != dataset.SplitTrain || (maxPerClass > 0 && used[m.Class] >= maxPerClass) {
			return false
		}
		used[m.Class]++
		return true
	}
}

// EvaluateEmbeddings measures closed-set top-1 and open-set verification
// of given embeddings of every image of ds (n×d rows, L2-normalized):
// those of a network, or raw pixels (Pixels) for the baseline. The
// matrix products run on be.
func EvaluateEmbeddings(be kernels.Backend, emb []float32, d int, ds Images, opts EvalOptions) (EvalResult, error) {
	var res EvalResult
	if opts.ImpostorPairs == 0 {
		opts.ImpostorPairs = DefaultImpostorPairs
	}
	v := embeddings{d: d, emb: emb}
	res.CenterImages = opts.MaxCenterImages
	if err := identification(&res, be, ds, v, opts.MaxCenterImages); err != nil {
		return res, fmt.Errorf("evaluate: %w", err)
	}
	if err := verification(&res, be, ds, v, opts); err != nil {
		return res, fmt.Errorf("evaluate: %w", err)
	}
	return res, nil
}

// embeddings are the n×d embeddings of a data set.
type embeddings struct {
	d   int
	emb []float32
}

func (v embeddings) of(i int) []float32 { return v.emb[i*v.d : (i+1)*v.d] }

// classCenters are the normalized means of each class's train
// embeddings (at most maxPerClass of them, the first by index; 0: all),
// a row per class: row maps a class to its row.
func classCenters(ds Images, v embeddings, maxPerClass int) (row map[int]int, centers []float32) {
	row = map[int]int{}
	keep := inCenter(ds, maxPerClass)
	for i := 0; i < ds.Len(); i++ {
		if !keep(i) {
			continue
		}
		m := ds.Meta(i)
		k, ok := row[m.Class]
		if !ok {
			k = len(row)
			row[m.Class] = k
			centers = append(centers, make([]float32, v.d)...)
		}
		c := centers[k*v.d : (k+1)*v.d]
		for j, x := range v.of(i) {
			c[j] += x
		}
	}
	for k := range len(row) {
		l2normalize(centers[k*v.d : (k+1)*v.d])
	}
	return row, centers
}

// identification is closed-set top-1: held-out images against the
// class centers (classCenters), over all of them and over the tail.
func identification(res *EvalResult, be kernels.Backend, ds Images, v embeddings, maxPerClass int) error {
	row, centers := classCenters(ds, v, maxPerClass)
	res.Top1Classes = len(row)
	if len(row) > 0 {
		res.ChanceTop1 = 1 / float64(len(row))
	}
	size := map[int]int{} // class → images, every split
	for i := 0; i < ds.Len(); i++ {
		size[ds.Meta(i).Class]++
	}
	var queries []float32
	var want []int
	var tail []bool
	for i := 0; i < ds.Len(); i++ {
		m := ds.Meta(i)
		if m.Split != dataset.SplitHeldout {
			continue
		}
		k, ok := row[m.Class]
		if !ok {
			res.Top1Unscored++
			continue
		}
		queries, want = append(queries, v.of(i)...), append(want, k)
		tail = append(tail, size[m.Class] <= TailMaxImages)
	}
	res.Top1Queries = len(want)
	if len(want) == 0 {
		return nil
	}
	got, err := Nearest(be, queries, centers, v.d)
	if err != nil {
		return err
	}
	correct, tailCorrect := 0, 0
	tailClasses := map[int]bool{}
	for q, k := range got {
		if k == want[q] {
			correct++
		}
		if tail[q] {
			res.TailQueries++
			tailClasses[want[q]] = true
			if k == want[q] {
				tailCorrect++
			}
		}
	}
	res.Top1 = float64(correct) / float64(len(want))
	res.TailClasses = len(tailClasses)
	if res.TailQueries > 0 {
		res.TailTop1 = float64(tailCorrect) / float64(res.TailQueries)
	}
	return nil
}

// verification is open-set TAR at FAR on classes never trained on: every
// genuine and every impostor pair, when there are at most
// opts.ImpostorPairs impostors; else the genuine pairs (at most
// MaxGenuinePerClass a class) and that many impostor pairs drawn at
// random across classes.
func verification(res *EvalResult, be kernels.Backend, ds Images, v embeddings, opts EvalOptions) error {
	var openImgs, class []int // sorted by class
	byClass := map[int][]int{}
	for i := 0; i < ds.Len(); i++ {
		if m := ds.Meta(i); m.Split == dataset.SplitOpenset {
			byClass[m.Class] = append(byClass[m.Class], i)
		}
	}
	res.OpenClasses = len(byClass)
	keys := make([]int, 0, len(byClass))
	for c := range byClass {
		keys = append(keys, c)
	}
	sort.Ints(keys)
	genuineAll := 0
	for _, c := range keys {
		n := len(byClass[c])
		genuineAll += n * (n - 1) / 2
		for _, i := range byClass[c] {
			openImgs, class = append(openImgs, i), append(class, c)
		}
	}
	n := len(openImgs)
	impostorAll := n*(n-1)/2 - genuineAll
	if len(byClass) < 2 || genuineAll == 0 {
		return nil // no verification without open-set pairs
	}
	var genuine, impostor []float32
	if impostorAll <= opts.ImpostorPairs {
		emb := make([]float32, 0, n*v.d)
		for _, i := range openImgs {
			emb = append(emb, v.of(i)...)
		}
		var err error
		if genuine, impostor, err = allPairScores(be, emb, v.d, class); err != nil {
			return err
		}
		res.AllPairs = true
	} else {
		genuine = sampledGenuine(v, keys, byClass, opts.MaxGenuinePerClass)
		impostor = sampledImpostors(ds, v, openImgs, opts)
	}
	res.GenuinePairs, res.ImpostorPairs = len(genuine), len(impostor)
	rocOf(res, genuine, impostor)
	return nil
}

// sampledGenuine scores the genuine pairs of each class, at most
// perClass of them (0: all).
func sampledGenuine(v embeddings, keys []int, byClass map[int][]int, perClass int) []float32 {
	var genuine []float32
	for _, c := range keys {
		imgs, n := byClass[c], 0
		for a := 0; a < len(imgs) && (perClass == 0 || n < perClass); a++ {
			for b := a + 1; b < len(imgs) && (perClass == 0 || n < perClass); b++ {
				genuine = append(genuine, float32(dot32(v.of(imgs[a]), v.of(imgs[b]))))
				n++
			}
		}
	}
	return genuine
}

// sampledImpostors draws opts.ImpostorPairs pairs of open-set images of
// different classes.
func sampledImpostors(ds Images, v embeddings, openImgs []int, opts EvalOptions) []float32 {
	rng := rand.New(rand.NewPCG(opts.Seed, 0xe7a1))
	impostor := make([]float32, 0, opts.ImpostorPairs)
	for len(impostor) < opts.ImpostorPairs {
		a, b := openImgs[rng.IntN(len(openImgs))], openImgs[rng.IntN(len(openImgs))]
		if ds.Meta(a).Class == ds.Meta(b).Class {
			continue
		}
		impostor = append(impostor, float32(dot32(v.of(a), v.of(b))))
	}
	return impostor
}

// rocOf fills TAR at each of FARs and the ROC from the pair scores: at
// FAR f the threshold is the (⌊f·I⌋+1)-th highest of the I impostor
// scores, so at most f·I impostors score above it, and TAR is the
// fraction of genuine scores strictly above it.
func rocOf(res *EvalResult, genuine, impostor []float32) {
	slices.Sort(impostor)
	slices.Sort(genuine)
	at := func(far float64) ROCPoint {
		k := min(int(far*float64(len(impostor))), len(impostor)-1)
		thr := impostor[len(impostor)-1-k]
		above := len(genuine) - sort.Search(len(genuine), func(i int) bool { return genuine[i] > thr })
		return ROCPoint{FAR: far, TAR: float64(above) / float64(len(genuine)), Threshold: float64(thr)}
	}
	for _, far := range FARs {
		res.TAR = append(res.TAR, at(far))
	}
	for f := 1e-4; f <= 1.0001; f *= math.Pow(10, 0.125) {
		res.ROC = append(res.ROC, at(math.Min(f, 1)))
	}
}

// embedAll returns the probe's embeddings of the images idx of ds in an
// n×D matrix over every image, row i for image i (rows not in idx zero).
func embedAll(ctx context.Context, e *Engine, ds Images, idx []int, progress func(dataset.Progress)) ([]float32, error) {
	if ds.Len() == 0 {
		return nil, errors.New("evaluate: empty data set")
	}
	some, err := embedImages(ctx, e, ds, idx, progress)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	if len(idx) == ds.Len() {
		return some, nil // idx is every image, in order
	}
	d := e.opts.Dim
	out := make([]float32, ds.Len()*d)
	for k, i := range idx {
		copy(out[i*d:(i+1)*d], some[k*d:(k+1)*d])
	}
	return out, nil
}

// EmbedImages returns the probe's embeddings (eval mode) of the images
// idx of ds, len(idx)×D, row k for idx[k].
func EmbedImages(ctx context.Context, e *Engine, ds Images, idx []int) ([]float32, error) {
	return embedImages(ctx, e, ds, idx, nil)
}

func embedImages(ctx context.Context, e *Engine, ds Images, idx []int, progress func(dataset.Progress)) ([]float32, error) {
	start := time.Now()
	report := func(done int) {
		if progress != nil {
			progress(dataset.Progress{Stage: "embed", Done: int64(done), Total: int64(len(idx)), Elapsed: time.Since(start), Final: done == len(idx)})
		}
	}
	d := e.opts.Dim
	out := make([]float32, len(idx)*d)
	buf := make([]byte, ds.ImageSize()*ds.ImageSize())
	batch := e.MaxRows()
	x := make([]float32, 0, batch*e.InLen())
	for i0 := 0; i0 < len(idx); i0 += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x = x[:0]
		m := min(batch, len(idx)-i0)
		var err error
		for _, i := range idx[i0 : i0+m] {
			if x, err = appendImage(x, ds, i, buf); err != nil {
				return nil, err
			}
		}
		if err := e.Embed(x, m, out[i0*d:(i0+m)*d]); err != nil {
			return nil, err
		}
		report(i0 + m)
	}
	return out, nil
}

func dot32(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		s += float64(v) * float64(b[i])
	}
	return s
}
