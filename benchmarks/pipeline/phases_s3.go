package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/internal/dataset/objstore"
)

// phaseS3Get: concurrent GETs of the bucket's images for 5 s (or
// --duration when shorter), with as many workers as the producer's two
// streams have.
func (b *bench) phaseS3Get(ctx context.Context) (result, error) {
	var keys []string
	for i := range b.o.ids {
		for k := range b.gen.InstancesOf(uint64(i)) {
			keys = append(keys, objstore.ImageKey(idBase+uint64(i), k))
		}
	}
	workers := 2 * b.o.concurrency
	d := min(5*time.Second, b.o.duration)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var n, bytesRead atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += workers {
				size, err := b.get(ctx, keys[(i*7919)%len(keys)])
				if err != nil {
					if ctx.Err() == nil {
						firstErr.CompareAndSwap(nil, &err)
					}
					return
				}
				bytesRead.Add(size)
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	if e := firstErr.Load(); e != nil {
		return result{}, *e
	}
	rate := float64(n.Load()) / el.Seconds()
	b.rep.printf("### Object storage: GETs of the images (%d workers)\n\n", workers)
	b.rep.printf("%.0f GETs/s (%d in %s, %.0f bytes each on average). The producer GETs every image of every message: at this rate it could emit at most %.0f samples/s (id pairs and instances in equal numbers: 3 GETs per 2 samples).\n\n",
		rate, n.Load(), el.Round(time.Millisecond), float64(bytesRead.Load())/float64(max(n.Load(), 1)), rate/1.5)
	return result{getsPerSec: rate, note: fmt.Sprintf("%.0f GETs/s with %d workers → at most %.0f samples/s from the producer", rate, workers, rate/1.5)}, nil
}

// get reads the object key whole and returns its size.
func (b *bench) get(ctx context.Context, key string) (int64, error) {
	obj, err := b.mc.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	defer obj.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(obj); err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	return int64(buf.Len()), nil
}
