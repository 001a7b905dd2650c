package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/dashboard"
	"github.com/ffc-stream/ffc/internal/metricsrv"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// streamFlags are the flags of streaming training (ffc train without
// --offline).
type streamFlags struct {
	ends          endpoints
	bucket        string
	model         string
	group         string
	topicByID     string
	topicInstance string
	topicDead     string
	topicFresh    string
	signingKey    string
	metricsAddr   string
	maxSteps      int
	statsInterval time.Duration
}

func (s *streamFlags) addFlags(fs *pflag.FlagSet) {
	before := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { before[f.Name] = true })
	s.ends.addFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if !before[f.Name] {
			settings.Annotate(fs, f.Name, settings.Streaming)
		}
	})
	fs.StringVar(&s.bucket, "bucket", "ffc-data", "streaming: bucket for checkpoints (checkpoints/<model>/...)")
	fs.StringVar(&s.model, "model", "glyphs", "streaming: model name (NATS stream CENTERS_<model>, checkpoint prefix)")
	fs.StringVar(&s.group, "group", schemas.TrainerGroup, "streaming: Kafka consumer group of the trainers")
	fs.StringVar(&s.topicByID, "topic-byid", schemas.TopicByID, "streaming: topic of the id pairs")
	fs.StringVar(&s.topicInstance, "topic-instance", schemas.TopicInstance, "streaming: topic of the instances")
	fs.StringVar(&s.topicDead, "topic-deadletter", schemas.TopicDeadLetter, "streaming: topic for rejected messages")
	fs.StringVar(&s.topicFresh, "topic-fresh", schemas.TopicFresh, "streaming: topic of the fresh lane (pairs of newly announced IDs, drained first, and removals)")
	fs.StringVar(&s.signingKey, "centers-signing-key", "", "streaming: the trainer's ed25519 private key (PEM file; ffc centers keygen): every center update and step commit is signed with it (env FFC_CENTERS_SIGNING_KEY; empty: unsigned)")
	fs.StringVar(&s.metricsAddr, "metrics-addr", "", "streaming: serve Prometheus metrics on http://<addr>/metrics and the live dashboard on http://<addr>/ (empty: not served)")
	fs.IntVar(&s.maxSteps, "max-steps", 0, "streaming: stop after this many steps in this run (0: until Ctrl-C)")
	fs.DurationVar(&s.statsInterval, "stats-interval", 10*time.Second, "streaming: a progress line this often (0: never)")
	for _, name := range []string{"bucket", "model", "group", "topic-byid", "topic-instance", "topic-deadletter", "topic-fresh", "centers-signing-key", "metrics-addr", "max-steps", "stats-interval"} {
		settings.Annotate(fs, name, settings.Streaming)
	}
}

