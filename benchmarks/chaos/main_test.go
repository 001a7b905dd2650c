package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine running: the
// embedded servers, the clients, the subscriber and the children's
// waiters must all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
