package testutil

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
// (protoc-gen-go itself is pinned in the gen.sh scripts), so CheckGenerated
// ignores it.
var protocLine = regexp.MustCompile(`(?m)^// \tprotoc +v.*$`)

// CheckGenerated runs the generation script gen with sh and a temporary
// output root as its argument, and compares the Go files it writes under
// rel (a folder relative to the repository root, e.g. "schemas/ffcpb")
// with the committed ones in dir (the same folder, relative to the test's
// working directory). regen is the command that brings them up to date.
// Skipped without protoc (Debian package protobuf-compiler) or sh.
func CheckGenerated(t *testing.T, gen, rel, dir, regen string) {
	t.Helper()
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skipf("protoc not installed (Debian: apt-get install protobuf-compiler); not checking that %s is up to date", rel)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	out := t.TempDir()
	if msg, err := exec.Command("sh", gen, out).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", gen, err, msg)
	}
	fresh, err := filepath.Glob(filepath.Join(out, rel, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := filepath.Glob(filepath.Join(dir, "*.go"))
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
		t.Fatalf("generated files %v, committed %v: run %s", base(fresh), base(committed), regen)
	}
	for _, p := range fresh {
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(protocLine.ReplaceAll(got, nil), protocLine.ReplaceAll(want, nil)) {
			t.Errorf("%s/%s is stale: run %s", rel, filepath.Base(p), regen)
		}
	}
}
