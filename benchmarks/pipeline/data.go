package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/dataset/objstore"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// upload writes the images of synthetic identities [from, to) as
// ids/<idBase+i>/<k>.png with 8 workers and returns how many.
func (b *bench) upload(ctx context.Context, from, to int) (int, error) {
	type job struct{ i, k int }
	jobs := make(chan job)
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := b.putImage(ctx, j.i, j.k); err != nil {
					select {
					case errc <- err:
					default:
					}
					continue
				}
				n.Add(1)
			}
		}()
	}
	for i := from; i < to; i++ {
		for k := range b.gen.InstancesOf(uint64(i)) {
			jobs <- job{i, k}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return int(n.Load()), fmt.Errorf("upload: %w", err)
	default:
	}
	return int(n.Load()), nil
}

// putImage uploads image k of synthetic identity i.
func (b *bench) putImage(ctx context.Context, i, k int) error {
	png, err := b.png(i, k)
	if err != nil {
		return err
	}
	key := objstore.ImageKey(idBase+uint64(i), k)
	if _, err := b.mc.PutObject(ctx, b.bucket, key, bytes.NewReader(png), int64(len(png)),
		minio.PutObjectOptions{ContentType: "image/png", DisableContentSha256: true}); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// png renders image k of synthetic identity i as a 32×32 PNG.
func (b *bench) png(i, k int) ([]byte, error) {
	pix, err := b.gen.Image(uint64(i), k)
	if err != nil {
		return nil, fmt.Errorf("image %d/%d: %w", i, k, err)
	}
	png, err := objstore.EncodePNG(pix, 32)
	if err != nil {
		return nil, fmt.Errorf("encode image %d/%d: %w", i, k, err)
	}
	return png, nil
}

// fill writes n id pairs and n instances of the bucket's images (encoded
// with the schemas encoders, the wire format the trainer decodes) to the
// phase's topics, which it creates (the fresh lane too, left empty: the
// trainer waits for its three topics), as admin on the secure stack. It
// returns the messages written and the time the writes took.
func (b *bench) fill(ctx context.Context, t phaseNames, n int) (int, time.Duration, error) {
	cl := &kafka.Client{Addr: kafka.TCP(b.ep.brokers...), Timeout: 30 * time.Second, Transport: b.roles.admin}
	var topics []kafka.TopicConfig
	for _, name := range []string{t.byID, t.instance, t.fresh} {
		topics = append(topics, kafka.TopicConfig{Topic: name, NumPartitions: b.o.partitions, ReplicationFactor: 1})
	}
	if _, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics}); err != nil {
		return 0, 0, fmt.Errorf("create topics: %w", err)
	}
	pairs, inst, err := b.fillMessages(n)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for k, job := range []struct {
		topic string
		msgs  []kafka.Message
	}{{t.byID, pairs}, {t.instance, inst}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &kafka.Writer{Addr: kafka.TCP(b.ep.brokers...), Topic: job.topic, Balancer: &kafka.Murmur2Balancer{},
				RequiredAcks: kafka.RequireAll, BatchSize: 1000, BatchTimeout: 5 * time.Millisecond, Transport: b.roles.admin}
			for i := 0; i < len(job.msgs) && errs[k] == nil; i += 5000 {
				errs[k] = compact(w.WriteMessages(ctx, job.msgs[i:min(i+5000, len(job.msgs))]...))
			}
			errs[k] = errors.Join(errs[k], w.Close())
			if errs[k] != nil {
				errs[k] = fmt.Errorf("write %s: %w", job.topic, errs[k])
			}
		}()
	}
	wg.Wait()
	return 2 * n, time.Since(t0), errors.Join(errs...)
}

// fillMessages builds n id pairs and n instances over the first (at most
// 200) identities, each PNG encoded once.
func (b *bench) fillMessages(n int) (pairs, inst []kafka.Message, err error) {
	ids := min(b.o.ids, 200)
	pngs := make([][][]byte, ids)
	for i := range ids {
		for k := range b.gen.InstancesOf(uint64(i)) {
			png, err := b.png(i, k)
			if err != nil {
				return nil, nil, err
			}
			pngs[i] = append(pngs[i], png)
		}
	}
	pairs, inst = make([]kafka.Message, 0, n), make([]kafka.Message, 0, n)
	for j := range n {
		i := j % ids
		id := idBase + uint64(i)
		imgs := pngs[i]
		a, c := j%len(imgs), (j+1)%len(imgs)
		v, err := schemas.EncodeIDPair(&ffcpb.IDPair{Id: id, Sequence: uint64(j), Source: "bench-fill",
			First:  &ffcpb.Image{Key: objstore.ImageKey(id, a), Png: imgs[a]},
			Second: &ffcpb.Image{Key: objstore.ImageKey(id, c), Png: imgs[c]}})
		if err != nil {
			return nil, nil, fmt.Errorf("encode id pair: %w", err)
		}
		pairs = append(pairs, kafka.Message{Key: []byte(strconv.FormatUint(id, 10)), Value: v})
		key := objstore.ImageKey(id, a)
		v, err = schemas.EncodeSample(&ffcpb.Sample{Id: id, ImageKey: key, ImagePng: imgs[a], Sequence: uint64(j), Source: "bench-fill"})
		if err != nil {
			return nil, nil, fmt.Errorf("encode sample: %w", err)
		}
		inst = append(inst, kafka.Message{Key: []byte(key), Value: v})
	}
	return pairs, inst, nil
}

// compact shortens kafka-go's per-message write errors to a count and
// the first.
func compact(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("%d of %d messages not written, e.g.: %w", we.Count(), len(we), e)
			}
		}
	}
	return err
}
