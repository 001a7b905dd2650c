package embedded

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// hangGuard is closed at the test's own deadline (testutil.Deadline): a
// guard against a wait that never ends, not a way to wait.
func hangGuard(t *testing.T) <-chan struct{} {
	return testutil.Context(t).Done()
}

// s3Watch records what an S3 server reports through its test hooks, and
// wakes the test that waits on it.
type s3Watch struct {
	mu       sync.Mutex
	states   map[string]http.ConnState // last state of each connection, by client address
	requests map[string]bool           // "METHOD path" of the requests the handler started on
	changed  chan struct{}             // something was recorded since the last wake-up

	closeOnce    sync.Once
	closeWaiting chan struct{} // closed once Close waits for a request in flight
}

func newS3Watch() *s3Watch {
	return &s3Watch{
		states:       map[string]http.ConnState{},
		requests:     map[string]bool{},
		changed:      make(chan struct{}, 1),
		closeWaiting: make(chan struct{}),
	}
}

// hooks are the server hooks that report to w.
func (w *s3Watch) hooks() s3Hooks {
	return s3Hooks{
		connState: func(c net.Conn, st http.ConnState) {
			w.record(func() { w.states[c.RemoteAddr().String()] = st })
		},
		request: func(r *http.Request) {
			w.record(func() { w.requests[r.Method+" "+r.URL.Path] = true })
		},
		closeWait: func() { w.closeOnce.Do(func() { close(w.closeWaiting) }) },
	}
}

// record runs update under the lock and wakes the waiting test.
func (w *s3Watch) record(update func()) {
	w.mu.Lock()
	update()
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond, run under the lock, holds; it checks cond
// again each time the server reports something.
func (w *s3Watch) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	guard := hangGuard(t)
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-w.changed:
		case <-guard:
			t.Fatalf("still waiting for %s near the test deadline", what)
		}
	}
}

// startS3Dial starts an in-memory S3 server, watching it, and opens a raw
// connection to it, closed when the test ends.
func startS3Dial(t *testing.T) (*S3, net.Conn, *s3Watch) {
	t.Helper()
	w := newS3Watch()
	s, err := StartS3(S3Options{hooks: w.hooks()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Endpoint())
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn, w
}

// startSlowPut creates a bucket with a first request on conn, then sends
// the headers of a PUT of an n-byte object into it but not the body, and
// waits until the handler has started on the PUT: it stays in it, reading
// the body, until the body comes. Neither a request whose handler does not
// read the body (creating a bucket) nor waiting for the connection to turn
// active would do: when Close has begun by then, net/http drops the
// request, or answers it without waiting for the body.
func startSlowPut(t *testing.T, s *S3, conn net.Conn, br *bufio.Reader, w *s3Watch, n int) {
	t.Helper()
	req := fmt.Sprintf("PUT /bucket HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", s.Endpoint())
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create bucket: status %s", resp.Status)
	}
	hdr := fmt.Sprintf("PUT /bucket/object HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", s.Endpoint(), n)
	if _, err := io.WriteString(conn, hdr); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the handler to start on the PUT", func() bool { return w.requests["PUT /bucket/object"] })
	if a := s.active.Load(); a != 1 {
		t.Fatalf("%d connections with a request while the PUT is being read, want 1", a)
	}
}

// TestS3CloseWithIdleDial: a client that has dialled but not yet sent a
// request (net/http keeps such a connection "new" and waits five seconds
// before it treats it as idle, longer than Close's grace period) must not
// make Close fail.
func TestS3CloseWithIdleDial(t *testing.T) {
	s, conn, w := startS3Dial(t)
	// Let the server accept it.
	w.waitFor(t, "the server to accept the connection", func() bool {
		st, ok := w.states[conn.LocalAddr().String()]
		return ok && st == http.StateNew
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close with a dialled, silent client: %v", err)
	}
	// The silent connection was closed by the server: the read ends at
	// once, not at the guard's deadline.
	_ = conn.SetReadDeadline(testutil.Deadline(t))
	var nerr net.Error
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.As(err, &nerr) && nerr.Timeout() {
		t.Error("the silent connection is still open after Close")
	}
}

// TestS3CloseWaitsForRequest: a request in flight when Close is called is
// answered before the server goes away.
func TestS3CloseWaitsForRequest(t *testing.T) {
	s, conn, w := startS3Dial(t)
	br := bufio.NewReader(conn)
	// Send the headers of a PUT whose body arrives only after Close began,
	// so the handler is running (reading the body) when Close is called.
	body := "hello"
	startSlowPut(t, s, conn, br, w, len(body))
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close must find the request in flight and wait for it.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was still being read", err)
	case <-w.closeWaiting:
	case <-hangGuard(t):
		t.Fatal("Close neither returned nor waited for the request in flight near the test deadline")
	}
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("put object: status %s", resp.Status)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestS3CloseReportsStuckRequest: a request that does not finish within the
// grace period makes Close return an error naming it, after forcing the
// connection shut.
func TestS3CloseReportsStuckRequest(t *testing.T) {
	s, conn, w := startS3Dial(t)
	s.grace = 300 * time.Millisecond
	startSlowPut(t, s, conn, bufio.NewReader(conn), w, 5)
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "1 request(s) still in flight") {
		t.Fatalf("Close with a stuck request: got %v, want an error naming 1 request in flight", err)
	}
}
