package onnx

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// protocLine is the generated header line naming the protoc version; it is
// the one line that depends on the machine rather than on the inputs
// (protoc-gen-go itself is pinned in gen.sh), so the comparison ignores it.
var protocLine = regexp.MustCompile(`(?m)^// \tprotoc +v.*$`)

// TestGeneratedUpToDate regenerates onnxpb with gen.sh into a temp dir and
// compares with the committed files. Skipped without protoc (Debian package
// protobuf-compiler).
func TestGeneratedUpToDate(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc not installed (Debian: apt-get install protobuf-compiler); not checking that internal/onnx/onnxpb is up to date")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "gen.sh", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, msg)
	}
	fresh, err := filepath.Glob(filepath.Join(out, "internal", "onnx", "onnxpb", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join("onnxpb", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(ps []string) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = filepath.Base(p)
		}
		slices.Sort(out)
		return out
	}
	if len(fresh) == 0 || !slices.Equal(base(fresh), base(committed)) {
		t.Fatalf("generated files %v, committed %v: run go generate ./internal/onnx/...", base(fresh), base(committed))
	}
	for _, p := range fresh {
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("onnxpb", filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		want = protocLine.ReplaceAll(want, nil)
		got = protocLine.ReplaceAll(got, nil)
		if !bytes.Equal(got, want) {
			t.Errorf("internal/onnx/onnxpb/%s is stale: run go generate ./internal/onnx/...", filepath.Base(p))
		}
	}
}
