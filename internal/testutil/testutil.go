// Package testutil is the one home of what the tests share for waiting:
// WaitFor polls a condition until it holds, and Context gives a test's
// work a context that ends with the test's own deadline. Neither uses a
// wall-clock bound of its own: a busy machine makes a test slower, never
// wrong; only the package's -timeout (less a margin to report the state)
// ends the wait, and the failure says what was seen last. CheckGenerated
// holds committed protoc output equal to what its gen.sh writes now.
//
// It is imported by tests only.
package testutil

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// margin is left before the test binary's deadline, so that a wait that
// never ends fails with its own message rather than the timeout panic.
const margin = 20 * time.Second

// defaultWait bounds waits when the test has no deadline (go test
// -timeout 0).
const defaultWait = 30 * time.Minute

// pollEvery is how often WaitFor evaluates its condition.
const pollEvery = 10 * time.Millisecond

// deadliner is what *testing.T has and testing.TB lacks.
type deadliner interface{ Deadline() (time.Time, bool) }

// Deadline is when waits of t give up: the test binary's deadline less a
// margin, or defaultWait from now without one.
func Deadline(t testing.TB) time.Time {
	if d, ok := t.(deadliner); ok {
		if dl, ok := d.Deadline(); ok {
			if dl.Add(-margin).After(time.Now()) {
				return dl.Add(-margin)
			}
			return dl
		}
	}
	return time.Now().Add(defaultWait)
}

// Context returns a context that ends at Deadline(t) or when the test
// ends, whichever is first.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), Deadline(t))
	t.Cleanup(cancel)
	return ctx
}

// WaitFor polls check until it returns nil. Past Deadline(t) the test
// fails with what and check's last error, the state seen last.
func WaitFor(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := Deadline(t)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// WaitTrue polls cond until it holds (see WaitFor).
func WaitTrue(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitFor(t, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("condition still false")
	})
}

// ClosedAddr returns a loopback host:port nothing listens on (a listener
// opened and closed): a service that is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
