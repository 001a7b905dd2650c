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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/errgroup"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/schemas"
)

// S3Options says where to upload.
type S3Options struct {
	// Endpoint is host:port, without a scheme.
	Endpoint             string
	AccessKey, SecretKey string
	Bucket               string
	// Secure selects HTTPS; CAFile, when set, is the PEM file of the CA
	// that signs the server's certificate (and implies Secure).
	Secure bool
	CAFile string
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
	c, _, err := newClient(o)
	return c, err
}

// newClient connects with a transport of its own, which the caller
// releases with CloseIdleConnections when done.
func newClient(o S3Options) (*minio.Client, *http.Transport, error) {
	if o.Endpoint == "" || o.Bucket == "" {
		return nil, nil, errors.New("objstore: endpoint and bucket are required")
	}
	if strings.Contains(o.Endpoint, "://") {
		return nil, nil, fmt.Errorf("objstore: endpoint %q: give host:port without a scheme (use Secure for HTTPS)", o.Endpoint)
	}
	sec := security.S3{TLS: security.TLS{Enabled: o.Secure, CAFile: o.CAFile}}
	tr, err := sec.Transport()
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: %w", err)
	}
	c, err := minio.New(o.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""), Secure: sec.TLS.On(), Transport: tr})
	if err != nil {
		return nil, nil, fmt.Errorf("objstore: %w", err)
	}
	return c, tr, nil
}

// remote is what the listing says of an object already in the bucket.
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
	c, tr, err := newClient(o)
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	if err := EnsureBucket(ctx, c, o.Bucket); err != nil {
		return nil, err
	}
	listStart := time.Now()
	have, err := listRemote(ctx, c, o.Bucket)
	if err != nil {
		return nil, err
	}
	log.Info("uploading", "dir", dir, "images", r.Len(), "bucket", o.Bucket, "present", len(have),
		"listed_in", time.Since(listStart).Round(time.Millisecond), "parallel", o.Parallel)

	res := &Result{Objects: r.Len() + 1}
	u := &uploader{c: c, bucket: o.Bucket, have: have, progress: o.Progress, total: int64(res.Objects), start: time.Now()}
	storageIDs, err := classStorageIDs(r.Classes())
	if err != nil {
		return nil, err
	}
	if err := u.putImages(ctx, r, storageIDs, o.Parallel, o.Select); err != nil {
		return nil, err
	}
	if err := u.put(ctx, ManifestKey, manifest, "application/json"); err != nil {
		return nil, err
	}
	u.done.Add(1)
	u.report(true)

	res.Elapsed = time.Since(u.start)
	res.Uploaded = int(u.uploaded.Load())
	res.Skipped = res.Objects - res.Uploaded
	res.Bytes = u.sent.Load()
	if s := res.Elapsed.Seconds(); s > 0 {
		res.ObjectsPerSec = float64(res.Uploaded) / s
		res.MBPerSec = float64(res.Bytes) / 1e6 / s
	}
	log.Info("uploaded", "bucket", o.Bucket, "uploaded", res.Uploaded, "skipped", res.Skipped,
		"MB", float64(res.Bytes)/1e6, "objects_per_s", res.ObjectsPerSec, "MB_per_s", res.MBPerSec, "elapsed", res.Elapsed.Round(time.Millisecond))
	return res, nil
}

// EnsureBucket creates the bucket if it does not exist.
func EnsureBucket(ctx context.Context, c *minio.Client, bucket string) error {
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("objstore: bucket %s: %w", bucket, err)
	}
	if !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			return fmt.Errorf("objstore: create bucket %s: %w", bucket, err)
		}
	}
	return nil
}

// listRemote lists the whole bucket once: the size and ETag of each key.
func listRemote(ctx context.Context, c *minio.Client, bucket string) (map[string]remote, error) {
	have := map[string]remote{}
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("objstore: list %s: %w", bucket, obj.Err)
		}
		have[obj.Key] = remote{obj.Size, strings.ToLower(strings.Trim(obj.ETag, `"`))}
	}
	return have, nil
}

// classStorageIDs returns the storage ID of each class, by label.
func classStorageIDs(classes []dataset.Class) ([]uint64, error) {
	ids := make([]uint64, len(classes))
	for i, c := range classes {
		var err error
		if ids[i], err = c.StorageID(); err != nil {
			return nil, fmt.Errorf("objstore: %w", err)
		}
	}
	return ids, nil
}

// uploader puts objects into one bucket, skipping those the listing shows
// already there, and counts and reports the progress. Its methods are safe
// for concurrent use.
type uploader struct {
	c        *minio.Client
	bucket   string
	have     map[string]remote // read-only once uploading starts
	progress func(dataset.Progress)
	total    int64 // objects in the data set
	start    time.Time

	done     atomic.Int64 // objects handled: sent, skipped or not selected
	uploaded atomic.Int64 // objects sent
	sent     atomic.Int64 // bytes sent
}

// put uploads body as key unless the bucket already holds it with the same
// size and MD5.
func (u *uploader) put(ctx context.Context, key string, body []byte, contentType string) error {
	sum := md5.Sum(body)
	if h, ok := u.have[key]; ok && h.size == int64(len(body)) && h.etag == hex.EncodeToString(sum[:]) {
		return nil
	}
	_, err := u.c.PutObject(ctx, u.bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{
		ContentType: contentType,
		// gofakes3 (the embedded S3) corrupts streaming-signed
		// uploads; with the size known, a plain signed PUT is as fast.
		DisableContentSha256: true,
	})
	if err != nil {
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	u.uploaded.Add(1)
	u.sent.Add(int64(len(body)))
	return nil
}

// report sends the progress so far, if there is a Progress callback.
func (u *uploader) report(final bool) {
	if u.progress != nil {
		u.progress(dataset.Progress{Stage: "upload", Done: u.done.Load(), Total: u.total, Bytes: u.sent.Load(), Elapsed: time.Since(u.start), Final: final})
	}
}

// putImages encodes and puts the images of r that sel chooses (all when
// sel is nil) with parallel workers, and stops at the first error.
func (u *uploader) putImages(ctx context.Context, r *dataset.Reader, storageIDs []uint64, parallel int, sel func(dataset.Meta) bool) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, parallel))
	enc := newPNGEncoder()
	bufs := sync.Pool{New: func() any { b := make([]byte, r.ImageSize()*r.ImageSize()); return &b }}
	for i := range r.Len() {
		if sel != nil && !sel(r.Meta(i)) {
			u.done.Add(1)
			continue
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			img := bufs.Get().(*[]byte)
			defer bufs.Put(img)
			if err := u.putImage(gctx, r, enc, *img, i, storageIDs); err != nil {
				return err
			}
			u.done.Add(1)
			u.report(false)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// putImage reads image i of r into img, encodes it as PNG and puts it
// under its ImageKey.
func (u *uploader) putImage(ctx context.Context, r *dataset.Reader, enc *png.Encoder, img []byte, i int, storageIDs []uint64) error {
	m, err := r.ReadImage(i, img)
	if err != nil {
		return err
	}
	body, err := encodePNG(enc, img, r.ImageSize())
	if err != nil {
		return err
	}
	return u.put(ctx, ImageKey(storageIDs[m.Class], m.Source), body, "image/png")
}
