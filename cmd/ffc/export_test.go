package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image/png"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/internal/dataset"
	"github.com/ffc-stream/ffc/internal/dataset/glyphs"
	"github.com/ffc-stream/ffc/internal/onnx"
	"github.com/ffc-stream/ffc/internal/onnx/onnxpb"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// parityTol is the largest difference allowed between a component of
// ffc embed's embedding and onnxruntime's.
const parityTol = 1e-4

// embedLine is one line of embed --format jsonl (and of the parity
// script).
type embedLine struct {
	Path      string    `json:"path"`
	Embedding []float32 `json:"embedding"`
}

// exportTestData returns a data set folder with real glyph images when
// there is one: the CI glyph set, built (or reused from the cache) with
// FFC_GLYPHS_CI=1 as trainers/engine's TestLearnsGlyphs does, or reused
// from the cache when already built; else a small synthetic set, as the
// other tests of this package use.
func exportTestData(t *testing.T) (string, bool) {
	t.Helper()
	dir := filepath.Join(filepath.Dir(glyphs.DefaultCacheDir()), "sets", "glyphs-ci")
	if os.Getenv("FFC_GLYPHS_CI") == "1" {
		r, err := glyphData(testutil.Context(t), slog.New(slog.DiscardHandler), dir)
		if err != nil {
			t.Fatalf("FFC_GLYPHS_CI=1 but the CI glyph set could not be built: %v", err)
		}
		r.Close()
		return dir, true
	}
	if r, err := dataset.Open(dir); err == nil {
		r.Close()
		return dir, true
	}
	t.Logf("no CI glyph set in %s (set FFC_GLYPHS_CI=1 to build it): using synthetic images", dir)
	synth := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", synth); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	return synth, false
}

// writeTestPNGs writes n images of the data set, spread over it, as
// 32×32 grayscale PNG files and returns their paths.
func writeTestPNGs(t *testing.T, data string, n int) []string {
	t.Helper()
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dir := t.TempDir()
	var paths []string
	for k := range n {
		i := k * (r.Len() - 1) / max(1, n-1)
		pix, _, err := r.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := png.Encode(&b, dataset.Gray(pix, r.ImageSize())); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("img%03d.png", k))
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// trainTestCheckpoint trains a few offline FFC steps and returns the
// checkpoint folder.
func trainTestCheckpoint(t *testing.T, data string, arch ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	args := append([]string{"train", "--offline", "--data", data, "--batch", "4", "--steps", "3", "--eval=false",
		"--threads", "1", "--out", dir, "--log-level", "warn"}, arch...)
	if _, stderr, err := run(t, nil, args...); err != nil {
		t.Fatalf("train: %v\n%s", err, stderr)
	}
	return dir
}

func parseEmbedLines(t *testing.T, what, out string) []embedLine {
	t.Helper()
	var lines []embedLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var l embedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v in %q", what, err, sc.Text())
		}
		lines = append(lines, l)
	}
	return lines
}

// onnxPython returns the Python interpreter for the parity script
// (FFC_PYTHON, else python3) and nil when it has numpy and onnxruntime.
func onnxPython() (string, error) {
	py := os.Getenv("FFC_PYTHON")
	if py == "" {
		py = "python3"
	}
	out, err := exec.Command(py, "-c", "import numpy, onnxruntime; print(onnxruntime.__version__)").CombinedOutput()
	if err != nil {
		return py, fmt.Errorf("%s cannot import numpy and onnxruntime (pip install numpy onnxruntime): %v: %s", py, err, bytes.TrimSpace(out))
	}
	return py, nil
}

// TestExportONNXParity trains a few steps of each backbone on real glyph
// images (synthetic ones when the glyph set is not available), exports the
// probe and the gallery with ffc export, embeds the same PNG files with
// ffc embed (jsonl and npy) and with onnxruntime from the .onnx file alone
// (testdata/onnx_embed.py), and requires every component to agree within
// 1e-4. Without numpy and onnxruntime the onnxruntime half is skipped,
// unless FFC_REQUIRE_REAL=1 (CI), where it fails.
func TestExportONNXParity(t *testing.T) {
	data, real := exportTestData(t)
	imgs := writeTestPNGs(t, data, 12)
	py, pyErr := onnxPython()
	for _, c := range []struct {
		backbone string
		arch     []string
	}{
		{"irresnet", []string{"--backbone", "irresnet", "--dim", "32"}},
		{"mlp", []string{"--backbone", "mlp", "--hidden", "64", "--dim", "24"}},
	} {
		t.Run(c.backbone, func(t *testing.T) {
			ckpt := trainTestCheckpoint(t, data, c.arch...)
			byNet, models := map[string][]embedLine{}, map[string]string{}
			for _, network := range []string{netProbe, netGallery} {
				byNet[network], models[network] = exportAndEmbed(t, ckpt, network, imgs)
			}
			if d := maxAbsDiff(t, byNet[netProbe], byNet[netGallery]); !(d > 1e-6) {
				t.Errorf("probe and gallery embeddings differ by %g at most: --network gallery did not load the gallery", d)
			}
			if pyErr != nil {
				if os.Getenv("FFC_REQUIRE_REAL") == "1" {
					t.Fatalf("FFC_REQUIRE_REAL=1: %v", pyErr)
				}
				t.Skipf("onnxruntime parity not checked: %v", pyErr)
			}
			for _, network := range []string{netProbe, netGallery} {
				checkONNXRuntime(t, py, models[network], network, imgs, byNet[network])
			}
		})
	}
	if !real {
		t.Log("parity checked on synthetic images: set FFC_GLYPHS_CI=1 for the CI glyph set")
	}
}

