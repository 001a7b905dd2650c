package embedded

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startS3Dial starts an in-memory S3 server and opens a raw connection to
// it, closed when the test ends.
func startS3Dial(t *testing.T) (*S3, net.Conn) {
	t.Helper()
	s, err := StartS3(S3Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Endpoint())
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, conn
}

// waitActive waits until the server counts n connections with a request
// on them.
func waitActive(t *testing.T, s *S3, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.active.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections with a request after 10s, want %d", s.active.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestS3CloseWithIdleDial: a client that has dialled but not yet sent a
// request (net/http keeps such a connection "new" and waits five seconds
// before it treats it as idle, longer than Close's grace period) must not
// make Close fail.
func TestS3CloseWithIdleDial(t *testing.T) {
	s, conn := startS3Dial(t)
	// Let the server accept it.
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close with a dialled, silent client: %v", err)
	}
	// The silent connection was closed by the server.
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the silent connection is still open after Close")
	}
}

// TestS3CloseWaitsForRequest: a request in flight when Close is called is
// answered before the server goes away.
func TestS3CloseWaitsForRequest(t *testing.T) {
	s, conn := startS3Dial(t)
	// Send the headers of a PUT whose body arrives only after Close began,
	// so the handler is running (reading the body) when Close is called.
	body := "hello"
	hdr := fmt.Sprintf("PUT /bucket HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", s.Endpoint(), len(body))
	if _, err := io.WriteString(conn, hdr); err != nil {
		t.Fatal(err)
	}
	waitActive(t, s, 1)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was still being read", err)
	default:
	}
	if _, err := io.WriteString(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the request in flight got no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("create bucket: status %s", resp.Status)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestS3CloseReportsStuckRequest: a request that does not finish within the
// grace period makes Close return an error naming it, after forcing the
// connection shut.
func TestS3CloseReportsStuckRequest(t *testing.T) {
	s, conn := startS3Dial(t)
	s.grace = 300 * time.Millisecond
	hdr := fmt.Sprintf("PUT /bucket HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\n", s.Endpoint())
	if _, err := io.WriteString(conn, hdr); err != nil {
		t.Fatal(err)
	}
	waitActive(t, s, 1)
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "1 request(s) still in flight") {
		t.Fatalf("Close with a stuck request: got %v, want an error naming 1 request in flight", err)
	}
}
