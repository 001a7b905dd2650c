package producers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// Dead-letter headers.
const (
	// HeaderReason is schemas.Reason of the validation error.
	HeaderReason = "reason"
	// HeaderKey is the object key (also the message key and value).
	HeaderKey = "key"
	// HeaderError is the validation error in words.
	HeaderError = "error"
	// HeaderSource is the producer that rejected the object.
	HeaderSource = "source"
)

// errGone: the listed object is no longer there.
var errGone = errors.New("object gone")

// fetch reads an object, at most MaxImageBytes+1 bytes of it (enough to
// tell that it is too large without reading it all), retrying transient
// errors (retryS3).
func (p *Producer) fetch(ctx context.Context, key string) ([]byte, error) {
	return retryS3(ctx, p, func() ([]byte, error) {
		obj, err := p.cfg.S3.GetObject(ctx, p.cfg.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return nil, classifyS3(key, err)
		}
		defer obj.Close()
		b, err := io.ReadAll(io.LimitReader(obj, int64(p.maxImageBytes)+1))
		if err != nil {
			return nil, classifyS3(key, err)
		}
		return b, nil
	})
}

func classifyS3(key string, err error) error {
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return fmt.Errorf("get %s: %w", key, errGone)
	}
	return fmt.Errorf("get %s: %w", key, err)
}

// image fetches and validates image name of id. ok is false when the
// image is unusable (it failed validation and was dead-lettered, or its
// object is gone) and the caller should pick another; err reports an S3
// problem worth a retry later.
func (p *Producer) image(ctx context.Context, id uint64, name string) (b []byte, ok bool, err error) {
	key := schemas.ImageKey(id, name)
	b, err = p.fetch(ctx, key)
	if errors.Is(err, errGone) {
		p.log.Warn("listed image is gone; dropping it from the catalog", "key", key)
		p.cat.removeName(id, name)
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if _, verr := schemas.DecodeImage(b, p.cfg.Limits); verr != nil {
		p.reject(ctx, id, name, key, verr)
		return nil, false, nil
	}
	return b, true, nil
}

// reject marks an image bad and, the first time, sends its key to the
// dead-letter topic. The value is the object key, never the bytes: the
// object stays in the bucket for inspection, and an oversized one could
// not be sent anyway.
func (p *Producer) reject(ctx context.Context, id uint64, name, key string, verr error) {
	first, allBad := p.cat.markBad(id, name)
	if first {
		reason := schemas.Reason(verr)
		p.countDeadLetter(reason)
		p.log.Warn("dead-lettering invalid image", "key", key, "reason", reason, "err", verr)
		msg := kafka.Message{
			Topic: p.cfg.TopicDeadLetter,
			Key:   []byte(key),
			Value: []byte(key),
			Headers: []kafka.Header{
				{Key: HeaderReason, Value: []byte(reason)},
				{Key: HeaderKey, Value: []byte(key)},
				{Key: HeaderError, Value: []byte(verr.Error())},
				{Key: HeaderSource, Value: []byte(p.cfg.Source)},
			},
			Time: time.Now(),
		}
		if err := p.writer.WriteMessages(ctx, msg); err != nil {
			p.refused([]kafka.Message{msg}, err, 0)
		}
	}
	if allBad {
		p.log.Warn("dropping id from rotation: every image failed validation", "id", id)
	}
}

func (p *Producer) countDeadLetter(reason string) {
	p.dlMu.Lock()
	p.dlCounts[reason]++
	p.dlMu.Unlock()
	p.met.deadLetters.WithLabelValues(reason).Inc()
}

// lane is a topic the producer writes under flow control, with its gate.
type lane struct {
	topic string
	gate  *gate
}

// lanes are the id stream, the instance stream and the fresh lane.
func (p *Producer) lanes() []lane {
	return []lane{{p.cfg.TopicByID, p.gByID}, {p.cfg.TopicInstance, p.gInst}, {p.cfg.TopicFresh, p.gFresh}}
}

// holdAll stops (on) or resumes admissions on every lane.
func (p *Producer) holdAll(on bool) {
	for _, l := range p.lanes() {
		l.gate.hold(on)
	}
}

func (p *Producer) gateOf(topic string) *gate {
	switch topic {
	case p.cfg.TopicByID:
		return p.gByID
	case p.cfg.TopicInstance:
		return p.gInst
	case p.cfg.TopicFresh:
		return p.gFresh
	}
	return nil
}

// send hands one admitted message to the writer; one it does not take
// goes to the outbox.
func (p *Producer) send(ctx context.Context, g *gate, msg kafka.Message) {
	if len(msg.Value) > p.maxMessageBytes {
		p.log.Error("message over the limit not sent", "topic", msg.Topic, "key", string(msg.Key), "bytes", len(msg.Value), "limit", p.maxMessageBytes)
		g.release()
		return
	}
	g.sent.Add(1)
	if err := p.writer.WriteMessages(ctx, msg); err != nil {
		p.refused([]kafka.Message{msg}, err, 0)
	}
}

// s3Pause follows a job given up on an object-storage error (after the
// request's retries): the condition is failed by retryS3; the worker
// waits a little before its next job.
func s3Pause(ctx context.Context) { sleep(ctx, 200*time.Millisecond) }

// idle waits for the catalog to get IDs.
func (p *Producer) idle(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(p.cfg.PollInterval):
	}
}

