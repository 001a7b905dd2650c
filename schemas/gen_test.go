package schemas

import (
	"testing"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestGeneratedUpToDate regenerates ffcpb with gen.sh into a temp dir and
// compares with the committed files. Skipped without protoc (Debian package
// protobuf-compiler).
func TestGeneratedUpToDate(t *testing.T) {
	testutil.CheckGenerated(t, "gen.sh", "schemas/ffcpb", "ffcpb", "go generate ./schemas/...")
}
