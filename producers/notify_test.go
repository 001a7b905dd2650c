package producers

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// minioEvent is a message as MinIO's Kafka notification target writes
// it: one event record, the object key URL-encoded.
func minioEvent(t *testing.T, event, bucket, key string) []byte {
	t.Helper()
	rec := map[string]any{
		"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": time.Now().UTC().Format(time.RFC3339Nano),
		"eventName": event, "userIdentity": map[string]any{"principalId": "ffc"},
		"requestParameters": map[string]any{"principalId": "ffc", "region": "", "sourceIPAddress": "127.0.0.1"},
		"responseElements":  map[string]any{"x-amz-request-id": "1", "x-minio-origin-endpoint": "http://127.0.0.1:9000"},
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "Config",
			"bucket": map[string]any{"name": bucket, "ownerIdentity": map[string]any{"principalId": "ffc"}, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{"key": url.QueryEscape(key), "size": 0, "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "1"},
		},
		"source": map[string]any{"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7"},
	}
	b, err := json.Marshal(map[string]any{"EventName": event, "Key": bucket + "/" + key, "Records": []any{rec}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// notifyTopic creates a topic of two partitions and returns a client
// that produces to it.
func notifyTopic(t *testing.T, topic string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Kafka.Brokers()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, 2, 1
	create.Topics = append(create.Topics, ct)
	if _, err := create.RequestWith(testutil.Context(t), cl); err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestNotifications: with polling out of the way (one poll at start,
// the next in an hour), bucket notifications alone bring a new ID into
// rotation (once, though notified twice), keep the catalog's images up to
// date, remove an ID on its removal marker and count a non-image key;
// a message that is not JSON and another bucket's events are ignored,
// the former counted.
func TestNotifications(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 8
	cfg.PollInterval = time.Hour
	cfg.NotifyTopic = unique("notify")
	// The embedded S3 cannot configure notifications: Run warns and goes
	// on (the events are written by the test).
	cfg.NotifyARN = "arn:minio:sqs::ffc:kafka"
	cl := notifyTopic(t, cfg.NotifyTopic)
	p := start(t, cfg)
	testutil.WaitTrue(t, "the notification readers and the first poll", func() bool {
		return p.Stats().Notify.Listening && p.polls.Load() >= 1
	})
	ctx := testutil.Context(t)
	notify := func(vs ...[]byte) {
		t.Helper()
		for _, v := range vs {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A message that is not JSON; an event of another bucket.
	notify([]byte("{not json"), minioEvent(t, "s3:ObjectCreated:Put", "other", AnnounceKey(time.Now(), 2)))
	testutil.WaitTrue(t, "the bad message to be counted", func() bool { return p.Stats().Notify.Messages == 2 })
	if st := p.Stats().Notify; st.Bad != 1 || st.Events != 0 {
		t.Errorf("notify stats %+v: want 1 bad, 0 events of this bucket", st)
	}

	// A new ID, announced and notified twice.
	const newID = 1
	f.addGood(t, mc, newID, "0000", 800)
	at := time.Now()
	marker := AnnounceKey(at, newID)
	put(t, mc, f.bucket, marker, nil)
	notify(minioEvent(t, "s3:ObjectCreated:Put", f.bucket, marker))
	testutil.WaitTrue(t, "the notified id in the catalog", func() bool { return p.Catalog().Names(newID) != nil })
	notify(minioEvent(t, "s3:ObjectCreated:Put", f.bucket, marker))
	testutil.WaitTrue(t, "both notified markers dealt with", func() bool { return p.Stats().Notify.Markers == 2 })
	testutil.WaitTrue(t, "the fresh pairs", func() bool { return p.Stats().Fresh.Produced >= DefaultFreshPairs })
	if st := p.Stats(); st.NewIDs != 1 || st.FreshPairs != DefaultFreshPairs {
		t.Errorf("NewIDs %d FreshPairs %d, want 1 and %d (a marker handled once)", st.NewIDs, st.FreshPairs, DefaultFreshPairs)
	}

	// An image created, then removed, under a known ID.
	const known = 1000
	key := schemas.ImageKey(known, "0009")
	put(t, mc, f.bucket, key, testPNG(t, 32, 9))
	notify(minioEvent(t, "s3:ObjectCreated:Put", f.bucket, key))
	testutil.WaitTrue(t, "the created image in the catalog", func() bool { return slices.Contains(p.Catalog().Names(known), "0009") })
	if err := mc.RemoveObject(ctx, f.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	notify(minioEvent(t, "s3:ObjectRemoved:Delete", f.bucket, key))
	testutil.WaitTrue(t, "the removed image out of the catalog", func() bool { return !slices.Contains(p.Catalog().Names(known), "0009") })

	// A non-image key: counted (once); a removal marker.
	skipped := p.Stats().SkippedKeys
	notify(minioEvent(t, "s3:ObjectCreated:Put", f.bucket, "ids/1000/notes.txt"))
	testutil.WaitTrue(t, "the non-image key counted", func() bool { return p.Stats().SkippedKeys == skipped+1 })
	removal := RemovalKey(time.Now(), known)
	put(t, mc, f.bucket, removal, nil)
	notify(minioEvent(t, "s3:ObjectCreated:Put", f.bucket, removal))
	testutil.WaitTrue(t, "the notified removal", func() bool { return p.Stats().RemovedIDs == 1 })
	if p.Catalog().Names(known) != nil {
		t.Errorf("id %d still in the catalog after its removal marker", known)
	}
	testutil.WaitTrue(t, "the REMOVE record", func() bool { return p.Stats().Fresh.Produced >= DefaultFreshPairs+1 })
	recs := freshRecords(t, readAll(t, cfg.TopicFresh))
	var removes int
	for _, m := range recs {
		switch {
		case m.GetOp() == ffcpb.IDPair_REMOVE:
			removes++
			if m.GetId() != known {
				t.Errorf("REMOVE of id %d, want %d", m.GetId(), known)
			}
		case m.GetId() != newID || m.GetAnnouncedUnixNano() != at.UnixNano():
			t.Errorf("fresh pair of id %d announced %d, want %d announced %d", m.GetId(), m.GetAnnouncedUnixNano(), newID, at.UnixNano())
		}
	}
	if removes != 1 || len(recs) != DefaultFreshPairs+1 {
		t.Errorf("fresh lane: %d records, %d REMOVE; want %d and 1", len(recs), removes, DefaultFreshPairs+1)
	}
	if st := p.Stats().Notify; st.Bad != 1 || st.FetchErrors != 0 {
		t.Errorf("notify stats %+v: want 1 bad, no fetch error", st)
	}
}

// TestNotificationsStopWhileWaiting: a producer whose notification topic
// does not exist keeps producing (polling) and stops cleanly.
func TestNotificationsStopWhileWaiting(t *testing.T) {
	mc := s3Client(t)
	f := newFixture(t, mc)
	cfg := testConfig(t, mc, f.bucket)
	cfg.MaxLead = 8
	cfg.NotifyTopic = unique("absent")
	p := start(t, cfg)
	const newID = 2
	f.addGood(t, mc, newID, "0000", 900)
	if err := Announce(context.Background(), mc, f.bucket, newID); err != nil {
		t.Fatal(err)
	}
	testutil.WaitTrue(t, "the polled announcement", func() bool { return p.Catalog().Names(newID) != nil })
	if p.Stats().Notify.Listening {
		t.Error("listening on a topic that does not exist")
	}
}
