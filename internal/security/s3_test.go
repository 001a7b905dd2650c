package security_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// testS3Privileges (MinIO): the uploader writes ids/, the producer reads
// ids/ and nothing of checkpoints/, the trainer reads ids/ and writes
// checkpoints/; nobody but the uploader writes ids/.
func testS3Privileges(t *testing.T, tg target) {
	ctx := testutil.Context(t)
	bucket := "ffc-sec-" + tg.sfx
	up := s3Client(t, tg, s3Creds(t, tg, security.RoleUploader))
	prod := s3Client(t, tg, s3Creds(t, tg, security.RoleProducer))
	train := s3Client(t, tg, s3Creds(t, tg, security.RoleTrainer))
	put := func(c *minio.Client, key string) error {
		_, err := c.PutObject(ctx, bucket, key, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
		return err
	}
	get := func(c *minio.Client, key string) error {
		o, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer o.Close()
		_, err = io.ReadAll(o)
		return err
	}
	if err := up.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("uploader creating the bucket: %v", err)
	}
	if err := put(up, "ids/1/a.png"); err != nil {
		t.Fatalf("uploader writing ids/: %v", err)
	}
	list := func(c *minio.Client, prefix string) error {
		for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				return o.Err
			}
		}
		return nil
	}
	for _, c := range []*minio.Client{prod, train} {
		if ok, err := c.BucketExists(ctx, bucket); !ok || err != nil {
			t.Errorf("bucket check: %v, %v; want the bucket found", ok, err)
		}
	}
	for _, c := range []struct {
		who  string
		err  error
		want bool // allowed
	}{
		{"producer reads ids/", get(prod, "ids/1/a.png"), true},
		{"trainer reads ids/", get(train, "ids/1/a.png"), true},
		{"producer writes ids/", put(prod, "ids/1/b.png"), false},
		{"trainer writes ids/", put(train, "ids/1/b.png"), false},
		{"trainer writes checkpoints/", put(train, "checkpoints/m/1"), true},
		{"trainer reads checkpoints/", get(train, "checkpoints/m/1"), true},
		{"producer reads checkpoints/", get(prod, "checkpoints/m/1"), false},
		{"producer writes checkpoints/", put(prod, "checkpoints/m/2"), false},
		{"uploader reads checkpoints/", get(up, "checkpoints/m/1"), false},
		{"uploader lists the bucket", list(up, ""), true},
		{"producer lists ids/", list(prod, "ids/"), true},
		{"producer lists the bucket", list(prod, ""), false},
		{"producer lists checkpoints/", list(prod, "checkpoints/"), false},
		{"trainer lists checkpoints/", list(train, "checkpoints/"), true},
	} {
		if (c.err == nil) != c.want {
			t.Errorf("%s: err %v, want allowed=%v", c.who, c.err, c.want)
		}
	}
}
