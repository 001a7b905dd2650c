package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/trainers/settings"
)

type produceFlags struct {
	ends           endpoints
	allowEmbedded  bool
	bucket         string
	topicByID      string
	topicInstance  string
	topicDead      string
	topicFresh     string
	freshMaxLead   int
	freshPairs     int
	notifyTopic    string
	notifyARN      string
	trainerGroup   string
	set            settings.Settings // the trainers' batch and cadence, and --max-lead
	shard          string
	partitions     int
	pollInterval   time.Duration
	rescanInterval time.Duration
	concurrency    int
	source         string
	metricsAddr    string
	statsInterval  time.Duration
}

const produceLong = `produce publishes the images of a bucket to Kafka, for trainers to consume:

  samples.byid      id stream: uniform over IDs (a fresh shuffle every pass),
                    each message two distinct images of one ID; key = the ID
  samples.instance  instance stream: shuffled epochs over every image; key =
                    the image's object key
  samples.deadletter  objects that fail validation (corrupt PNG, wrong size,
                    too large): value = the object key, headers reason and key

It lists <bucket>/ids/<id>/<name>.png once at start, creates the three topics
when missing, and keeps each stream at most --max-lead messages ahead of what
--trainer-group has committed (flow control), so an endless id stream never
floods Kafka. The default lead is what the trainers consume between two
checkpoints, twice: 2 · --batch · --checkpoint-every, the trainers' settings
(the same keys in a shared configuration file).

New IDs. Whoever uploads a new ID writes its images first, then an empty
marker announce/<unix nanos, 20 digits>-<id>. produce polls announce/ every
--poll-interval and puts the ID into the id stream ahead of the uniform order,
within seconds. A full listing every --rescan-interval catches IDs uploaded
without a marker.

Several producers split one bucket with --shard i/n: each emits only the IDs
whose hash modulo n is i, on both streams.

Outages. At start produce waits up to --connect-timeout for S3 (the bucket)
and for Kafka (the topics), retrying with backoff; then it fails with exit
status 1 and the service's error. Once producing, an outage is waited out:
while Kafka refuses writes both streams are held (nothing more is read from
S3) and the refused messages are retried until Kafka takes them, none
dropped; transient S3 errors are retried with backoff. With --metrics-addr,
/readyz reports the producer's health (503 while a service fails). SIGTERM
or SIGINT stops a running producer with exit status 0; interrupted while it
still waits for a service, it exits with 1 and names the service.

Services. produce talks to real Kafka and S3 (MinIO): --kafka-brokers and
--s3-endpoint are required. With --allow-embedded, missing ones are started
in-process instead; they are empty, live only as long as this command, and
only clients given their printed addresses can reach them — for trying the
command, not for training. --nats-url is not used.`

