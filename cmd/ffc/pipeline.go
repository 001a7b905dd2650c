package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/glyphs"
	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// demoData returns the demo's data set: the CI glyph set, built into
// dataDir (cached), or synthetic identities where the font packages cannot
// be fetched.
func demoData(ctx context.Context, out io.Writer, log *slog.Logger, dataDir string, synthOnly bool, synthIDs int) (*dataset.Reader, string, error) {
	if !synthOnly {
		dir := filepath.Join(dataDir, "glyphs-ci")
		pkgs, err := glyphs.PackageList(glyphs.PackagesCI)
		if err == nil {
			o := glyphs.DefaultOptions()
			o.Packages, o.OutDir, o.Logger = pkgs, dir, log
			if _, err = glyphs.Build(ctx, o); err == nil {
				r, err := dataset.Open(dir)
				if err == nil {
					return r, "CJK glyph identities from 12 Debian font packages (GB2312 level 1)", nil
				}
			}
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

// pipelineOptions configure the pipeline part of the demo.
type pipelineOptions struct {
	duration  time.Duration
	follow    bool
	newIDs    int
	newAt     float64
	batch     int
	dim       int
	pool      int
	backbone  string
	synthOnly bool
	dataDir   string
	threads   int
	synthIDs  int
	ckptEvery int
	maxLead   int
	dev       deviceFlags
}

// runPipeline runs producer → Kafka → trainer → NATS → replica on the
// given endpoints and prints what happens.
func runPipeline(ctx context.Context, a *app, r *resolved, o pipelineOptions) error {
	out := a.stdout
	ds, what, err := demoData(ctx, out, a.log, o.dataDir, o.synthOnly, o.synthIDs)
	if err != nil {
		return fmt.Errorf("demo: data: %w", err)
	}
	defer ds.Close()
	classes := ds.Classes()
	ids := make([]uint64, len(classes))
	for i, c := range classes {
		if ids[i], err = c.StorageID(); err != nil {
			return err
		}
	}
	// Classes held back from the start and streamed in part-way: train
	// classes with held-out images, so they can be identified afterwards.
	heldOutImgs := map[int][]int{}
	for _, i := range ds.Split(dataset.SplitHeldout) {
		heldOutImgs[ds.Meta(i).Class] = append(heldOutImgs[ds.Meta(i).Class], i)
	}
	var candidates []int
	for c := range heldOutImgs {
		candidates = append(candidates, c)
	}
	sort.Ints(candidates)
	back := map[int]bool{}
	for i := 0; i < len(candidates) && len(back) < o.newIDs; i += max(1, len(candidates)/max(1, o.newIDs)) {
		back[candidates[i]] = true
	}
	fmt.Fprintf(out, "demo: data: %s — %d classes, %d images; %d classes held back to stream in later\n", what, len(classes), ds.Len(), len(back))

	// Every run has its own bucket, topics, group and model, so runs against
	// long-lived servers do not see each other's data, offsets or
	// checkpoints.
	run := time.Now().UTC().Format("20060102-150405")
	demoBucket, model := "ffc-demo-"+run, "demo-"+run
	topics := struct{ byID, inst, dead, group string }{"demo-" + run + ".byid", "demo-" + run + ".instance", "demo-" + run + ".deadletter", "demo-trainer-" + run}
	s3o := objstore.S3Options{Endpoint: r.S3Endpoint, AccessKey: r.S3AccessKey, SecretKey: r.S3SecretKey, Secure: r.S3Secure, Bucket: demoBucket, Logger: a.log}
	// Only train-split images: held-out fonts and open-set classes are
	// never trained on.
	s3o.Select = func(m dataset.Meta) bool { return m.Split == dataset.SplitTrain && !back[m.Class] }
	up, err := objstore.Upload(ctx, ds.Dir(), s3o)
	if err != nil {
		return fmt.Errorf("demo: upload: %w", err)
	}
	fmt.Fprintf(out, "demo: run %s: model %s, topics %s and %s\n", run, model, topics.byID, topics.inst)
	fmt.Fprintf(out, "demo: uploaded %d train-split images to s3://%s/ids/ in %s (%.0f objects/s); held-out fonts and open-set classes stay local for evaluation\n", up.Uploaded, demoBucket, up.Elapsed.Round(time.Millisecond), up.ObjectsPerSec)

	cl, err := connect(r.endpoints)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer cl.nc.Close()
	be, err := newBackend(a.log, o.threads, o.dev)
	if err != nil {
		return err
	}
	defer be.Close()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	// Producer.
	if o.ckptEvery <= 0 {
		o.ckptEvery = 4
	}
	if o.maxLead <= 0 {
		// Flow control waits for the trainer's commits, which follow its
		// checkpoints: the lead covers two checkpoints' worth of steps. A
		// small lead keeps new IDs fresh (they queue behind the lead).
		o.maxLead = 2 * o.batch * o.ckptEvery
	}
	prod, err := producers.New(producers.Config{Brokers: r.KafkaBrokers, S3: cl.mc, Bucket: demoBucket, MaxLead: o.maxLead,
		TopicByID: topics.byID, TopicInstance: topics.inst, TopicDeadLetter: topics.dead, TrainerGroup: topics.group, PollInterval: 200 * time.Millisecond, Log: a.log.With("component", "producer"), Seed: 1})
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); errs <- wrapErr("producer", prod.Run(runCtx)) }()
	select {
	case <-prod.Ready():
	case err := <-errs:
		return err
	}
	ps := prod.Stats()
	fmt.Fprintf(out, "demo: producer: %d IDs, %d images in the catalog; emitting samples.byid (id pairs) and samples.instance\n", ps.IDs, ps.Images)

	// Replica of the centers (what a subscriber sees).
	rep, err := broadcast.NewReplica(cl.js, broadcast.ReplicaOptions{Model: model, Codec: broadcast.NewProtoCodec(o.dim), Dim: o.dim, Log: a.log})
	if err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); errs <- wrapErr("replica", rep.Run(runCtx)) }()

	// Trainer.
	tr, err := trainers.New(runCtx, trainers.Config{
		Brokers: r.KafkaBrokers, Model: model, Backend: be, S3: cl.mc, Bucket: demoBucket, JS: cl.js,
		TopicByID: topics.byID, TopicInstance: topics.inst, TopicDeadLetter: topics.dead, Group: topics.group,
		Engine: engine.Options{Backbone: o.backbone, InLen: 32 * 32, Hidden: []int{512}, Dim: o.dim, Batch: o.batch, Pool: o.pool,
			Margin:   kernels.Margin{Kind: kernels.CosFace, S: 32, M: 0.4},
			SGD:      nn.SGD{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true},
			Schedule: nn.Schedule{Kind: "step", BaseLR: 0.1, TotalSteps: 1 << 30}, Seed: 1, Log: a.log},
		CheckpointEvery: o.ckptEvery, CheckpointInterval: time.Minute, Log: a.log.With("component", "trainer"), Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		return err
	}
	defer tr.Close()
	trainDone := make(chan error, 1)
	go func() { trainDone <- tr.Run(runCtx) }()
	fmt.Fprintf(out, "demo: trainer: FFC, %s backbone, D=%d, batch %d id pairs + %d instances, pool %d slots; centers on NATS centers.%s.<id>\n", o.backbone, o.dim, o.batch, o.batch, o.pool, model)

	// Freshness: when each new ID was announced and when its first center
	// reached the replica.
	type fresh struct{ announced, center time.Time }
	freshness := map[uint64]*fresh{}
	var fmu sync.Mutex
	start := time.Now()
	newAt := time.Duration(float64(o.duration) * o.newAt)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	streamed := false
	var trainErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errs:
			if err != nil {
				stop()
				return err
			}
		case trainErr = <-trainDone:
			break loop
		case <-poll.C:
			fmu.Lock()
			for id, f := range freshness {
				if f.center.IsZero() {
					if _, ok := rep.Get(id); ok {
						f.center = time.Now()
						fmt.Fprintf(out, "demo: new ID %d: center on NATS %s after its announcement\n", id, f.center.Sub(f.announced).Round(time.Millisecond))
					}
				}
			}
			fmu.Unlock()
		case <-tick.C:
			st, rs := tr.Stats(), rep.Stats()
			ps := prod.Stats()
			fmt.Fprintf(out, "demo: %3.0fs  step %d  loss %.2f  %s/step  pool %d/%d  centers %d (replica)  produced %d pairs, %d instances (lag %d/%d)\n",
				time.Since(start).Seconds(), st.Steps, st.LastLoss, st.LastStepTime.Round(time.Millisecond), st.PoolLen, o.pool, rs.IDs,
				ps.ByID.Produced, ps.Instance.Produced, ps.ByID.Lag, ps.Instance.Lag)
		}
		if !streamed && time.Since(start) >= newAt {
			streamed = true
			s3n := s3o
			s3n.Select = func(m dataset.Meta) bool { return m.Split == dataset.SplitTrain && back[m.Class] }
			if _, err := objstore.Upload(ctx, ds.Dir(), s3n); err != nil {
				stop()
				return fmt.Errorf("demo: upload new IDs: %w", err)
			}
			for c := range back {
				if err := producers.Announce(ctx, cl.mc, demoBucket, ids[c]); err != nil {
					stop()
					return fmt.Errorf("demo: announce: %w", err)
				}
				fmu.Lock()
				freshness[ids[c]] = &fresh{announced: time.Now()}
				fmu.Unlock()
			}
			fmt.Fprintf(out, "demo: streamed %d new IDs in (uploaded to S3 and announced)\n", len(back))
		}
		if !o.follow && time.Since(start) >= o.duration {
			break
		}
	}
	stop()
	if trainErr == nil {
		trainErr = <-trainDone
	}
	wg.Wait()
	if trainErr != nil && !errors.Is(trainErr, context.Canceled) {
		return fmt.Errorf("demo: trainer: %w", trainErr)
	}
	elapsed := time.Since(start)

	// Summary.
	st, rs, ps := tr.Stats(), rep.Stats(), prod.Stats()
	fmt.Fprintf(out, "\ndemo summary (%s of training)\n", elapsed.Round(time.Second))
	fmt.Fprintf(out, "  steps               %d (%d skipped), %d checkpoints\n", st.Steps, st.Skipped, st.Checkpoints)
	fmt.Fprintf(out, "  samples/s           %.0f (id pairs + instances consumed by the trainer)\n", float64(st.Pairs+st.Instances)/elapsed.Seconds())
	fmt.Fprintf(out, "  produced            %d id pairs, %d instances; dead letters %v\n", ps.ByID.Produced, ps.Instance.Produced, ps.DeadLetters)
	fmt.Fprintf(out, "  pool occupancy      %d/%d\n", st.PoolLen, o.pool)
	fmt.Fprintf(out, "  centers published   %d updates; the replica holds %d IDs (last step %d); the catalog has %d IDs\n", st.Published, rs.IDs, rs.LastStep, ps.IDs)
	top1, n, newTop1, newN, err := identify(tr.Engine(), ds, rep, ids, back, o.dim)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  top-1 held-out      %.1f%% of %d held-out images (never trained on; whole fonts for glyphs) against the replica's centers; chance %.2f%%\n", 100*top1, n, 100/math.Max(1, float64(rs.IDs)))
	fmt.Fprintf(out, "  new IDs identified  %.1f%% of %d held-out images of the %d streamed-in IDs\n", 100*newTop1, newN, len(back))
	var lat []time.Duration
	for _, f := range freshness {
		if !f.center.IsZero() {
			lat = append(lat, f.center.Sub(f.announced))
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		fmt.Fprintf(out, "  freshness           new ID announced → center on NATS: p50 %s, max %s (%d of %d new IDs got a center)\n",
			lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat), len(freshness))
	} else if len(freshness) > 0 {
		fmt.Fprintf(out, "  freshness           none of the %d new IDs got a center yet\n", len(freshness))
	}
	return nil
}