// runStreamTrain runs the streaming trainer (and its metrics server) as
// stages until ctx ends or --max-steps are done.
func runStreamTrain(ctx context.Context, a *app, f *trainFlags) error {
	s := &f.stream
	if s.ends.missing(true) {
		return errors.New("train: streaming needs --kafka-brokers, --nats-url and --s3-endpoint (or FFC_KAFKA_BROKERS, FFC_NATS_URL, FFC_S3_ENDPOINT); 'ffc demo' runs the whole pipeline on embedded servers, --offline trains from local files")
	}
	if _, err := f.set.Derive(settings.Streaming, 0); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := s.ends.checkTimeouts(); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := s.ends.resolve(); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	ktls, ksasl, err := s.ends.Kafka.sec.Client()
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	s.ends.logSecurity(a.log, true)
	cl, err := connect(s.ends, a.log)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer cl.Close()
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	var key ed25519.PrivateKey
	if s.signingKey != "" {
		if key, err = broadcast.LoadSigningKey(s.signingKey); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	} else {
		a.log.Warn("train: no --centers-signing-key: center updates and step commits are published unsigned; subscribers cannot tell them from forged ones")
	}
	reg := prometheus.NewRegistry()
	tr, err := trainers.New(trainers.Config{SigningKey: key,
		Brokers: s.ends.KafkaBrokers, KafkaTLS: ktls, KafkaSASL: ksasl, Group: s.group, TopicByID: s.topicByID, TopicInstance: s.topicInstance, TopicDeadLetter: s.topicDead, TopicFresh: s.topicFresh,
		KafkaTimeout: s.ends.KafkaTimeout, ConnectTimeout: s.ends.ConnectTimeout, Model: s.model, Settings: f.set, Backend: be, S3: cl.mc, Bucket: s.bucket, JS: cl.js,
		MaxSteps: s.maxSteps, Log: a.log, Registry: reg,
	})
	if err != nil {
		return err
	}
	g := stage.NewGroup(ctx, a.log)
	if err := startMetrics(ctx, g, s.metricsAddr, reg, a, tr.Health()); err != nil {
		return errors.Join(err, g.Close())
	}
	g.Go("trainer", tr)
	err = followStage(ctx, g, "trainer", s.statsInterval, func() {
		st := tr.Stats()
		fmt.Fprintf(a.stdout, "train: step %d (+%d this run), loss %.4f, %s/step, pool %d, %d centers published, %d dead letters, %d checkpoints\n",
			st.StartStep+st.Steps, st.Steps, st.LastLoss, st.LastStepTime.Round(time.Millisecond), st.PoolLen, st.Published, st.DeadLetters, st.Checkpoints)
	})
	if err == nil && ctx.Err() != nil && !isReady(tr) {
		// Interrupted before the trainer ever was ready: not a clean stop.
		if err = notReady("train: the trainer was", tr.Health()); err == nil {
			err = fmt.Errorf("train: interrupted before the trainer was ready: %w", context.Cause(ctx))
		}
	}
	st := tr.Stats()
	fmt.Fprintf(a.stdout, "train: stopped at step %d after %d steps this run; %d checkpoints written\n", st.StartStep+st.Steps, st.Steps, st.Checkpoints)
	return errors.Join(err, g.Close())
}

// isReady reports whether s has been ready.
func isReady(s stage.Stage) bool {
	select {
	case <-s.Ready():
		return true
	default:
		return false
	}
}

// startMetrics adds the metrics server stage when addr is set: /metrics
// serves reg, /readyz the health conditions, / the live dashboard.
func startMetrics(ctx context.Context, g *stage.Group, addr string, reg *prometheus.Registry, a *app, health ...*stage.Health) error {
	if addr == "" {
		return nil
	}
	_, err := serveMetrics(ctx, g, addr, reg, a, health...)
	return err
}

// serveMetrics adds the dashboard's sampler and the metrics server as
// stages of g, waits until both are ready and returns the dashboard's URL.
func serveMetrics(ctx context.Context, g *stage.Group, addr string, reg *prometheus.Registry, a *app, health ...*stage.Health) (string, error) {
	d, err := dashboard.New(dashboard.Options{Gatherer: reg, Log: a.log})
	if err != nil {
		return "", err
	}
	srv, err := metricsrv.New(metricsrv.Options{Addr: addr, Gatherer: reg, Health: health, Handler: d, Log: a.log})
	if err != nil {
		return "", err
	}
	g.Go("dashboard", d)
	g.Go("metrics", srv)
	if err := g.WaitReady(ctx, "dashboard", "metrics"); err != nil {
		return "", err
	}
	url := "http://" + srv.Addr() + "/"
	a.log.Info("serving the dashboard", "url", url)
	return url, nil
}

// followStage calls report every interval (0: never) until ctx ends, the
// stage named main returns or a stage fails; then it stops the group,
// stopFirst first, and returns its failure.
func followStage(ctx context.Context, g *stage.Group, main string, every time.Duration, report func(), stopFirst ...string) error {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return g.Stop(stopFirst...)
		case <-g.Done(main):
			return g.Stop(stopFirst...)
		case <-g.Failed():
			return g.Stop(stopFirst...)
		case <-tick:
			report()
		}
	}
}
