package dataset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeSet writes classes×perClass images of side size; image bytes encode
// (class, source) so reads can be checked.
func writeSet(t *testing.T, dir string, classes, perClass, size int) *Manifest {
	t.Helper()
	w, err := Create(dir, size)
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{Kind: KindSynth}
	for c := range classes {
		split := "train"
		if c%4 == 3 {
			split = "openset"
		}
		m.Classes = append(m.Classes, Class{ID: fmt.Sprint(c), Split: split})
		for s := range perClass + c%3 {
			sp := SplitTrain
			switch {
			case split == "openset":
				sp = SplitOpenset
			case s == 1:
				sp = SplitHeldout
			}
			if err := w.Append(pattern(c, s, size), Meta{Class: c, Source: s, Split: sp}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Commit(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func pattern(c, s, size int) []byte {
	b := make([]byte, size*size)
	for i := range b {
		b[i] = byte(c*31 + s*7 + i)
	}
	return b
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	m := writeSet(t, dir, 10, 3, 16)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Len() != m.Counts.Images || r.ImageSize() != 16 || len(r.Classes()) != 10 {
		t.Fatalf("len %d size %d classes %d", r.Len(), r.ImageSize(), len(r.Classes()))
	}
	c := r.Manifest().Counts
	if c.Train+c.Heldout+c.Openset != c.Images || c.OpensetClasses != 2 || c.TrainClasses != 8 {
		t.Errorf("counts %+v", c)
	}
	total := 0
	for _, s := range AllSplits() {
		total += len(r.Split(s))
	}
	if total != r.Len() {
		t.Errorf("splits list %d images of %d", total, r.Len())
	}
	// Random access, concurrently.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < r.Len(); i += 4 {
				img, mt, err := r.Image(i)
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(img, pattern(mt.Class, mt.Source, 16)) {
					t.Errorf("image %d: bytes do not match class %d source %d", i, mt.Class, mt.Source)
				}
			}
		}()
	}
	wg.Wait()
	for label := range r.Classes() {
		if got := len(r.ClassImages(label)); got != r.Classes()[label].Images {
			t.Errorf("class %d: %d images listed, manifest %d", label, got, r.Classes()[label].Images)
		}
	}
	if _, _, err := r.Image(r.Len()); err == nil {
		t.Error("image past the end: no error")
	}
	if err := r.Verify(); err != nil {
		t.Error(err)
	}
	src := r.Source()
	if src.NumIDs() != 10 || src.InstancesOf(2) != r.Classes()[2].Images {
		t.Errorf("source: %d ids, %d instances of 2", src.NumIDs(), src.InstancesOf(2))
	}
	img, err := src.Image(2, 1)
	if err != nil || !bytes.Equal(img, pattern(2, 1, 16)) {
		t.Errorf("source image (2,1): %v", err)
	}
	if _, err := src.Image(2, 99); err == nil {
		t.Error("source instance past the end: no error")
	}
	for _, q := range []string{"3", "7"} {
		if i, err := r.Manifest().FindClass(q); err != nil || r.Classes()[i].ID != q {
			t.Errorf("FindClass(%s) = %d, %v", q, i, err)
		}
	}
	if _, err := r.Manifest().FindClass("nope"); err == nil {
		t.Error("FindClass(nope): no error")
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	dir := t.TempDir()
	writeSet(t, dir, 4, 2, 8)
	f, err := os.OpenFile(filepath.Join(dir, ImagesFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xAA}, 5)
	f.Close()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Verify(); err == nil || !strings.Contains(err.Error(), "content hash") {
		t.Errorf("Verify after tampering: %v", err)
	}
}

func TestOpenBadSets(t *testing.T) {
	cases := []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"no manifest", func(d string) { os.Remove(filepath.Join(d, ManifestFile)) }, "manifest"},
		{"short images", func(d string) { os.Truncate(filepath.Join(d, ImagesFile), 10) }, "bytes, want"},
		{"bad index magic", func(d string) {
			f, _ := os.OpenFile(filepath.Join(d, IndexFile), os.O_WRONLY, 0)
			f.WriteAt([]byte("XXXX"), 0)
			f.Close()
		}, "not an index"},
		{"index count", func(d string) {
			b, _ := os.ReadFile(filepath.Join(d, IndexFile))
			os.WriteFile(filepath.Join(d, IndexFile), b[:len(b)-indexRecordSize], 0o644)
		}, "index has"},
		{"bad manifest", func(d string) { os.WriteFile(filepath.Join(d, ManifestFile), []byte("{"), 0o644) }, "parse"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		writeSet(t, dir, 3, 2, 8)
		c.damage(dir)
		r, err := Open(dir)
		if err == nil {
			r.Close()
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want %q", c.name, err, c.want)
		}
	}
}

func TestWriterBadInput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Create(filepath.Join(file, "sub"), 8); err == nil || !strings.Contains(err.Error(), "output dir") {
		t.Errorf("unwritable dir: %v", err)
	}
	if _, err := Create(t.TempDir(), 0); err == nil {
		t.Error("size 0: no error")
	}
	dir := t.TempDir()
	w, err := Create(dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(make([]byte, 10), Meta{}); err == nil {
		t.Error("wrong image size: no error")
	}
	w.Append(make([]byte, 64), Meta{Class: 5})
	if err := w.Commit(&Manifest{Classes: []Class{{ID: "a", Split: "train"}}}); err == nil || !strings.Contains(err.Error(), "class 5") {
		t.Errorf("label outside the classes: %v", err)
	}
	// A failed commit leaves no file set behind.
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		t.Error("manifest written by a failed commit")
	}
	if _, err := os.Stat(filepath.Join(dir, ImagesFile+".tmp")); err == nil {
		t.Error("temporary images left by a failed commit")
	}
	w, _ = Create(t.TempDir(), 8)
	w.Append(make([]byte, 64), Meta{Class: 0, Split: SplitTrain})
	if err := w.Commit(&Manifest{Classes: []Class{{ID: "a", Split: "openset"}}}); err == nil || !strings.Contains(err.Error(), "openset class") {
		t.Errorf("train image in an open-set class: %v", err)
	}
}

func TestSelect(t *testing.T) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	cases := []struct {
		frac float64
		want int
	}{{0, 0}, {0.1, 100}, {0.2, 200}, {0.3333, 333}, {1, 1000}}
	for _, c := range cases {
		sel, err := Select(keys, 9, "x", c.frac)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range sel {
			if s {
				n++
			}
		}
		if n != c.want {
			t.Errorf("frac %v: %d selected, want %d", c.frac, n, c.want)
		}
	}
	// Order does not matter; seed and salt do.
	a, _ := Select(keys, 9, "x", 0.1)
	rev := make([]string, len(keys))
	for i, k := range keys {
		rev[len(keys)-1-i] = k
	}
	b, _ := Select(rev, 9, "x", 0.1)
	for i := range keys {
		if a[i] != b[len(keys)-1-i] {
			t.Fatal("selection depends on key order")
		}
	}
	same := func(x, y []bool) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	c, _ := Select(keys, 10, "x", 0.1)
	d, _ := Select(keys, 9, "y", 0.1)
	if same(a, c) || same(a, d) {
		t.Error("seed or salt does not change the selection")
	}
	if _, err := Select(keys, 1, "x", 1.5); err == nil {
		t.Error("fraction 1.5: no error")
	}
}

func TestSplitNames(t *testing.T) {
	for _, s := range AllSplits() {
		got, err := ParseSplit(s.String())
		if err != nil || got != s {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParseSplit("test"); err == nil {
		t.Error("unknown split: no error")
	}
}

func TestProgress(t *testing.T) {
	p := Progress{Stage: "render", Done: 50, Total: 200, Bytes: 2e6, Elapsed: 10 * time.Second}
	if p.Rate() != 5 || p.ETA() != 30*time.Second {
		t.Errorf("rate %v eta %v", p.Rate(), p.ETA())
	}
	s := p.String()
	for _, want := range []string{"render 50/200", "25.0%", "5/s", "ETA 30s", "0.2 MB/s"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	var b bytes.Buffer
	line := ProgressLine(&b, time.Hour)
	line(p)
	line(p) // throttled
	p.Final = true
	line(p)
	if got := strings.Count(b.String(), "render 50/200"); got != 2 {
		t.Errorf("progress line printed %d times, want 2: %q", got, b.String())
	}
	if !strings.HasSuffix(b.String(), "\n") {
		t.Error("final progress line not ended")
	}
}
