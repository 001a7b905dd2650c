package onnx

import (
	"testing"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestGeneratedUpToDate regenerates onnxpb with gen.sh into a temp dir and
// compares with the committed files. Skipped without protoc (Debian package
// protobuf-compiler).
func TestGeneratedUpToDate(t *testing.T) {
	testutil.CheckGenerated(t, "gen.sh", "internal/onnx/onnxpb", "onnxpb", "go generate ./internal/onnx/...")
}