// --- id stream.

// runByID emits the id stream until ctx ends: the dispatcher takes IDs
// from the rotation, admits each through flow control and hands it to
// Concurrency workers that fetch, validate and send a pair.
func (p *Producer) runByID(ctx context.Context) {
	jobs := make(chan uint64)
	var wg sync.WaitGroup
	for w := range p.cfg.Concurrency {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(p.seed, uint64(1000+w)))
		go func() {
			defer wg.Done()
			for id := range jobs {
				msg, ok, err := p.pairMessage(ctx, id, rng, p.cfg.TopicByID, 0)
				if err != nil || !ok {
					p.gByID.release()
					if err != nil && ctx.Err() == nil {
						s3Pause(ctx)
					}
					continue
				}
				p.send(ctx, p.gByID, msg)
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()
	for ctx.Err() == nil {
		id, ok := p.rot.next(p.cat)
		if !ok {
			p.idle(ctx)
			continue
		}
		if p.gByID.admit(ctx) != nil {
			return
		}
		select {
		case jobs <- id:
		case <-ctx.Done():
			p.gByID.release()
			return
		}
	}
}

// pairMessage builds the IDPair of id for topic: two distinct good images
// (the same twice when it has one), announced (Unix nanoseconds; 0 on the
// id stream) as its AnnouncedUnixNano. ok is false when id has no good
// image left (or left the catalog).
func (p *Producer) pairMessage(ctx context.Context, id uint64, rng *rand.Rand, topic string, announced int64) (kafka.Message, bool, error) {
	for {
		a, b, ok := p.cat.pair(id, rng)
		if !ok {
			return kafka.Message{}, false, nil
		}
		pa, ok, err := p.image(ctx, id, a)
		if err != nil {
			return kafka.Message{}, false, err
		}
		if !ok {
			continue // a is marked bad or gone: draw again
		}
		pb := pa
		if b != a {
			if pb, ok, err = p.image(ctx, id, b); err != nil {
				return kafka.Message{}, false, err
			}
			if !ok {
				continue
			}
		}
		v, err := schemas.EncodeIDPair(&ffcpb.IDPair{
			Id:       id,
			First:    &ffcpb.Image{Key: schemas.ImageKey(id, a), Png: pa},
			Second:   &ffcpb.Image{Key: schemas.ImageKey(id, b), Png: pb},
			Sequence: p.seqByID.Add(1),
			Source:   p.cfg.Source,
			// AnnouncedUnixNano: set on the fresh lane only.
			AnnouncedUnixNano: announced,
		})
		if err != nil {
			return kafka.Message{}, false, err
		}
		return kafka.Message{Topic: topic, Key: []byte(strconv.FormatUint(id, 10)), Value: v, Time: time.Now()}, true, nil
	}
}

// --- instance stream.

type instanceJob struct {
	id    uint64
	name  string
	epoch uint64
}

// runInstance emits the instance stream until ctx ends, epoch after
// epoch, with the same dispatcher/worker shape as runByID.
func (p *Producer) runInstance(ctx context.Context) {
	jobs := make(chan instanceJob)
	var wg sync.WaitGroup
	for range p.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				msg, ok, err := p.sampleMessage(ctx, j)
				if err != nil || !ok {
					p.gInst.release()
					if err != nil && ctx.Err() == nil {
						s3Pause(ctx)
					}
					continue
				}
				p.send(ctx, p.gInst, msg)
			}
		}()
	}
	defer func() { close(jobs); wg.Wait() }()
	ep := newEpochs(p.seed ^ 0x5eed)
	for ctx.Err() == nil {
		id, name, epoch, ok := ep.next(p.cat)
		if !ok {
			p.idle(ctx)
			continue
		}
		p.epoch.Store(epoch)
		if p.gInst.admit(ctx) != nil {
			return
		}
		select {
		case jobs <- instanceJob{id: id, name: name, epoch: epoch}:
		case <-ctx.Done():
			p.gInst.release()
			return
		}
	}
}

func (p *Producer) sampleMessage(ctx context.Context, j instanceJob) (kafka.Message, bool, error) {
	if !p.cat.inRotation(j.id) {
		return kafka.Message{}, false, nil // removed (or dead) since it was drawn
	}
	png, ok, err := p.image(ctx, j.id, j.name)
	if err != nil || !ok {
		return kafka.Message{}, false, err
	}
	key := schemas.ImageKey(j.id, j.name)
	v, err := schemas.EncodeSample(&ffcpb.Sample{
		Id:       j.id,
		ImageKey: key,
		ImagePng: png,
		Epoch:    j.epoch,
		Sequence: p.seqInst.Add(1),
		Source:   p.cfg.Source,
	})
	if err != nil {
		return kafka.Message{}, false, err
	}
	return kafka.Message{Topic: p.cfg.TopicInstance, Key: []byte(key), Value: v, Time: time.Now()}, true, nil
}
