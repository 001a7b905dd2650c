package producers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/minio/minio-go/v7/pkg/notification"
	"github.com/segmentio/kafka-go"
)

// Bucket notifications (Config.NotifyTopic). MinIO's Kafka notification
// target writes one message per event:
//
//	{"EventName": "s3:ObjectCreated:Put", "Key": "<bucket>/<key>",
//	 "Records": [<S3 event record>...]}
//
// the object keys in the records URL-encoded. The producer reads the
// topic from its end at the time Run starts (a reader per partition, no
// consumer group: every producer sees every event) and, for its bucket:
// a created marker under announce/ goes to the watcher, which handles it
// at once exactly as a polled one (and only once, whichever comes first);
// a created or removed image of a known ID of its shard updates the
// catalog; a created object under ids/ that is not an image key is
// counted and warned about once, as listings do. Polling goes on as the
// fallback: a notification lost, late or never configured delays a
// marker by at most PollInterval.

// Kinds of rejected notifications (the label of
// ffc_producer_bad_notifications_total).
const (
	notifyBadJSON   = "json"
	notifyBadRecord = "record"
	notifyBadKey    = "key"
)

var notifyBadKinds = []string{notifyBadJSON, notifyBadRecord, notifyBadKey}

// notifyMessage is one message of MinIO's Kafka notification target.
type notifyMessage struct {
	EventName string
	Key       string
	Records   []notification.Event
}

// NotifyStats describes the bucket notifications read (NotifyTopic).
type NotifyStats struct {
	// Listening is true once the readers are positioned at the end the
	// topic had when they started: events written from then on are seen.
	Listening bool
	// Messages counts the messages read; Events the event records of the
	// bucket in them; Markers the created markers (under announce/) the
	// watcher has dealt with, duplicates of polled ones included; Bad the
	// messages and records rejected (not JSON, no records, a record
	// without a name or key, a key that does not unescape); FetchErrors
	// the reads that failed (retried with backoff).
	Messages, Events, Markers, Bad, FetchErrors int64
}

type notifyCounters struct {
	listening                                   atomic.Bool
	messages, events, markers, bad, fetchErrors atomic.Int64
}

func (n *notifyCounters) stats() NotifyStats {
	return NotifyStats{Listening: n.listening.Load(), Messages: n.messages.Load(), Events: n.events.Load(),
		Markers: n.markers.Load(), Bad: n.bad.Load(), FetchErrors: n.fetchErrors.Load()}
}

// runNotify configures the bucket's notifications (NotifyARN), then reads
// NotifyTopic until ctx ends.
func (p *Producer) runNotify(ctx context.Context) {
	if p.cfg.NotifyARN != "" {
		if err := p.configureNotifications(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("setting the bucket notification failed; relying on polling announce/ unless the operator configures it",
				"bucket", p.cfg.Bucket, "arn", p.cfg.NotifyARN, "err", err)
		}
	}
	ends, err := p.notifyEnds(ctx)
	if err != nil {
		return // ctx ended
	}
	var wg sync.WaitGroup
	for part, off := range ends {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: p.cfg.Brokers, Topic: p.cfg.NotifyTopic, Partition: part, Dialer: p.cfg.dialer("ffc-producer"),
			MinBytes: 1, MaxBytes: 1 << 20, MaxWait: time.Second,
		})
		if err := r.SetOffset(off); err != nil {
			p.log.Error("positioning a notification reader failed", "partition", part, "err", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			p.readNotifications(ctx, r)
		}()
	}
	p.notes.listening.Store(true)
	p.log.Info("reading bucket notifications", "topic", p.cfg.NotifyTopic, "partitions", len(ends))
	wg.Wait()
}

// notifyEnds returns the end offset of every partition of NotifyTopic,
// asking again with backoff until it can (the topic may not exist yet);
// an error only when ctx ends. Partitions added later are not read.
func (p *Producer) notifyEnds(ctx context.Context) (map[int]int64, error) {
	m := &lagMeter{client: p.client, transport: p.transport, addr: p.client.Addr, topics: []string{p.cfg.NotifyTopic}}
	warned := false
	return backoff.Retry(ctx, func() (map[int]int64, error) {
		err := m.refresh(ctx)
		var ends map[string]map[int]int64
		if err == nil {
			ends, err = m.offsets(ctx, kafka.LastOffset)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, backoff.Permanent(ctx.Err())
			}
			if !warned {
				warned = true
				p.log.Warn("notification topic not readable yet; polling announce/ meanwhile", "topic", p.cfg.NotifyTopic, "err", err)
			}
			return nil, err
		}
		return ends[p.cfg.NotifyTopic], nil
	}, backoff.WithBackOff(retryBackoff()), backoff.WithMaxElapsedTime(0))
}