func newProduceCmd(a *app) *cobra.Command {
	f := &produceFlags{set: settings.Defaults(settings.Produce)}
	cmd := &cobra.Command{
		Use:   "produce",
		Short: "Publish a bucket's images to Kafka: the id stream and the instance stream, with flow control",
		Long:  produceLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runProduce(cmd.Context(), a, f) },
	}
	fs := cmd.Flags()
	f.ends.addFlags(fs)
	settings.AddFlags(fs, settings.Produce, &f.set)
	fs.BoolVar(&f.allowEmbedded, "allow-embedded", false, "start an in-process Kafka broker / S3 server for a missing --kafka-brokers / --s3-endpoint (empty, gone at exit: for trying the command only)")
	fs.StringVar(&f.bucket, "bucket", "ffc-data", "bucket holding ids/<id>/<name>.png and announce/ (must exist, except with an embedded S3)")
	fs.StringVar(&f.topicByID, "topic-byid", schemas.TopicByID, "topic of the id stream (id pairs, key = id)")
	fs.StringVar(&f.topicInstance, "topic-instance", schemas.TopicInstance, "topic of the instance stream (one image per message, key = object key)")
	fs.StringVar(&f.topicDead, "topic-deadletter", schemas.TopicDeadLetter, "topic of the objects that fail validation")
	fs.StringVar(&f.topicFresh, "topic-fresh", schemas.TopicFresh, "topic of the fresh lane: pairs of newly announced IDs and removals, key = id")
	fs.IntVar(&f.freshMaxLead, "fresh-max-lead", producers.DefaultFreshMaxLead, "most fresh-lane messages written and not yet committed by --trainer-group (0: the default; negative: no bound)")
	fs.IntVar(&f.freshPairs, "fresh-pairs", producers.DefaultFreshPairs, "id pairs of a newly announced ID written to the fresh lane")
	fs.StringVar(&f.notifyTopic, "s3-notify-topic", "", "Kafka topic of the object store's bucket notifications (S3 event records, e.g. MinIO's Kafka target): new IDs and removals are seen as soon as they are written; polling announce/ goes on as the fallback (env FFC_S3_NOTIFY_TOPIC; empty: polling only)")
	fs.StringVar(&f.notifyARN, "s3-notify-arn", "", "with --s3-notify-topic: the notification target ARN (e.g. arn:minio:sqs::FFC:kafka) produce configures on --bucket for object created/removed events under announce/ and ids/ (env FFC_S3_NOTIFY_ARN; empty: left to the operator)")
	fs.StringVar(&f.trainerGroup, "trainer-group", schemas.TrainerGroup, "consumer group of the trainers, whose committed offsets flow control measures the lead against")
	fs.StringVar(&f.shard, "shard", "0/1", "this producer's share of the IDs as i/n: it emits the IDs with hash(id) mod n = i")
	fs.IntVar(&f.partitions, "partitions", producers.DefaultPartitions, "partitions of the id and instance topics when produce creates them")
	fs.DurationVar(&f.pollInterval, "poll-interval", producers.DefaultPollInterval, "how often announce/ is polled for new IDs")
	fs.DurationVar(&f.rescanInterval, "rescan-interval", producers.DefaultRescanInterval, "period of the full listing that finds IDs uploaded without an announcement; 0 disables it")
	fs.IntVar(&f.concurrency, "concurrency", producers.DefaultConcurrency, "S3 fetch workers per stream")
	fs.StringVar(&f.source, "source", "", "name of this producer in the messages (default producer-<host>-<i>of<n>)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on http://<addr>/metrics, e.g. :9464 (empty: not served)")
	fs.DurationVar(&f.statsInterval, "stats-interval", 30*time.Second, "log a progress line this often (0: never)")
	return cmd
}

func runProduce(ctx context.Context, a *app, f *produceFlags) error {
	if err := f.check(); err != nil {
		return err
	}
	set, err := f.set.Derive(settings.Produce, 0)
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	shard, _ := producers.ParseShard(f.shard) // checked
	g := stage.NewGroup(ctx, a.log)
	ends, embeddedS3, err := f.endpoints(ctx, g, a)
	if err != nil {
		return errors.Join(err, g.Close())
	}
	mc, done, err := s3Client(ends)
	if err != nil {
		return errors.Join(err, g.Close())
	}
	defer done()    // after the group is closed
	if embeddedS3 { // nothing there yet
		if err := mc.MakeBucket(ctx, f.bucket, minio.MakeBucketOptions{}); err != nil {
			return errors.Join(fmt.Errorf("create bucket %s in the embedded S3: %w", f.bucket, err), g.Close())
		}
	}
	p, reg, err := f.producer(mc, ends, shard, set.MaxLead, a)
	if err == nil {
		err = startMetrics(ctx, g, f.metricsAddr, reg, a, p.Health())
	}
	if err != nil {
		return errors.Join(err, g.Close())
	}
	g.Go("producer", p)
	// Interrupted once ready, it stops cleanly below (WaitReady may see
	// the interruption first); before, it says what it waited for.
	if err := g.WaitReady(ctx, "producer"); err != nil && !(ctx.Err() != nil && isReady(p)) {
		if ctx.Err() != nil {
			if nerr := notReady("produce: the producer was", p.Health()); nerr != nil {
				err = nerr
			}
		}
		return errors.Join(err, g.Close())
	}
	st := p.Stats()
	fmt.Fprintf(a.stdout, "ffc produce: bucket %s (shard %s): %d IDs, %d images → %s, %s (max lead %d behind group %s)\n",
		f.bucket, shard, st.IDs, st.Images, f.topicByID, f.topicInstance, set.MaxLead, f.trainerGroup)
	err = followStage(ctx, g, "producer", f.statsInterval, func() {
		st := p.Stats()
		a.log.Info("producing", "ids", st.IDs, "images", st.Images, "bad_images", st.BadImages,
			"pairs", st.ByID.Produced, "samples", st.Instance.Produced,
			"lag_byid", st.ByID.Lag, "lag_instance", st.Instance.Lag,
			"held_byid", st.ByID.Blocking, "held_instance", st.Instance.Blocking,
			"passes", st.Passes, "epoch", st.Epoch, "new_ids", st.NewIDs, "dead_letters", sumCounts(st.DeadLetters),
			"kafka_down", st.Kafka.Down, "kafka_pending", st.Kafka.Pending, "s3_retries", st.S3Retries)
	}, "producer")
	st = p.Stats()
	fmt.Fprintf(a.stdout, "ffc produce: stopped: %d id pairs, %d samples, %d dead letters, %d new IDs\n",
		st.ByID.Produced, st.Instance.Produced, sumCounts(st.DeadLetters), st.NewIDs)
	return errors.Join(err, g.Close())
}

