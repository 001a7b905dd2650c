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
	// A transport of its own, so that its connections end with the check.
	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	tr := &countingTransport{base: base}
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

	c := s3Check{mc: mc, tr: tr, opts: opts, rep: &rep}
	for _, step := range []func(context.Context) error{c.put, c.list, c.get, c.remove} {
		if err := step(ctx); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// s3Check runs the steps of the S3 check against one bucket, counting into
// rep as it goes.
type s3Check struct {
	mc   *minio.Client
	tr   *countingTransport
	opts S3Options
	rep  *S3Report
}

// s3Body is the content of the i-th test object.
func s3Body(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "object %d;", i), 10+i) }

// s3Key is the key of the i-th test object; keys sort in i order.
func s3Key(i int) string { return fmt.Sprintf("ids/%04d/img.bin", i) }

// put uploads the test objects.
func (c s3Check) put(ctx context.Context) error {
	for i := 0; i < c.opts.Objects; i++ {
		b := s3Body(i)
		if _, err := c.mc.PutObject(ctx, c.rep.Bucket, s3Key(i), bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{
			ContentType:          "application/octet-stream",
			DisableContentSha256: true,
		}); err != nil {
			return fmt.Errorf("s3 check: put %s: %w", s3Key(i), err)
		}
		c.rep.Put++
	}
	return nil
}

// list lists the objects in pages of opts.PageSize and checks that all come
// back in lexical order, in as many requests as the pages need.
func (c s3Check) list(ctx context.Context) error {
	before := c.tr.lists.Load()
	var keys []string
	for obj := range c.mc.ListObjects(ctx, c.rep.Bucket, minio.ListObjectsOptions{Prefix: "ids/", Recursive: true, MaxKeys: c.opts.PageSize}) {
		if obj.Err != nil {
			return fmt.Errorf("s3 check: list %s after %d objects: %w", c.rep.Bucket, len(keys), obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	c.rep.Listed, c.rep.ListPages = len(keys), int(c.tr.lists.Load()-before)
	if c.rep.Listed != c.opts.Objects {
		return fmt.Errorf("s3 check: listed %d objects, put %d", c.rep.Listed, c.opts.Objects)
	}
	for i, k := range keys {
		if k != s3Key(i) {
			return fmt.Errorf("s3 check: listing item %d is %q, want %q (lexical order)", i, k, s3Key(i))
		}
	}
	if wantPages := (c.opts.Objects + c.opts.PageSize - 1) / c.opts.PageSize; c.rep.ListPages < wantPages {
		return fmt.Errorf("s3 check: listing took %d requests, want at least %d pages of %d", c.rep.ListPages, wantPages, c.opts.PageSize)
	}
	return nil
}

// get reads every object back and compares it with what was put.
func (c s3Check) get(ctx context.Context) error {
	for i := 0; i < c.opts.Objects; i++ {
		obj, err := c.mc.GetObject(ctx, c.rep.Bucket, s3Key(i), minio.GetObjectOptions{})
		if err != nil {
			return fmt.Errorf("s3 check: get %s: %w", s3Key(i), err)
		}
		got, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			return fmt.Errorf("s3 check: read %s: %w", s3Key(i), err)
		}
		if !bytes.Equal(got, s3Body(i)) {
			return fmt.Errorf("s3 check: %s came back as %d bytes that differ from the %d put", s3Key(i), len(got), len(s3Body(i)))
		}
		c.rep.Got++
	}
	return nil
}

// remove deletes the first object alone and checks it is gone, deletes the
// rest in bulk, and checks that the bucket lists empty.
func (c s3Check) remove(ctx context.Context) error {
	if err := c.mc.RemoveObject(ctx, c.rep.Bucket, s3Key(0), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("s3 check: delete %s: %w", s3Key(0), err)
	}
	c.rep.Deleted++
	if _, err := c.mc.StatObject(ctx, c.rep.Bucket, s3Key(0), minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return fmt.Errorf("s3 check: stat of deleted %s: %v, want NoSuchKey", s3Key(0), err)
	}
	toDelete := make(chan minio.ObjectInfo, c.opts.Objects)
	for i := 1; i < c.opts.Objects; i++ {
		toDelete <- minio.ObjectInfo{Key: s3Key(i)}
	}
	close(toDelete)
	for rerr := range c.mc.RemoveObjects(ctx, c.rep.Bucket, toDelete, minio.RemoveObjectsOptions{}) {
		return fmt.Errorf("s3 check: bulk delete %s: %w", rerr.ObjectName, rerr.Err)
	}
	c.rep.Deleted += c.opts.Objects - 1
	for obj := range c.mc.ListObjects(ctx, c.rep.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("s3 check: list after delete: %w", obj.Err)
		}
		return fmt.Errorf("s3 check: %s still listed after delete", obj.Key)
	}
	return nil
}
