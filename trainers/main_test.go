package trainers

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine running: the
// trainer's readers, its consumer group and the replicas must all end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
