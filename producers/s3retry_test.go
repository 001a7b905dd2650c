package producers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/schemas"
)

func TestS3Transient(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"no answer", &url.Error{Op: "Get", URL: "http://x", Err: errors.New("connection refused")}, true},
		{"slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, true},
		{"internal error, wrapped", fmt.Errorf("get k: %w", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}), true},
		{"too many requests", minio.ErrorResponse{StatusCode: 429}, true},
		{"no such key", minio.ErrorResponse{Code: minio.NoSuchKey, StatusCode: 404}, false},
		{"gone", fmt.Errorf("get k: %w", errGone), false},
		{"access denied", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{"cancelled", context.Canceled, false},
	} {
		if got := s3Transient(tc.err); got != tc.want {
			t.Errorf("%s: s3Transient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestRetryS3: a transient error is retried (and counted) until the
// request succeeds; an error that says the request is wrong is not
// retried.
func TestRetryS3(t *testing.T) {
	p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, S3: s3Client(t), Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t)
	for _, tc := range []struct {
		name        string
		errs        []error // returned by the calls in turn, then nil
		wantCalls   int
		wantRetries int64
		wantErr     bool
	}{
		{"transient then ok", []error{minio.ErrorResponse{StatusCode: 503}, minio.ErrorResponse{StatusCode: 500}}, 3, 2, false},
		{"no such key", []error{minio.ErrorResponse{Code: minio.NoSuchKey, StatusCode: 404}}, 1, 0, true},
	} {
		calls := 0
		before := p.s3Retries.Load()
		_, err := retryS3(ctx, p, func() (int, error) {
			calls++
			if calls <= len(tc.errs) {
				return 0, tc.errs[calls-1]
			}
			return 1, nil
		})
		if (err != nil) != tc.wantErr || calls != tc.wantCalls || p.s3Retries.Load()-before != tc.wantRetries {
			t.Errorf("%s: err %v after %d calls, %d retries; want error %v, %d calls, %d retries",
				tc.name, err, calls, p.s3Retries.Load()-before, tc.wantErr, tc.wantCalls, tc.wantRetries)
		}
	}
}

// flakyS3 is a proxy in front of the embedded S3 that answers the first
// failGets GETs of every image with 503 SlowDown, the first failLists
// listings of ids/ with 503 too, and every GET of gone with NoSuchKey.
type flakyS3 struct {
	failGets, failLists int
	gone                string // object key

	proxy *httputil.ReverseProxy
	mu    sync.Mutex
	gets  map[string]int // by object key
	lists int
}

func newFlakyS3(t *testing.T, failGets, failLists int, gone string) (*flakyS3, *minio.Client) {
	target, err := url.Parse("http://" + stack.S3.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyS3{failGets: failGets, failLists: failLists, gone: gone, gets: map[string]int{}}
	tr := &http.Transport{}
	f.proxy = httputil.NewSingleHostReverseProxy(target)
	f.proxy.Transport = tr
	srv := httptest.NewServer(f)
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	ak, sk := stack.S3.Credentials()
	// One attempt per request: the producer's own retries are tested.
	mc, err := minio.New(strings.TrimPrefix(srv.URL, "http://"), &minio.Options{Creds: credentials.NewStaticV4(ak, sk, ""), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return f, mc
}

func (f *flakyS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/") // path style: /<bucket>/<key>
	fail := ""
	f.mu.Lock()
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(key, "ids/"):
		f.gets[key]++
		if key == f.gone {
			fail = "NoSuchKey"
		} else if f.gets[key] <= f.failGets {
			fail = "SlowDown"
		}
	case r.Method == http.MethodGet && key == "" && r.URL.Query().Get("prefix") == "ids/":
		f.lists++
		if f.lists <= f.failLists {
			fail = "SlowDown"
		}
	}
	f.mu.Unlock()
	if fail == "" {
		f.proxy.ServeHTTP(w, r)
		return
	}
	code := map[string]int{"NoSuchKey": http.StatusNotFound, "SlowDown": http.StatusServiceUnavailable}[fail]
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message><Key>%s</Key><RequestId>1</RequestId></Error>`, fail, key)
}

func (f *flakyS3) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[key]
}

// TestS3ErrorsRetried (transient object-storage errors): the first
// listing fails and every image's first two GETs fail with 503, yet the
// producer starts and each instance epoch holds every good image once (a
// GET given up would skip its image for the epoch); an image answered
// NoSuchKey is dropped from the catalog, not retried.
func TestS3ErrorsRetried(t *testing.T) {
	mc := s3Client(t)
	fx := newFixture(t, mc)
	// 1074 has the images 0000, 0001, 0002 and huge (too large): 0002
	// sorts last of its good ones, so dropping it from the catalog in the
	// middle of an epoch shifts no other good image of it.
	gone := schemas.ImageKey(1074, "0002")
	const failGets = 2
	flaky, fmc := newFlakyS3(t, failGets, 1, gone)
	cfg := testConfig(t, fmc, fx.bucket)
	good := len(fx.goodKeys) - 1
	cfg.MaxLead = 2 * good
	p := start(t, cfg)
	if p.Catalog().Len() != len(fx.names) {
		t.Fatalf("catalog %d IDs, want %d", p.Catalog().Len(), len(fx.names))
	}
	testutil.WaitTrue(t, "two epochs of the instance stream", func() bool { return p.Stats().Instance.Produced >= int64(cfg.MaxLead) })

	perEpoch := map[uint64]map[string]int{}
	for _, r := range readAll(t, cfg.TopicInstance) {
		m, err := schemas.DecodeSample(r.Value, schemas.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if perEpoch[m.GetEpoch()] == nil {
			perEpoch[m.GetEpoch()] = map[string]int{}
		}
		perEpoch[m.GetEpoch()][m.GetImageKey()]++
	}
	for e := range uint64(2) {
		keys := perEpoch[e]
		if len(keys) != good {
			t.Errorf("epoch %d covers %d images, want %d", e, len(keys), good)
		}
		for k, n := range keys {
			if !fx.goodKeys[k] || k == gone || n != 1 {
				t.Errorf("epoch %d: %s seen %d times", e, k, n)
			}
		}
	}
	st := p.Stats()
	if min := int64(failGets * good); st.S3Retries < min || st.S3Failures != 0 {
		t.Errorf("%d S3 retries, %d failures; want at least %d retries, no failure", st.S3Retries, st.S3Failures, min)
	}
	if n := flaky.count(gone); n == 0 || n > 2 {
		t.Errorf("%d GETs of %s (NoSuchKey), want one per stream at most", n, gone)
	}
	if names := p.Catalog().Names(1074); len(names) != 3 {
		t.Errorf("id 1074 names %q, want 0000, 0001 and huge (0002 gone)", names)
	}
	if c, _ := condition(p.Health(), CondObjectStorage); !c.OK {
		t.Errorf("object storage %+v, want OK", c)
	}
}
