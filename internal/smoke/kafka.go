package smoke

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaOptions tunes the Kafka check.
type KafkaOptions struct {
	// Partitions of the test topic; default 8.
	Partitions int
	// Messages produced before the first consumer, and again before the
	// resumed one; default 200.
	Messages int
	// Keys is the number of distinct message keys; default 40.
	Keys int
}

// KafkaReport is what the Kafka check observed.
type KafkaReport struct {
	Topic string
	// Partitions is the partition count the broker reports for the topic.
	Partitions int
	// APIs is the number of Kafka APIs the broker advertises; Produce and
	// Fetch give their version range ("v3-v12").
	APIs           int
	Produce, Fetch string
	// Features are the broker's finalized feature levels (Kafka 3.3+ in
	// KRaft mode reports metadata.version and kraft.version); empty for
	// brokers that report none.
	Features map[string]int
	// Consumed by the first group member, and Resumed by the second one
	// that starts from the committed offsets.
	Produced, Consumed, Resumed int
	// PartitionsUsed is how many partitions the keyed messages landed in.
	PartitionsUsed int
}

// String renders the report on one line.
func (r KafkaReport) String() string {
	feats := make([]string, 0, len(r.Features))
	for k, v := range r.Features {
		feats = append(feats, k+"="+strconv.Itoa(v))
	}
	sort.Strings(feats)
	return fmt.Sprintf("topic %s: %d partitions (%d used by keys); produced %d, consumed %d, resumed %d from committed offsets; broker: %d APIs, Produce %s, Fetch %s, features [%s]",
		r.Topic, r.Partitions, r.PartitionsUsed, r.Produced, r.Consumed, r.Resumed, r.APIs, r.Produce, r.Fetch, strings.Join(feats, " "))
}

// Kafka checks a Kafka-protocol broker with kafka-go: it creates a topic
// with the version-negotiating kafka.Client, produces keyed messages with a
// hash balancer, consumes them in a consumer group with committed offsets,
// produces more, and checks that a new group member resumes exactly after
// the committed offsets. It deletes the topic at the end.
func Kafka(ctx context.Context, brokers []string, opts KafkaOptions) (rep KafkaReport, err error) {
	if len(brokers) == 0 {
		return rep, errors.New("kafka check: no brokers given")
	}
	if opts.Partitions == 0 {
		opts.Partitions = 8
	}
	if opts.Messages == 0 {
		opts.Messages = 200
	}
	if opts.Keys == 0 {
		opts.Keys = 40
	}
	rep.Topic = "ffc-smoke-" + uniqueSuffix()
	// A transport of its own, so that its connections end with the check.
	tr := &kafka.Transport{ClientID: "ffc-smoke"}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: tr}

	if err := brokerInfo(ctx, client, brokers, &rep); err != nil {
		return rep, err
	}
	if err := createTopic(ctx, client, rep.Topic, opts.Partitions); err != nil {
		return rep, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := client.DeleteTopics(dctx, &kafka.DeleteTopicsRequest{Topics: []string{rep.Topic}}); derr != nil {
			err = errors.Join(err, fmt.Errorf("kafka check: delete topic %s: %w", rep.Topic, derr))
		}
	}()
	if rep.Partitions, err = waitPartitions(ctx, client, rep.Topic, opts.Partitions); err != nil {
		return rep, err
	}

	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        rep.Topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		Transport:    client.Transport,
	}
	defer w.Close()
	if err := produceKeyed(ctx, w, 0, opts.Messages, opts.Keys); err != nil {
		return rep, err
	}
	rep.Produced += opts.Messages

	c := newGroupConsumer(brokers, rep.Topic)
	if rep.Consumed, err = c.consume(ctx, opts.Messages); err != nil {
		return rep, err
	}
	if err := produceKeyed(ctx, w, opts.Messages, opts.Messages, opts.Keys); err != nil {
		return rep, err
	}
	rep.Produced += opts.Messages
	// The second member sees only the second batch: anything of the first
	// batch would be a duplicate and fail in consume.
	if rep.Resumed, err = c.consume(ctx, opts.Messages); err != nil {
		return rep, err
	}
	if len(c.seen) != rep.Produced {
		return rep, fmt.Errorf("kafka check: %d distinct messages consumed, %d produced", len(c.seen), rep.Produced)
	}
	rep.PartitionsUsed = c.partitionsUsed()
	if rep.PartitionsUsed < 2 {
		return rep, fmt.Errorf("kafka check: %d keys all landed in one partition: the hash balancer did not spread them", opts.Keys)
	}
	return rep, nil
}

// createTopic creates topic with the given partitions and replication
// factor 1.
func createTopic(ctx context.Context, client *kafka.Client, topic string, partitions int) error {
	created, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		return fmt.Errorf("kafka check: create topic %s: %w", topic, err)
	}
	if terr := created.Errors[topic]; terr != nil {
		return fmt.Errorf("kafka check: create topic %s: %w", topic, terr)
	}
	return nil
}

// produceKeyed writes n messages with sequence numbers from, from+1, ... as
// values, keyed "id-<seq mod keys>".
func produceKeyed(ctx context.Context, w *kafka.Writer, from, n, keys int) error {
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		seq := from + i
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "id-%d", seq%keys), Value: []byte(strconv.Itoa(seq))}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("kafka check: produce to %s: %w", w.Topic, err)
	}
	return nil
}

