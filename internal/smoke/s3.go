package smoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Target names an S3 endpoint and its credentials.
type S3Target struct {
	Endpoint             string // host:port
	AccessKey, SecretKey string
	Secure               bool
}

// S3Options tunes the S3 check.
type S3Options struct {
	// Objects to put; default 25.
	Objects int
	// PageSize is the max-keys of each list request; default 7, so listing
	// the objects takes several pages.
	PageSize int
}

// S3Report is what the S3 check observed.
type S3Report struct {
	Bucket    string
	Put, Got  int
	Listed    int
	ListPages int // list requests the client sent for one full listing
	Deleted   int
}

// String renders the report on one line.
func (r S3Report) String() string {
	return fmt.Sprintf("bucket %s: put %d, listed %d in %d pages, got %d, deleted %d",
		r.Bucket, r.Put, r.Listed, r.ListPages, r.Got, r.Deleted)
}

// countingTransport counts the list requests a minio-go client sends.
type countingTransport struct {
	base  http.RoundTripper
	lists atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Query().Has("list-type") {
		t.lists.Add(1)
	}
	return t.base.RoundTrip(req)
}

// S3 checks an S3 server with minio-go: make a bucket, put objects, list
// them in several pages, get each back byte for byte, delete one and then
// the rest in bulk, and remove the bucket.
func S3(ctx context.Context, target S3Target, opts S3Options) (rep S3Report, err error) {
	if opts.Objects == 0 {
		opts.Objects = 25
	}
	if opts.PageSize == 0 {
		opts.PageSize = 7
	}
	tr := &countingTransport{base: http.DefaultTransport}
	mc, err := minio.New(target.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(target.AccessKey, target.SecretKey, ""),
		Secure:    target.Secure,
		Transport: tr,
	})
	if err != nil {
		return rep, fmt.Errorf("s3 check: client for %s: %w", target.Endpoint, err)
	}
	rep.Bucket = "ffc-smoke-" + uniqueSuffix()
	if err := mc.MakeBucket(ctx, rep.Bucket, minio.MakeBucketOptions{}); err != nil {
		return rep, fmt.Errorf("s3 check: make bucket %s at %s: %w", rep.Bucket, target.Endpoint, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		if derr := mc.RemoveBucketWithOptions(dctx, rep.Bucket, minio.RemoveBucketOptions{ForceDelete: err != nil}); derr != nil {
			err = errors.Join(err, fmt.Errorf("s3 check: remove bucket %s: %w", rep.Bucket, derr))
		}
	}()

	body := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "object %d;", i), 10+i) }
	key := func(i int) string { return fmt.Sprintf("ids/%04d/img.bin", i) }
	for i := 0; i < opts.Objects; i++ {
		b := body(i)
		if _, err := mc.PutObject(ctx, rep.Bucket, key(i), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{
			ContentType:          "application/octet-stream",
			DisableContentSha256: true,
		}); err != nil {
			return rep, fmt.Errorf("s3 check: put %s: %w", key(i), err)
		}
		rep.Put++
	}

	before := tr.lists.Load()
	var keys []string
	for obj := range mc.ListObjects(ctx, rep.Bucket, minio.ListObjectsOptions{Prefix: "ids/", Recursive: true, MaxKeys: opts.PageSize}) {
		if obj.Err != nil {
			return rep, fmt.Errorf("s3 check: list %s after %d objects: %w", rep.Bucket, len(keys), obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	rep.Listed, rep.ListPages = len(keys), int(tr.lists.Load()-before)
	if rep.Listed != opts.Objects {
		return rep, fmt.Errorf("s3 check: listed %d objects, put %d", rep.Listed, opts.Objects)
	}
	for i, k := range keys {
		if k != key(i) {
			return rep, fmt.Errorf("s3 check: listing item %d is %q, want %q (lexical order)", i, k, key(i))
		}
	}
	if wantPages := (opts.Objects + opts.PageSize - 1) / opts.PageSize; rep.ListPages < wantPages {
		return rep, fmt.Errorf("s3 check: listing took %d requests, want at least %d pages of %d", rep.ListPages, wantPages, opts.PageSize)
	}

	for i := 0; i < opts.Objects; i++ {
		obj, err := mc.GetObject(ctx, rep.Bucket, key(i), minio.GetObjectOptions{})
		if err != nil {
			return rep, fmt.Errorf("s3 check: get %s: %w", key(i), err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			return rep, fmt.Errorf("s3 check: read %s: %w", key(i), err)
		}
		if !bytes.Equal(got, body(i)) {
			return rep, fmt.Errorf("s3 check: %s came back as %d bytes that differ from the %d put", key(i), len(got), len(body(i)))
		}
		rep.Got++
	}

	if err := mc.RemoveObject(ctx, rep.Bucket, key(0), minio.RemoveObjectOptions{}); err != nil {
		return rep, fmt.Errorf("s3 check: delete %s: %w", key(0), err)
	}
	rep.Deleted++
	if _, err := mc.StatObject(ctx, rep.Bucket, key(0), minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return rep, fmt.Errorf("s3 check: stat of deleted %s: %v, want NoSuchKey", key(0), err)
	}
	toDelete := make(chan minio.ObjectInfo, opts.Objects)
	for i := 1; i < opts.Objects; i++ {
		toDelete <- minio.ObjectInfo{Key: key(i)}
	}
	close(toDelete)
	for rerr := range mc.RemoveObjects(ctx, rep.Bucket, toDelete, minio.RemoveObjectsOptions{}) {
		return rep, fmt.Errorf("s3 check: bulk delete %s: %w", rerr.ObjectName, rerr.Err)
	}
	rep.Deleted += opts.Objects - 1
	for obj := range mc.ListObjects(ctx, rep.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return rep, fmt.Errorf("s3 check: list after delete: %w", obj.Err)
		}
		return rep, fmt.Errorf("s3 check: %s still listed after delete", obj.Key)
	}
	return rep, nil
}
