package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ffc-stream/ffc/internal/security"
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
	// Secure, when set, serves HTTPS only with the material's server
	// certificate. gofakes3 still checks no signature.
	Secure *Secure

	// hooks are for tests; the zero value, as in production, does nothing.
	hooks s3Hooks
}

// s3Hooks let tests wait on what the S3 server does; nil ones are skipped.
type s3Hooks struct {
	// connState is told each change of a connection's state once the
	// server has counted it.
	connState func(net.Conn, http.ConnState)
	// request is told of each request as the handler starts on it.
	request func(*http.Request)
	// closeWait is called each time Close finds requests in flight and
	// goes on waiting for them.
	closeWait func()
}

// wrap returns h, telling the request hook of each request first when
// there is one.
func (hk s3Hooks) wrap(h http.Handler) http.Handler {
	if hk.request == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hk.request(r)
		h.ServeHTTP(w, r)
	})
}

// S3 is a running embedded S3 server (gofakes3).
type S3 struct {
	srv       *http.Server
	ln        net.Listener
	done      chan error
	closeDB   func() error
	accessKey string
	secretKey string
	// active counts connections with a request on them (read, handled or
	// being answered); Close waits for these, not for connections that
	// have not sent a request yet.
	active atomic.Int64
	// grace is how long Close waits for requests in flight.
	grace time.Duration
	// hooks are S3Options.hooks: for tests only.
	hooks s3Hooks
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
	if opts.Secure != nil {
		m := opts.Secure.Material
		cfg, err := security.ServerConfig(m.ServerCert(), m.ServerKey(), opts.Secure.caForClients())
		if err != nil {
			_ = errors.Join(ln.Close(), closeBackend())
			return nil, fmt.Errorf("embedded s3: %w", err)
		}
		ln = tls.NewListener(ln, cfg)
	}
	s := &S3{
		ln:        ln,
		done:      make(chan error, 1),
		accessKey: opts.AccessKey,
		secretKey: opts.SecretKey,
		closeDB:   closeBackend,
		grace:     5 * time.Second,
		hooks:     opts.hooks,
	}
	var (
		mu    sync.Mutex
		state = map[net.Conn]http.ConnState{}
	)
	s.srv = &http.Server{
		Handler:           opts.hooks.wrap(fake.Server()),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if state[c] == http.StateActive {
				s.active.Add(-1)
			}
			if st == http.StateActive {
				s.active.Add(1)
			}
			if st == http.StateClosed || st == http.StateHijacked {
				delete(state, c)
			} else {
				state[c] = st
			}
			if s.hooks.connState != nil {
				s.hooks.connState(c, st)
			}
		},
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Endpoint is the host:port clients connect to (plain HTTP).
func (s *S3) Endpoint() string { return s.ln.Addr().String() }

// Credentials returns the access and secret key clients should use.
func (s *S3) Credentials() (accessKey, secretKey string) { return s.accessKey, s.secretKey }

// Close stops the server. It stops accepting connections, waits up to five
// seconds for the requests in flight to be answered, then closes every
// connection. A connection with no request on it (a client that has dialled
// but sent nothing yet) does not hold Close up: http.Server.Shutdown alone
// would wait five seconds for it. Requests still running when the grace
// period ends are cut off and reported in the error.
func (s *S3) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.grace)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.srv.Shutdown(ctx) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case serr := <-shut:
			if errors.Is(serr, context.DeadlineExceeded) {
				serr = fmt.Errorf("%d request(s) still in flight after %v were cut off", s.active.Load(), s.grace)
			}
			err = serr
			break wait
		case <-tick.C:
			if s.active.Load() == 0 {
				// Nothing is being answered: the connections left are idle
				// or have not sent a request. Shut them now.
				_ = s.srv.Close()
			} else if s.hooks.closeWait != nil {
				s.hooks.closeWait()
			}
		}
	}
	_ = s.srv.Close()
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	err = errors.Join(err, s.closeDB())
	if err != nil {
		return fmt.Errorf("embedded s3: close: %w", err)
	}
	return nil
}