// check validates the flags before anything starts.
func (f *produceFlags) check() error {
	if _, err := producers.ParseShard(f.shard); err != nil {
		return fmt.Errorf("--shard: %w", err)
	}
	if err := f.ends.checkTimeouts(); err != nil {
		return err
	}
	if err := f.ends.resolve(); err != nil {
		return err
	}
	var missing []string
	if len(f.ends.KafkaBrokers) == 0 {
		missing = append(missing, "--kafka-brokers")
	}
	if f.ends.S3Endpoint == "" {
		missing = append(missing, "--s3-endpoint")
	}
	if len(missing) > 0 && !f.allowEmbedded {
		return fmt.Errorf("produce needs %s (or --allow-embedded for a throwaway in-process server)", strings.Join(missing, " and "))
	}
	return nil
}

// endpoints returns the services to use, starting the embedded stage for
// missing ones (with --allow-embedded; produce does not use NATS), and
// whether the S3 server is an embedded one.
func (f *produceFlags) endpoints(ctx context.Context, g *stage.Group, a *app) (endpoints, bool, error) {
	if !f.ends.missing(false) {
		return f.ends, false, nil
	}
	st := f.ends.embeddedStack("", false, a.log, nil)
	g.Go("embedded", st)
	if err := g.WaitReady(ctx, "embedded"); err != nil {
		return f.ends, false, err
	}
	ends := f.ends.with(st)
	a.log.Warn("produce is using EMBEDDED servers: they start empty and vanish at exit; trainers must be given these addresses",
		"embedded", strings.Join(st.Embedded(), ","), "kafka", strings.Join(ends.KafkaBrokers, ","), "s3", ends.S3Endpoint)
	return ends, st.S3 != nil, nil
}

// producer builds the producer stage and the registry of its metrics on
// the S3 client mc.
func (f *produceFlags) producer(mc *minio.Client, ends endpoints, shard producers.Shard, maxLead int, a *app) (*producers.Producer, *prometheus.Registry, error) {
	rescan := f.rescanInterval
	if rescan <= 0 {
		rescan = -1 // Config: negative disables, zero means the default
	}
	ktls, ksasl, err := ends.Kafka.sec.Client()
	if err != nil {
		return nil, nil, err
	}
	ends.logSecurity(a.log, false)
	reg := prometheus.NewRegistry()
	p, err := producers.New(producers.Config{
		Brokers: ends.KafkaBrokers, KafkaTLS: ktls, KafkaSASL: ksasl, S3: mc, Bucket: f.bucket,
		TopicByID: f.topicByID, TopicInstance: f.topicInstance, TopicDeadLetter: f.topicDead,
		TopicFresh: f.topicFresh, FreshMaxLead: f.freshMaxLead, FreshPairs: f.freshPairs, NotifyTopic: f.notifyTopic, NotifyARN: f.notifyARN,
		Partitions: f.partitions, TrainerGroup: f.trainerGroup, MaxLead: maxLead, Shard: shard,
		PollInterval: f.pollInterval, RescanInterval: rescan, Concurrency: f.concurrency, Source: f.source,
		KafkaTimeout: ends.KafkaTimeout, ConnectTimeout: ends.ConnectTimeout, Registry: reg, Log: a.log,
	})
	return p, reg, err
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
