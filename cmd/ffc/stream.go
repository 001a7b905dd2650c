package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// streamFlags are the flags of streaming training (ffc train without
// --offline).
type streamFlags struct {
	ends               endpoints
	bucket             string
	model              string
	group              string
	topicByID          string
	topicInstance      string
	topicDead          string
	checkpointInterval time.Duration
	metricsAddr        string
}

func (s *streamFlags) addFlags(fs *pflag.FlagSet) {
	s.ends.addFlags(fs)
	fs.StringVar(&s.bucket, "bucket", "ffc-data", "streaming: bucket for checkpoints (checkpoints/<model>/...)")
	fs.StringVar(&s.model, "model", "glyphs", "streaming: model name (NATS stream CENTERS_<model>, checkpoint prefix)")
	fs.StringVar(&s.group, "group", trainers.DefaultGroup, "streaming: Kafka consumer group of the trainers")
	fs.StringVar(&s.topicByID, "topic-byid", trainers.DefaultTopicByID, "streaming: topic of the id pairs")
	fs.StringVar(&s.topicInstance, "topic-instance", trainers.DefaultTopicInstance, "streaming: topic of the instances")
	fs.StringVar(&s.topicDead, "topic-deadletter", trainers.DefaultTopicDeadLetter, "streaming: topic for rejected messages")
	fs.DurationVar(&s.checkpointInterval, "checkpoint-interval", 30*time.Second, "streaming: checkpoint at least this often (and every --checkpoint-every steps)")
	fs.StringVar(&s.metricsAddr, "metrics-addr", "", "streaming: serve Prometheus metrics on http://<addr>/metrics (empty: not served)")
}

// streamClients are the connections of a streaming component.
type streamClients struct {
	mc *minio.Client
	nc *nats.Conn
	js jetstream.JetStream
}

func connect(ends endpoints) (*streamClients, error) {
	mc, err := minio.New(ends.S3Endpoint, &minio.Options{Creds: credentials.NewStaticV4(ends.S3AccessKey, ends.S3SecretKey, ""), Secure: ends.S3Secure})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", ends.S3Endpoint, err)
	}
	nc, err := nats.Connect(ends.NATSURL, nats.Name("ffc"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", ends.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &streamClients{mc: mc, nc: nc, js: js}, nil
}

// serveMetrics serves reg on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return ln.Addr().String(), nil
}

// runStreamTrain runs the streaming trainer against the given services.
func runStreamTrain(ctx context.Context, a *app, f *trainFlags) error {
	s := &f.stream
	if len(s.ends.KafkaBrokers) == 0 || s.ends.NATSURL == "" || s.ends.S3Endpoint == "" {
		return errors.New("train: streaming needs --kafka-brokers, --nats-url and --s3-endpoint (or FFC_KAFKA_BROKERS, FFC_NATS_URL, FFC_S3_ENDPOINT); 'ffc demo' runs the whole pipeline on embedded servers, --offline trains from local files")
	}
	cl, err := connect(s.ends)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	defer cl.nc.Close()
	if ok, err := cl.mc.BucketExists(ctx, s.bucket); err != nil {
		return fmt.Errorf("train: bucket %s: %w", s.bucket, err)
	} else if !ok {
		if err := cl.mc.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{}); err != nil {
			return fmt.Errorf("train: create bucket %s: %w", s.bucket, err)
		}
	}
	margin, err := marginOf(f.margin, f.scale, f.m)
	if err != nil {
		return err
	}
	if f.pool == 0 {
		f.pool = 3 * f.batch
	}
	be, err := newBackend(a.log, f.threads, f.dev)
	if err != nil {
		return err
	}
	defer be.Close()
	reg := prometheus.NewRegistry()
	if s.metricsAddr != "" {
		addr, err := serveMetrics(ctx, s.metricsAddr, reg)
		if err != nil {
			return err
		}
		a.log.Info("metrics", "url", "http://"+addr+"/metrics")
	}
	tr, err := trainers.New(ctx, trainers.Config{
		Brokers: s.ends.KafkaBrokers, Group: s.group, TopicByID: s.topicByID, TopicInstance: s.topicInstance, TopicDeadLetter: s.topicDead,
		Model: s.model, Backend: be, S3: cl.mc, Bucket: s.bucket, JS: cl.js,
		Engine: engine.Options{Backbone: f.backbone, InLen: 32 * 32, Dim: f.dim, Batch: f.batch, Pool: f.pool, TopK: f.topK,
			Margin: margin, EMA: float32(f.ema), Seed: f.seed, Log: a.log,
			SGD:      nn.SGD{Momentum: float32(f.momentum), WeightDecay: float32(f.wd), Nesterov: true},
			Schedule: nn.Schedule{Kind: "step", BaseLR: f.lr, WarmupSteps: f.warmup, TotalSteps: 1 << 30}},
		CheckpointEvery: max(f.ckptEvery, 0), CheckpointInterval: s.checkpointInterval,
		MaxSteps: f.maxSteps, Log: a.log, Registry: reg,
	})
	if err != nil {
		return err
	}
	defer tr.Close()
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Duration(max(f.logEvery, 1)) * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				st := tr.Stats()
				fmt.Fprintf(a.stdout, "train: step %d (+%d this run), loss %.4f, %s/step, pool %d/%d, %d centers published, %d dead letters, %d checkpoints\n",
					st.StartStep+st.Steps, st.Steps, st.LastLoss, st.LastStepTime.Round(time.Millisecond), st.PoolLen, f.pool, st.Published, st.DeadLetters, st.Checkpoints)
			}
		}
	}()
	err = tr.Run(ctx)
	close(done)
	st := tr.Stats()
	fmt.Fprintf(a.stdout, "train: stopped at step %d after %d steps this run; %d checkpoints written\n", st.StartStep+st.Steps, st.Steps, st.Checkpoints)
	return err
}
