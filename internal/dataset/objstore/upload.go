// Package objstore owns the object-storage layout of a data set and its
// upload to S3-compatible storage:
//
//	<bucket>/ids/<class id>/<source>.png   one PNG per image (source: the
//	                                      font for glyph sets, the instance
//	                                      for synthetic sets, 4+ digits)
//	<bucket>/manifest.json                 the file set's manifest, written
//	                                      last, so its presence means the
//	                                      upload is complete
//
// Upload is resumable: it lists the bucket once and skips objects already
// there with the same size and ETag (the MD5 of the content).
//
// This package must not import the pipeline packages (producers, trainers,
// centers, kernels).
package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/schemas"
)

// S3Options says where to upload.
type S3Options struct {
	// Endpoint is host:port, without a scheme.
	Endpoint             string
	AccessKey, SecretKey string
	Bucket               string
	// Secure selects HTTPS.
	Secure bool
	// Parallel uploads; default 8.
	Parallel int
	Logger   *slog.Logger
	Progress func(dataset.Progress)
	// Select, when set, chooses the images to upload by their labels (class,
	// source, split); nil uploads all. The demo uploads only train-split
	// images this way, and holds classes back to stream them in later.
	Select func(dataset.Meta) bool
}

// Result reports an upload.
type Result struct {
	// Objects in the data set (images and manifest), of which Uploaded
	// were sent and Skipped were already there.
	Objects, Uploaded, Skipped int
	// Bytes sent.
	Bytes   int64
	Elapsed time.Duration
	// Throughput of what was sent.
	ObjectsPerSec, MBPerSec float64
}

// ImageKey is the object name of image source of the class with storage
// ID id (dataset.Class.StorageID): ids/<id>/<source, 4 digits>.png, the
// layout schemas.ParseImageKey and the producers read.
func ImageKey(id uint64, source int) string {
	return schemas.ImageKey(id, fmt.Sprintf("%04d", source))
}

// ManifestKey is the object name of the manifest.
const ManifestKey = "manifest.json"

// newPNGEncoder returns an encoder that reuses its compressor state
// between images (a fresh zlib writer costs ten times the encoding of a
// 32×32 image). It is safe for concurrent use.
func newPNGEncoder() *png.Encoder {
	return &png.Encoder{CompressionLevel: png.BestCompression, BufferPool: &pngPool{}}
}

type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}
func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

// EncodePNG encodes a size×size grayscale image as PNG, as Upload does.
// The encoding is deterministic, which resuming relies on.
func EncodePNG(img []byte, size int) ([]byte, error) {
	return encodePNG(newPNGEncoder(), img, size)
}

func encodePNG(enc *png.Encoder, img []byte, size int) ([]byte, error) {
	var b bytes.Buffer
	if err := enc.Encode(&b, dataset.Gray(img, size)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// NewClient connects to the storage described by o.
func NewClient(o S3Options) (*minio.Client, error) {
	if o.Endpoint == "" || o.Bucket == "" {
		return nil, errors.New("objstore: endpoint and bucket are required")
	}
	if strings.Contains(o.Endpoint, "://") {
		return nil, fmt.Errorf("objstore: endpoint %q: give host:port without a scheme (use Secure for HTTPS)", o.Endpoint)
	}
	c, err := minio.New(o.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""), Secure: o.Secure})
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	return c, nil
}

type remote struct {
	size int64
	etag string
}

// Upload uploads the file set in dir. It creates the bucket if needed,
// lists it once, uploads with o.Parallel workers what is missing or
// different, and writes the manifest last.
func Upload(ctx context.Context, dir string, o S3Options) (*Result, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	r, err := dataset.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	defer r.Close()
	manifest, err := os.ReadFile(filepath.Join(dir, dataset.ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("objstore: %w", err)
	}
	c, err := NewClient(o)
	if err != nil {
		return nil, err
	}
	ok, err := c.BucketExists(ctx, o.Bucket)
	if err != nil {
		return nil, fmt.Errorf("objstore: bucket %s: %w", o.Bucket, err)
	}
	if !ok {
		if err := c.MakeBucket(ctx, o.Bucket, minio.MakeBucketOptions{}); err != nil {
			return nil, fmt.Errorf("objstore: create bucket %s: %w", o.Bucket, err)
		}
	}
	listStart := time.Now()
	have := map[string]remote{}
	for obj := range c.ListObjects(ctx, o.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("objstore: list %s: %w", o.Bucket, obj.Err)
		}
		have[obj.Key] = remote{obj.Size, strings.ToLower(strings.Trim(obj.ETag, `"`))}
	}
	log.Info("uploading", "dir", dir, "images", r.Len(), "bucket", o.Bucket, "present", len(have),
		"listed_in", time.Since(listStart).Round(time.Millisecond), "parallel", o.Parallel)

	res := &Result{Objects: r.Len() + 1}
	start := time.Now()
	var done, uploaded, sent atomic.Int64
	put := func(ctx context.Context, key string, body []byte, contentType string) error {
		sum := md5.Sum(body)
		if h, ok := have[key]; ok && h.size == int64(len(body)) && h.etag == hex.EncodeToString(sum[:]) {
			return nil
		}
		_, err := c.PutObject(ctx, o.Bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{
			ContentType: contentType,
			// gofakes3 (the embedded S3) corrupts streaming-signed
			// uploads; with the size known, a plain signed PUT is as fast.
			DisableContentSha256: true,
		})
		if err != nil {
			return fmt.Errorf("objstore: put %s: %w", key, err)
		}
		uploaded.Add(1)
		sent.Add(int64(len(body)))
		return nil
	}
	report := func(final bool) {
		if o.Progress != nil {
			o.Progress(dataset.Progress{Stage: "upload", Done: done.Load(), Total: int64(res.Objects), Bytes: sent.Load(), Elapsed: time.Since(start), Final: final})
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	classes := r.Classes()
	storageIDs := make([]uint64, len(classes))
	for i, c := range classes {
		if storageIDs[i], err = c.StorageID(); err != nil {
			return nil, fmt.Errorf("objstore: %w", err)
		}
	}
	enc := newPNGEncoder()
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img := make([]byte, r.ImageSize()*r.ImageSize())
			for i := range next {
				m, err := r.ReadImage(i, img)
				if err == nil {
					var body []byte
					if body, err = encodePNG(enc, img, r.ImageSize()); err == nil {
						err = put(ctx, ImageKey(storageIDs[m.Class], m.Source), body, "image/png")
					}
				}
				if err != nil {
					cancel(err)
					return
				}
				done.Add(1)
				report(false)
			}
		}()
	}
feed:
	for i := range r.Len() {
		if o.Select != nil && !o.Select(r.Meta(i)) {
			done.Add(1)
			continue
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	if err := put(ctx, ManifestKey, manifest, "application/json"); err != nil {
		return nil, err
	}
	done.Add(1)
	report(true)

	res.Elapsed = time.Since(start)
	res.Uploaded = int(uploaded.Load())
	res.Skipped = res.Objects - res.Uploaded
	res.Bytes = sent.Load()
	if s := res.Elapsed.Seconds(); s > 0 {
		res.ObjectsPerSec = float64(res.Uploaded) / s
		res.MBPerSec = float64(res.Bytes) / 1e6 / s
	}
	log.Info("uploaded", "bucket", o.Bucket, "uploaded", res.Uploaded, "skipped", res.Skipped,
		"MB", float64(res.Bytes)/1e6, "objects_per_s", res.ObjectsPerSec, "MB_per_s", res.MBPerSec, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}
