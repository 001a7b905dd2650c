package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// EvalOptions configures Evaluate.
type EvalOptions struct {
	// ImpostorPairs sampled from the open-set classes (default 200000, so
	// FAR 1e-4 rests on 20 impostors above the threshold).
	ImpostorPairs int
	// MaxGenuinePerClass caps the genuine pairs of one class (default 100).
	MaxGenuinePerClass int
	Seed               uint64
	// Progress, when set, receives the embedding's progress ("embed",
	// images done of all) after every batch, and a Final report.
	Progress func(dataset.Progress)
}

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
	Top1          float64 `json:"top1"`
	Top1Queries   int     `json:"top1_queries"`
	Top1Classes   int     `json:"top1_classes"`
	Top1Unscored  int     `json:"top1_unscored"` // queries of classes without enrolled images
	ChanceTop1    float64 `json:"chance_top1"`
	OpenClasses   int     `json:"openset_classes"`
	GenuinePairs  int     `json:"genuine_pairs"`
	ImpostorPairs int     `json:"impostor_pairs"`
	// TAR at each of FARs, and the ROC for the plot.
	TAR []ROCPoint `json:"tar_at_far"`
	ROC []ROCPoint `json:"roc"`
}

// Evaluate embeds the data set with the probe in eval mode and measures
// closed-set top-1 and open-set verification.
func Evaluate(ctx context.Context, e *Engine, ds Images, opts EvalOptions) (EvalResult, error) {
	var res EvalResult
	if opts.ImpostorPairs == 0 {
		opts.ImpostorPairs = 200000
	}
	if opts.MaxGenuinePerClass == 0 {
		opts.MaxGenuinePerClass = 100
	}
	emb, err := embedAll(ctx, e, ds, opts.Progress)
	if err != nil {
		return res, err
	}
	v := embeddings{d: e.opts.Dim, emb: emb}
	identification(&res, ds, v)
	verification(&res, ds, v, opts)
	return res, nil
}

// embeddings are the n×d embeddings of a data set.
type embeddings struct {
	d   int
	emb []float32
}

func (v embeddings) of(i int) []float32 { return v.emb[i*v.d : (i+1)*v.d] }

// identification is closed-set top-1: held-out images against the
// normalised mean of each class's train embeddings.
func identification(res *EvalResult, ds Images, v embeddings) {
	centers := map[int][]float64{}
	for i := 0; i < ds.Len(); i++ {
		m := ds.Meta(i)
		if m.Split != dataset.SplitTrain {
			continue
		}
		c := centers[m.Class]
		if c == nil {
			c = make([]float64, v.d)
			centers[m.Class] = c
		}
		for k, x := range v.of(i) {
			c[k] += float64(x)
		}
	}
	classes := make([]int, 0, len(centers))
	for c, x := range centers {
		normalize(x)
		classes = append(classes, c)
	}
	sort.Ints(classes)
	res.Top1Classes = len(classes)
	if len(classes) > 0 {
		res.ChanceTop1 = 1 / float64(len(classes))
	}
	correct := 0
	for i := 0; i < ds.Len(); i++ {
		m := ds.Meta(i)
		if m.Split != dataset.SplitHeldout {
			continue
		}
		if centers[m.Class] == nil {
			res.Top1Unscored++
			continue
		}
		best, bestC := math.Inf(-1), -1
		for _, c := range classes {
			if s := dot(v.of(i), centers[c]); s > best {
				best, bestC = s, c
			}
		}
		res.Top1Queries++
		if bestC == m.Class {
			correct++
		}
	}
	if res.Top1Queries > 0 {
		res.Top1 = float64(correct) / float64(res.Top1Queries)
	}
}

// verification is open-set TAR at FAR on classes never trained on:
// genuine pairs within each class (at most MaxGenuinePerClass), impostor
// pairs drawn at random across classes.
func verification(res *EvalResult, ds Images, v embeddings, opts EvalOptions) {
	open := map[int][]int{}
	for i := 0; i < ds.Len(); i++ {
		if m := ds.Meta(i); m.Split == dataset.SplitOpenset {
			open[m.Class] = append(open[m.Class], i)
		}
	}
	res.OpenClasses = len(open)
	var genuine []float64
	var openImgs []int
	openKeys := make([]int, 0, len(open))
	for c := range open {
		openKeys = append(openKeys, c)
	}
	sort.Ints(openKeys)
	for _, c := range openKeys {
		imgs := open[c]
		openImgs = append(openImgs, imgs...)
		n := 0
		for a := 0; a < len(imgs) && n < opts.MaxGenuinePerClass; a++ {
			for b := a + 1; b < len(imgs) && n < opts.MaxGenuinePerClass; b++ {
				genuine = append(genuine, dot32(v.of(imgs[a]), v.of(imgs[b])))
				n++
			}
		}
	}
	res.GenuinePairs = len(genuine)
	if len(open) < 2 || len(genuine) == 0 {
		return // no verification without open-set pairs
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0xe7a1))
	impostor := make([]float64, 0, opts.ImpostorPairs)
	for len(impostor) < opts.ImpostorPairs {
		a, b := openImgs[rng.IntN(len(openImgs))], openImgs[rng.IntN(len(openImgs))]
		if ds.Meta(a).Class == ds.Meta(b).Class {
			continue
		}
		impostor = append(impostor, dot32(v.of(a), v.of(b)))
	}
	res.ImpostorPairs = len(impostor)
	rocOf(res, genuine, impostor)
}

// rocOf fills TAR at each of FARs and the ROC from the pair scores.
func rocOf(res *EvalResult, genuine, impostor []float64) {
	sort.Sort(sort.Reverse(sort.Float64Slice(impostor)))
	sort.Float64s(genuine)
	at := func(far float64) ROCPoint {
		k := int(far * float64(len(impostor)))
		thr := impostor[min(k, len(impostor)-1)]
		// Genuine scores strictly above the threshold are accepted.
		above := len(genuine) - sort.Search(len(genuine), func(i int) bool { return genuine[i] > thr })
		return ROCPoint{FAR: far, TAR: float64(above) / float64(len(genuine)), Threshold: thr}
	}
	for _, far := range FARs {
		res.TAR = append(res.TAR, at(far))
	}
	for f := 1e-4; f <= 1.0001; f *= math.Pow(10, 0.125) {
		res.ROC = append(res.ROC, at(math.Min(f, 1)))
	}
}

// embedAll returns the probe's embeddings of every image, n×D.
func embedAll(ctx context.Context, e *Engine, ds Images, progress func(dataset.Progress)) ([]float32, error) {
	if ds.Len() == 0 {
		return nil, errors.New("evaluate: empty data set")
	}
	all := make([]int, ds.Len())
	for i := range all {
		all[i] = i
	}
	out, err := embedImages(ctx, e, ds, all, progress)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
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

func normalize(v []float64) {
	var ss float64
	for _, x := range v {
		ss += x * x
	}
	if ss == 0 {
		return
	}
	inv := 1 / math.Sqrt(ss)
	for i := range v {
		v[i] *= inv
	}
}

func dot(a []float32, b []float64) float64 {
	var s float64
	for i, v := range a {
		s += float64(v) * b[i]
	}
	return s
}

func dot32(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		s += float64(v) * float64(b[i])
	}
	return s
}