// exportAndEmbed exports network of ckpt and embeds imgs with ffc embed
// (jsonl, checked against npy); it returns the embeddings and the model
// file.
func exportAndEmbed(t *testing.T, ckpt, network string, imgs []string) ([]embedLine, string) {
	t.Helper()
	dir := t.TempDir()
	model := filepath.Join(dir, network+".onnx")
	if _, stderr, err := run(t, nil, "export", "--format", "onnx", "--checkpoint", ckpt, "--network", network, "--out", model, "--log-level", "warn"); err != nil {
		t.Fatalf("export --network %s: %v\n%s", network, err, stderr)
	}
	checkModelFile(t, model)
	out, stderr, err := run(t, nil, append([]string{"embed", "--checkpoint", ckpt, "--network", network, "--threads", "1", "--log-level", "warn"}, imgs...)...)
	if err != nil {
		t.Fatalf("embed --network %s: %v\n%s", network, err, stderr)
	}
	got := parseEmbedLines(t, "embed", out)
	if len(got) != len(imgs) {
		t.Fatalf("embed printed %d lines for %d images", len(got), len(imgs))
	}
	for i, l := range got {
		if l.Path != imgs[i] || math.Abs(norm(l.Embedding)-1) > 1e-4 {
			t.Fatalf("line %d: %s, norm %g: want %s, L2-normalised", i, l.Path, norm(l.Embedding), imgs[i])
		}
	}
	checkNPY(t, ckpt, network, imgs, got)
	return got, model
}

// checkONNXRuntime embeds imgs with onnxruntime from the model file alone
// (testdata/onnx_embed.py) and compares with ffc embed's embeddings.
func checkONNXRuntime(t *testing.T, py, model, network string, imgs []string, got []embedLine) {
	t.Helper()
	cmd := exec.Command(py, append([]string{filepath.Join("testdata", "onnx_embed.py"), model}, imgs...)...)
	var pyErrOut bytes.Buffer
	cmd.Stderr = &pyErrOut
	pyOut, err := cmd.Output()
	if err != nil {
		t.Fatalf("onnx_embed.py: %v\n%s", err, pyErrOut.String())
	}
	ort := parseEmbedLines(t, "onnx_embed.py", string(pyOut))
	d := maxAbsDiff(t, got, ort)
	t.Logf("%s: max |ffc embed − onnxruntime| = %.3g over %d images × %d components", network, d, len(got), len(got[0].Embedding))
	if !(d <= parityTol) {
		t.Errorf("%s: ffc embed and onnxruntime differ by %g > %g", network, d, parityTol)
	}
}

// checkNPY embeds imgs with --format npy and compares with the JSON lines.
func checkNPY(t *testing.T, ckpt, network string, imgs []string, want []embedLine) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "emb.npy")
	if _, stderr, err := run(t, nil, append([]string{"embed", "--checkpoint", ckpt, "--network", network, "--format", "npy", "--out", p, "--threads", "1", "--log-level", "warn"}, imgs...)...); err != nil {
		t.Fatalf("embed --format npy: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	dim := len(want[0].Embedding)
	hl := int(binary.LittleEndian.Uint16(b[8:10]))
	hdr := string(b[10 : 10+hl])
	if string(b[:8]) != "\x93NUMPY\x01\x00" || (10+hl)%64 != 0 || !strings.Contains(hdr, fmt.Sprintf("'shape': (%d, %d)", len(imgs), dim)) ||
		!strings.Contains(hdr, "'descr': '<f4'") || len(b) != 10+hl+4*len(imgs)*dim {
		t.Fatalf("npy header %q, %d bytes: want %d×%d <f4", hdr, len(b), len(imgs), dim)
	}
	for i, l := range want {
		for j, v := range l.Embedding {
			if got := math.Float32frombits(binary.LittleEndian.Uint32(b[10+hl+4*(i*dim+j):])); got != v {
				t.Fatalf("npy[%d][%d] = %g, jsonl %g", i, j, got, v)
			}
		}
	}
}

// checkModelFile parses an exported file with the generated types.
func checkModelFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	g := m.GetGraph()
	if m.GetOpsetImport()[0].GetVersion() != onnx.Opset || len(g.GetInput()) != 1 || g.GetInput()[0].GetName() != onnx.InputName ||
		len(g.GetOutput()) != 1 || g.GetOutput()[0].GetName() != onnx.OutputName || len(g.GetInitializer()) == 0 {
		t.Fatalf("%s: opset %v, inputs %v, outputs %v, %d initializers", path, m.GetOpsetImport(), g.GetInput(), g.GetOutput(), len(g.GetInitializer()))
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// maxAbsDiff is the largest |a − b| over the components of two lists of
// embeddings of the same images.
func maxAbsDiff(t *testing.T, a, b []embedLine) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d and %d embeddings", len(a), len(b))
	}
	d := 0.0
	for i := range a {
		if a[i].Path != b[i].Path || len(a[i].Embedding) != len(b[i].Embedding) {
			t.Fatalf("row %d: %s (%d floats) and %s (%d floats)", i, a[i].Path, len(a[i].Embedding), b[i].Path, len(b[i].Embedding))
		}
		for j := range a[i].Embedding {
			d = max(d, math.Abs(float64(a[i].Embedding[j])-float64(b[i].Embedding[j])))
		}
	}
	return d
}