func wrapErr(what string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("demo: %s: %w", what, err)
}

// identify embeds the held-out images of classes with a center and finds
// their nearest center in the replica.
func identify(e *engine.Engine, ds *dataset.Reader, rep *broadcast.Replica, ids []uint64, back map[int]bool, dim int) (top1 float64, n int, newTop1 float64, newN int, err error) {
	var imgs []int
	for _, i := range ds.Split(dataset.SplitHeldout) {
		if _, ok := rep.Get(ids[ds.Meta(i).Class]); ok {
			imgs = append(imgs, i)
		}
	}
	buf := make([]byte, ds.ImageSize()*ds.ImageSize())
	x := make([]float32, 0, e.MaxRows()*e.InLen())
	emb := make([]float32, e.MaxRows()*dim)
	correct, newCorrect := 0, 0
	for i0 := 0; i0 < len(imgs); i0 += e.MaxRows() {
		batch := imgs[i0:min(len(imgs), i0+e.MaxRows())]
		x = x[:0]
		for _, i := range batch {
			if _, err := ds.ReadImage(i, buf); err != nil {
				return 0, 0, 0, 0, err
			}
			for _, b := range buf {
				x = append(x, (float32(b)/255-0.5)/0.5)
			}
		}
		if err := e.Embed(x, len(batch), emb); err != nil {
			return 0, 0, 0, 0, err
		}
		for k, i := range batch {
			c := ds.Meta(i).Class
			m, err := rep.Search(emb[k*dim:(k+1)*dim], 1)
			if err != nil {
				return 0, 0, 0, 0, err
			}
			hit := len(m) == 1 && m[0].ID == ids[c]
			if hit {
				correct++
			}
			if back[c] {
				newN++
				if hit {
					newCorrect++
				}
			}
		}
	}
	if len(imgs) > 0 {
		top1 = float64(correct) / float64(len(imgs))
	}
	if newN > 0 {
		newTop1 = float64(newCorrect) / float64(newN)
	}
	return top1, len(imgs), newTop1, newN, nil
}