// groupConsumer consumes the test topic as successive members of one
// consumer group, and checks across all of them that no message comes
// twice and that each key stays in one partition, in order.
type groupConsumer struct {
	brokers      []string
	topic, group string
	seen         map[int]bool   // sequence numbers consumed
	keyPartition map[string]int // partition each key was seen in
	lastSeq      map[string]int // last sequence number seen per key
}

// newGroupConsumer returns a consumer of topic in the group "<topic>-group".
func newGroupConsumer(brokers []string, topic string) *groupConsumer {
	return &groupConsumer{
		brokers:      brokers,
		topic:        topic,
		group:        topic + "-group",
		seen:         make(map[int]bool),
		keyPartition: make(map[string]int),
		lastSeq:      make(map[string]int),
	}
}

// consume joins the group as a new member, starting from the committed
// offsets, and fetches, checks and synchronously commits want messages.
func (c *groupConsumer) consume(ctx context.Context, want int) (int, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        c.brokers,
		GroupID:        c.group,
		Topic:          c.topic,
		MinBytes:       1,
		MaxBytes:       1 << 20,
		MaxWait:        time.Second,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0, // synchronous commits: CommitMessages returns once durable
	})
	defer r.Close()
	got := 0
	for got < want {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return got, fmt.Errorf("kafka check: consume %s (group %s) after %d of %d: %w", c.topic, c.group, got, want, err)
		}
		if err := c.record(m); err != nil {
			return got, err
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			return got, fmt.Errorf("kafka check: commit %d/%d: %w", m.Partition, m.Offset, err)
		}
		got++
	}
	return got, nil
}

// record checks one fetched message against those seen before (ours, not a
// duplicate, its key in one partition and in order) and remembers it.
func (c *groupConsumer) record(m kafka.Message) error {
	seq, err := strconv.Atoi(string(m.Value))
	if err != nil {
		return fmt.Errorf("kafka check: message %q at %d/%d is not ours: %w", m.Value, m.Partition, m.Offset, err)
	}
	if c.seen[seq] {
		return fmt.Errorf("kafka check: message %d delivered twice (partition %d offset %d): committed offsets not honoured", seq, m.Partition, m.Offset)
	}
	c.seen[seq] = true
	key := string(m.Key)
	if p, ok := c.keyPartition[key]; ok && p != m.Partition {
		return fmt.Errorf("kafka check: key %s in partitions %d and %d", key, p, m.Partition)
	}
	c.keyPartition[key] = m.Partition
	if prev, ok := c.lastSeq[key]; ok && prev > seq {
		return fmt.Errorf("kafka check: key %s out of order: %d after %d", key, seq, prev)
	}
	c.lastSeq[key] = seq
	return nil
}

// partitionsUsed is the number of distinct partitions the keys landed in.
func (c *groupConsumer) partitionsUsed() int {
	used := make(map[int]bool)
	for _, p := range c.keyPartition {
		used[p] = true
	}
	return len(used)
}

// waitPartitions polls metadata until the topic reports its partitions.
func waitPartitions(ctx context.Context, client *kafka.Client, topic string, want int) (int, error) {
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		switch {
		case err != nil:
			last = err
		case len(md.Topics) != 1:
			last = fmt.Errorf("metadata returned %d topics", len(md.Topics))
		case md.Topics[0].Error != nil:
			last = md.Topics[0].Error
		case len(md.Topics[0].Partitions) != want:
			return 0, fmt.Errorf("kafka check: topic %s has %d partitions, want %d", topic, len(md.Topics[0].Partitions), want)
		default:
			return want, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("kafka check: topic %s not ready: %w", topic, last)
}

// brokerInfo fills the API versions (kafka-go) and finalized features
// (franz-go's kmsg, since kafka-go does not decode them) of the broker.
func brokerInfo(ctx context.Context, client *kafka.Client, brokers []string, rep *KafkaReport) error {
	av, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{Addr: kafka.TCP(brokers[0])})
	if err != nil {
		return fmt.Errorf("kafka check: api versions from %s: %w", brokers[0], err)
	}
	if av.Error != nil {
		return fmt.Errorf("kafka check: api versions from %s: %w", brokers[0], av.Error)
	}
	rep.APIs = len(av.ApiKeys)
	for _, k := range av.ApiKeys {
		switch k.ApiKey {
		case 0:
			rep.Produce = fmt.Sprintf("v%d-v%d", k.MinVersion, k.MaxVersion)
		case 1:
			rep.Fetch = fmt.Sprintf("v%d-v%d", k.MinVersion, k.MaxVersion)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka check: franz-go client: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.ClientSoftwareName = "ffc-smoke"
	req.ClientSoftwareVersion = "1"
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka check: api versions (features) from %s: %w", brokers[0], err)
	}
	rep.Features = make(map[string]int, len(resp.FinalizedFeatures))
	for _, f := range resp.FinalizedFeatures {
		rep.Features[f.Name] = int(f.MaxVersionLevel)
	}
	return nil
}