// TestExportEmbedRefuseBadInput: every flag and every image is checked
// before any work, with the culprit named; nothing is printed or written.
func TestExportEmbedRefuseBadInput(t *testing.T) {
	data := filepath.Join(t.TempDir(), "synth")
	if _, _, err := run(t, nil, "data", "synth", "--ids", "40", "--sample", "40", "--min", "3", "--max", "6", "--out", data); err != nil {
		t.Fatalf("data synth: %v", err)
	}
	ckpt := filepath.Join(t.TempDir(), "run")
	if _, _, err := run(t, nil, "train", "--offline", "--data", data, "--backbone", "mlp", "--dim", "8", "--batch", "4", "--steps", "1",
		"--eval=false", "--threads", "1", "--out", ckpt, "--log-level", "warn"); err != nil {
		t.Fatalf("train: %v", err)
	}
	good := writeTestPNGs(t, data, 2)
	dir := t.TempDir()
	notPNG := filepath.Join(dir, "notes.png")
	big := filepath.Join(dir, "big.png")
	writeFile(t, notPNG, []byte("not a png"))
	var b bytes.Buffer
	if err := png.Encode(&b, dataset.Gray(make([]byte, 64*64), 64)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, big, b.Bytes())
	noGallery := filepath.Join(t.TempDir(), "fc")
	if err := os.CopyFS(noGallery, os.DirFS(ckpt)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(noGallery, "gallery.params")); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "m.onnx")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"export", "--format", "tflite", "--checkpoint", ckpt, "--out", model}, []string{"--format", "tflite"}},
		{[]string{"export", "--checkpoint", ckpt}, []string{"--out is required"}},
		{[]string{"export", "--checkpoint", dir, "--out", model}, []string{"--checkpoint"}},
		{[]string{"export", "--checkpoint", ckpt, "--network", "teacher", "--out", model}, []string{"--network", "teacher"}},
		{[]string{"export", "--checkpoint", noGallery, "--network", "gallery", "--out", model}, []string{"--network gallery", "gallery.params"}},
		{append([]string{"embed", "--checkpoint", ckpt, "--format", "csv"}, good...), []string{"--format", "csv"}},
		{append([]string{"embed", "--checkpoint", ckpt, "--format", "npy"}, good...), []string{"--format npy needs --out"}},
		{append([]string{"embed", "--checkpoint", ckpt, "--threads", "-1"}, good...), []string{"--threads"}},
		{append([]string{"embed", "--checkpoint", ckpt, "--device", "tpu"}, good...), []string{"--device"}},
		{append([]string{"embed", "--checkpoint", dir}, good...), []string{"--checkpoint"}},
		{[]string{"embed", "--checkpoint", ckpt}, []string{"requires at least 1 arg"}},
		{append([]string{"embed", "--checkpoint", ckpt, notPNG, big, filepath.Join(dir, "missing.png"), t.TempDir()}, good...),
			[]string{"nothing embedded", notPNG, big, "64×64", "missing.png", "without .png files"}},
	} {
		out, _, err := run(t, nil, c.args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v, want it to say %q", c.args, err, w)
			}
		}
		if out != "" {
			t.Errorf("%v: printed %q before failing", c.args, out)
		}
	}
	if _, err := os.Stat(model); !os.IsNotExist(err) {
		t.Errorf("a refused export wrote %s (%v)", model, err)
	}
	if ents, _ := os.ReadDir(dir); !slices.EqualFunc(ents, []string{"big.png", "notes.png"}, func(e os.DirEntry, n string) bool { return e.Name() == n }) {
		t.Errorf("files left in %s: %v", dir, ents)
	}
}

// TestExportHelpNamesOpset: the help text states the opset the exporter
// writes.
func TestExportHelpNamesOpset(t *testing.T) {
	if !strings.Contains(exportLong, fmt.Sprintf("opset %d", onnx.Opset)) || !strings.Contains(exportLong, "(x/255 − 0.5)/0.5") {
		t.Errorf("export --help does not state opset %d and the input scaling", onnx.Opset)
	}
}
