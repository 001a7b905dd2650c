package objstore

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/synth"
)

func fakeS3(t *testing.T) S3Options {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithoutVersioning()).Server())
	t.Cleanup(srv.Close)
	return S3Options{
		Endpoint:  strings.TrimPrefix(srv.URL, "http://"),
		AccessKey: "test", SecretKey: "test-secret",
		Bucket: "ffc-data", Parallel: 4,
	}
}

func sampleSet(t *testing.T, ids uint64) string {
	t.Helper()
	g, err := synth.New(synth.Options{Seed: 3, IDs: 100_000, Alpha: 2, Min: 1, Max: 8})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := synth.WriteSample(context.Background(), g, dir, synth.SampleOptions{IDs: ids, OpensetFrac: 0.1, HeldoutFrac: 0.2}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUploadResumableAndReadable(t *testing.T) {
	ctx := context.Background()
	o := fakeS3(t)
	dir := sampleSet(t, 60)
	r, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	res, err := Upload(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first upload: %+v", res)
	if res.Objects != r.Len()+1 || res.Uploaded != res.Objects || res.Skipped != 0 {
		t.Fatalf("first upload %+v: want all %d objects uploaded", res, r.Len()+1)
	}

	// Everything reads back as written.
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < r.Len(); i += 7 {
		want, m, err := r.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		key := ImageKey(mustID(t, r.Classes()[m.Class]), m.Source)
		obj, err := c.GetObject(ctx, o.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(obj)
		obj.Close()
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		g, ok := img.(*image.Gray)
		if !ok || !bytes.Equal(g.Pix, want) {
			t.Fatalf("%s: image read back differs", key)
		}
	}
	obj, err := c.GetObject(ctx, o.Bucket, ManifestKey, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(filepath.Join(dir, dataset.ManifestFile)); !bytes.Equal(got, want) {
		t.Fatal("manifest read back differs")
	}

	// A second run sends nothing.
	res, err = Upload(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 0 || res.Skipped != res.Objects {
		t.Fatalf("second upload %+v: want nothing uploaded", res)
	}

	// A missing object and a changed one are sent again, nothing else.
	_, m, _ := r.Image(3)
	if err := c.RemoveObject(ctx, o.Bucket, ImageKey(mustID(t, r.Classes()[m.Class]), m.Source), minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	_, m, _ = r.Image(5)
	junk := []byte("not a png")
	if _, err := c.PutObject(ctx, o.Bucket, ImageKey(mustID(t, r.Classes()[m.Class]), m.Source), bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
		t.Fatal(err)
	}
	res, err = Upload(ctx, dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 2 {
		t.Fatalf("third upload %+v: want 2 objects uploaded", res)
	}
}

func TestUploadBadInput(t *testing.T) {
	ctx := context.Background()
	o := fakeS3(t)
	cases := []struct {
		name string
		dir  string
		o    func(S3Options) S3Options
		want string
	}{
		{"not a file set", t.TempDir(), func(o S3Options) S3Options { return o }, "manifest"},
		{"no bucket", sampleSet(t, 3), func(o S3Options) S3Options { o.Bucket = ""; return o }, "bucket"},
		{"scheme in endpoint", sampleSet(t, 3), func(o S3Options) S3Options { o.Endpoint = "http://" + o.Endpoint; return o }, "scheme"},
	}
	for _, c := range cases {
		_, err := Upload(ctx, c.dir, c.o(o))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}

// TestUploadThroughput measures the upload rate to the in-process S3 over
// a synthetic set of 3,000 IDs, or over the file set in $UPLOAD_BENCH_DIR
// (UPLOAD_BENCH=1; a measurement, not a check).
func TestUploadThroughput(t *testing.T) {
	if os.Getenv("UPLOAD_BENCH") == "" {
		t.Skip("set UPLOAD_BENCH=1 to measure upload throughput")
	}
	o := fakeS3(t)
	o.Parallel = 8
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	dir := os.Getenv("UPLOAD_BENCH_DIR")
	if dir == "" {
		dir = sampleSet(t, 3000)
	}
	res, err := Upload(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("uploaded %d objects, %.1f MB in %v: %.0f objects/s, %.2f MB/s", res.Uploaded, float64(res.Bytes)/1e6, res.Elapsed, res.ObjectsPerSec, res.MBPerSec)
	res, err = Upload(context.Background(), dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resume pass: skipped %d in %v", res.Skipped, res.Elapsed)
}

func mustID(t *testing.T, c dataset.Class) uint64 {
	t.Helper()
	id, err := c.StorageID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestUploadSelect uploads only the selected images.
func TestUploadSelect(t *testing.T) {
	o, dir := fakeS3(t), sampleSet(t, 60)
	r, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	o.Select = func(m dataset.Meta) bool { return m.Split == dataset.SplitTrain }
	if _, err := Upload(context.Background(), dir, o); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{ManifestKey: true}
	for i := 0; i < r.Len(); i++ {
		if m := r.Meta(i); m.Split == dataset.SplitTrain {
			want[ImageKey(mustID(t, r.Classes()[m.Class]), m.Source)] = true
		}
	}
	got := 0
	for obj := range c.ListObjects(context.Background(), o.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		if !want[obj.Key] {
			t.Errorf("%s uploaded but not selected", obj.Key)
		}
		got++
	}
	if got != len(want) || len(want) < 3 || len(want) == r.Len()+1 {
		t.Errorf("uploaded %d objects, want the %d selected (of %d images)", got, len(want), r.Len())
	}
}
