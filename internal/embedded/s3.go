package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	bolt "go.etcd.io/bbolt"
)

// S3Options configures the embedded S3 server.
type S3Options struct {
	// Addr to listen on; default 127.0.0.1:0 (random port).
	Addr string
	// DataDir keeps buckets and objects in a bbolt file there (s3.bolt), so
	// they survive a restart. Empty keeps everything in memory.
	DataDir string
	// AccessKey and SecretKey are what clients should use. gofakes3 does not
	// check signatures, but the values are reported so that clients are
	// configured exactly as for a real server.
	AccessKey, SecretKey string
}

// S3 is a running embedded S3 server (gofakes3).
type S3 struct {
	srv       *http.Server
	ln        net.Listener
	done      chan error
	closeDB   func() error
	accessKey string
	secretKey string
}

// StartS3 starts the S3 server and returns once it is listening.
func StartS3(opts S3Options) (*S3, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.AccessKey == "" {
		opts.AccessKey = "ffc-embedded"
	}
	if opts.SecretKey == "" {
		opts.SecretKey = "ffc-embedded-secret"
	}
	var backend gofakes3.Backend
	closeBackend := func() error { return nil }
	if opts.DataDir == "" {
		backend = s3mem.New()
	} else {
		// bbolt keeps buckets and objects in one file and, unlike the
		// file-tree backend, pages listings as S3 does.
		if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded s3: create data dir: %w", err)
		}
		file := filepath.Join(opts.DataDir, "s3.bolt")
		db, err := bolt.Open(file, 0o600, &bolt.Options{Timeout: 2 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("embedded s3: open %s (is another ffc using this data folder?): %w", file, err)
		}
		backend, closeBackend = s3bolt.New(db), db.Close
	}
	fake := gofakes3.New(backend, gofakes3.WithoutVersioning())
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		_ = closeBackend()
		return nil, fmt.Errorf("embedded s3: listen %s: %w", opts.Addr, err)
	}
	s := &S3{
		srv:       &http.Server{Handler: fake.Server(), ReadHeaderTimeout: 10 * time.Second},
		ln:        ln,
		done:      make(chan error, 1),
		accessKey: opts.AccessKey,
		secretKey: opts.SecretKey,
		closeDB:   closeBackend,
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Endpoint is the host:port clients connect to (plain HTTP).
func (s *S3) Endpoint() string { return s.ln.Addr().String() }

// Credentials returns the access and secret key clients should use.
func (s *S3) Credentials() (accessKey, secretKey string) { return s.accessKey, s.secretKey }

// Close stops the server, waiting up to five seconds for requests in flight.
func (s *S3) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	err = errors.Join(err, s.closeDB())
	if err != nil {
		return fmt.Errorf("embedded s3: close: %w", err)
	}
	return nil
}
