package trainers

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/trainers/engine"
)

// TestCheckpointStoreRetries (fault 2): every object-storage call of the
// store is retried within its bound, and a failed prune does not fail
// Save. Before, the first failed call failed the checkpoint, and so
// stopped the trainer.
func TestCheckpointStoreRetries(t *testing.T) {
	part := engine.StatePart{Name: engine.ProbeFile,
		Save: func(w io.Writer) error { _, err := w.Write([]byte("state")); return err },
		Load: func(r io.Reader) error { _, err := io.ReadAll(r); return err }}
	off := Offsets{"t": {0: 7}}
	isManifestGet := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+manifestName)
	}
	cases := []struct {
		name     string
		fail     func(f *flakyS3) // set once step 1 is saved
		act      func(s *CheckpointStore) error
		wantErr  bool
		wantPrun int // prune errors reported
	}{
		{name: "two puts fail", fail: func(f *flakyS3) { f.failNext(2) },
			act: func(s *CheckpointStore) error {
				_, err := s.Save(testutil.Context(t), 2, []engine.StatePart{part}, off)
				return err
			}},
		{name: "a listing fails", fail: func(f *flakyS3) { f.failNext(1) },
			act: func(s *CheckpointStore) error { return latestIs(t, s, 1) }},
		{name: "two manifest gets fail", fail: func(f *flakyS3) {
			var n atomic.Int32
			f.failWhen(func(r *http.Request) bool { return isManifestGet(r) && n.Add(1) <= 2 })
		}, act: func(s *CheckpointStore) error { return latestIs(t, s, 1) }},
		{name: "every delete fails", fail: func(f *flakyS3) {
			f.failWhen(func(r *http.Request) bool { return r.Method == http.MethodDelete })
		}, act: func(s *CheckpointStore) error {
			_, err := s.Save(testutil.Context(t), 2, []engine.StatePart{part}, off)
			return err
		}, wantPrun: 1},
		{name: "storage down", fail: func(f *flakyS3) { f.failWhen(func(*http.Request) bool { return true }) },
			act: func(s *CheckpointStore) error {
				_, err := s.Save(testutil.Context(t), 2, []engine.StatePart{part}, off)
				return err
			}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := startFlakyS3(t)
			mc := f.client(t)
			if err := mc.MakeBucket(testutil.Context(t), "ckpt", minio.MakeBucketOptions{}); err != nil {
				t.Fatal(err)
			}
			var pruneErrs atomic.Int32
			s := &CheckpointStore{MC: mc, Bucket: "ckpt", Prefix: "checkpoints/m", Model: "m", Keep: 1,
				Retry:        Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Tries: 4},
				OnPruneError: func(error) { pruneErrs.Add(1) }}
			if _, err := s.Save(testutil.Context(t), 1, []engine.StatePart{part}, off); err != nil {
				t.Fatal(err)
			}
			c.fail(f)
			err := c.act(s)
			if (err != nil) != c.wantErr {
				t.Errorf("error %v, want error %v", err, c.wantErr)
			}
			if f.failed.Load() == 0 {
				t.Error("no request failed: the fault was not injected")
			}
			if n := pruneErrs.Load(); int(n) != c.wantPrun {
				t.Errorf("%d prune errors reported, want %d", n, c.wantPrun)
			}
		})
	}
}

// latestIs checks that the newest complete checkpoint of s is at step.
func latestIs(t *testing.T, s *CheckpointStore, step uint64) error {
	m, err := s.Latest(testutil.Context(t))
	if err != nil {
		return err
	}
	if m == nil || m.GetStep() != step {
		t.Errorf("latest checkpoint %v, want step %d", m, step)
	}
	return nil
}

// TestPruneRemovesIncomplete: a checkpoint left incomplete by a failed
// Save (parts without a manifest) is pruned with the complete ones older
// than those kept, and never chosen by Latest.
func TestPruneRemovesIncomplete(t *testing.T) {
	f := startFlakyS3(t)
	mc := f.client(t)
	ctx := testutil.Context(t)
	if err := mc.MakeBucket(ctx, "ckpt", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	part := engine.StatePart{Name: engine.ProbeFile, Save: func(w io.Writer) error { _, err := w.Write([]byte("state")); return err }}
	s := &CheckpointStore{MC: mc, Bucket: "ckpt", Prefix: "checkpoints/m", Model: "m", Keep: 1,
		Retry: Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Tries: 2}}
	// Step 2: the part is written, the manifest is not.
	f.failWhen(func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/"+manifestName)
	})
	if _, err := s.Save(ctx, 2, []engine.StatePart{part}, Offsets{}); err == nil {
		t.Fatal("Save without its manifest succeeded")
	}
	f.failWhen(nil)
	for _, step := range []int{3, 4} {
		if _, err := s.Save(ctx, step, []engine.StatePart{part}, Offsets{}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for obj := range mc.ListObjects(ctx, "ckpt", minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	want := []string{"checkpoints/m/000000000004/manifest.pb", "checkpoints/m/000000000004/" + engine.ProbeFile}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("objects %v, want only the kept checkpoint %v", keys, want)
	}
}