// readNotifications reads one partition until ctx ends. A failed read
// (Kafka down) is retried with backoff, for ever; the reader itself
// reconnects.
func (p *Producer) readNotifications(ctx context.Context, r *kafka.Reader) {
	b := retryBackoff()
	failing := false
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.notes.fetchErrors.Add(1)
			p.met.notifyFetchErrors.Inc()
			if !failing {
				failing = true
				p.log.Warn("reading bucket notifications failed; retrying (polling announce/ goes on)", "topic", p.cfg.NotifyTopic, "err", err)
			}
			if !sleep(ctx, b.NextBackOff()) {
				return
			}
			continue
		}
		if failing {
			failing = false
			p.log.Info("reading bucket notifications again", "topic", p.cfg.NotifyTopic)
		}
		b.Reset()
		p.onNotification(ctx, m.Value)
	}
}

// onNotification handles one notification message.
func (p *Producer) onNotification(ctx context.Context, v []byte) {
	p.notes.messages.Add(1)
	p.met.notifications.Inc()
	var nm notifyMessage
	if err := json.Unmarshal(v, &nm); err != nil {
		p.badNotification(notifyBadJSON, err)
		return
	}
	if len(nm.Records) == 0 {
		p.badNotification(notifyBadJSON, errors.New("no event records"))
		return
	}
	for _, ev := range nm.Records {
		p.onEvent(ctx, ev)
	}
}

// onEvent handles one event record.
func (p *Producer) onEvent(ctx context.Context, ev notification.Event) {
	if ev.S3.Bucket.Name != p.cfg.Bucket {
		return // another bucket's
	}
	p.notes.events.Add(1)
	p.met.notifyEvents.Inc()
	if ev.EventName == "" || ev.S3.Object.Key == "" {
		p.badNotification(notifyBadRecord, fmt.Errorf("event %q of key %q", ev.EventName, ev.S3.Object.Key))
		return
	}
	key, err := url.QueryUnescape(ev.S3.Object.Key)
	if err != nil {
		p.badNotification(notifyBadKey, err)
		return
	}
	// MinIO names events s3:ObjectCreated:Put, AWS ObjectCreated:Put.
	name := strings.TrimPrefix(ev.EventName, "s3:")
	created, removed := strings.HasPrefix(name, "ObjectCreated:"), strings.HasPrefix(name, "ObjectRemoved:")
	switch {
	case strings.HasPrefix(key, AnnouncePrefix):
		if created {
			select {
			case p.markers <- key:
			case <-ctx.Done():
			}
		}
	case strings.HasPrefix(key, "ids/") && (created || removed):
		id, img, err := keyProblem(key)
		switch {
		case err != nil:
			if created {
				sk := p.newSkipLog()
				sk.skip(key, err)
			}
		case !p.cfg.Shard.Owns(id):
		case created:
			if p.cat.addName(id, img) {
				p.log.Debug("image added by notification", "key", key)
			}
		default:
			p.cat.removeName(id, img)
		}
	}
}

// badNotification counts a rejected notification and warns about the
// first of each kind.
func (p *Producer) badNotification(kind string, err error) {
	p.notes.bad.Add(1)
	p.met.badNotifications.WithLabelValues(kind).Inc()
	if _, warn := p.warned.see("notification:" + kind); warn {
		p.log.Warn("ignoring bad bucket notification (warned once per kind; counted in ffc_producer_bad_notifications_total)",
			"topic", p.cfg.NotifyTopic, "kind", kind, "err", err)
	}
}

// configureNotifications sets the bucket's notification of objects
// created and removed under announce/ and ids/ to NotifyARN (one queue
// configuration per prefix), keeping its other configurations.
func (p *Producer) configureNotifications(ctx context.Context) error {
	arn, err := notification.NewArnFromString(p.cfg.NotifyARN)
	if err != nil {
		return fmt.Errorf("producers: notification ARN %q: %w", p.cfg.NotifyARN, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.KafkaTimeout)
	defer cancel()
	conf, err := p.cfg.S3.GetBucketNotification(ctx, p.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("producers: get the notification of bucket %s: %w", p.cfg.Bucket, err)
	}
	conf.RemoveQueueByArn(arn)
	for _, prefix := range []string{AnnouncePrefix, "ids/"} {
		qc := notification.NewConfig(arn)
		qc.AddEvents(notification.ObjectCreatedAll, notification.ObjectRemovedAll)
		qc.AddFilterPrefix(prefix)
		conf.AddQueue(qc)
	}
	if err := p.cfg.S3.SetBucketNotification(ctx, p.cfg.Bucket, conf); err != nil {
		return fmt.Errorf("producers: set the notification of bucket %s: %w", p.cfg.Bucket, err)
	}
	p.log.Info("bucket notification set", "bucket", p.cfg.Bucket, "arn", p.cfg.NotifyARN, "prefixes", []string{AnnouncePrefix, "ids/"})
	return nil
}
