package glyphs

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// TestCIBuild builds the 12-package CI set over GB2312 level 1. It needs
// apt-get and dpkg-deb and downloads about 19 MB on its first run (cached
// under $FFC_CACHE_DIR or ~/.cache/ffc), so it runs only with
// FFC_GLYPHS_CI=1.
//
// Measured (Debian 12 package versions, 32×32, defaults): 3,755 classes,
// 33,374 images, 4-12 images per class (median 11, 10th percentile 4),
// 16 faces of which 12 keep images (VL PGothic, UmePlus P Gothic, Konatu
// Tohaba and WenQuanYi Micro Hei Mono repeat their sister faces and are
// dropped as duplicates), no unreadable face; 7 s cold (download, unpack,
// render), 0.4 s warm. The bounds below leave room for package updates.
func TestCIBuild(t *testing.T) {
	if os.Getenv("FFC_GLYPHS_CI") != "1" {
		t.Skip("set FFC_GLYPHS_CI=1 to download the CI font packages and build the CI glyph set")
	}
	pkgs, err := PackageList(PackagesCI)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Packages = pkgs
	o.OutDir = t.TempDir()
	o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	t.Logf("classes %d images %d fonts %d (heldout %d) unreadable %d per class %+v cached faces %d/%d dropped %+v elapsed %v",
		len(m.Classes), m.Counts.Images, len(m.Fonts), m.Counts.HeldoutFonts, len(m.Unreadable), res.ImagesPerClass,
		res.FacesCached, res.Faces, res.Dropped, res.Elapsed)
	for _, u := range m.Unreadable {
		t.Logf("unreadable: %s %s#%d: %s", u.Package, u.File, u.Face, u.Reason)
	}
	if len(m.Classes) != 3755 {
		t.Errorf("classes = %d, want 3755", len(m.Classes))
	}
	if m.Counts.Images < 20000 || m.Counts.Images > 40000 {
		t.Errorf("images = %d, want 20,000-40,000", m.Counts.Images)
	}
	if s := res.ImagesPerClass; s.Min < 3 || s.Median < 6 || s.Max > 16 {
		t.Errorf("images per class %+v: want min >= 3, median >= 6, max <= 16", s)
	}
	if len(m.Packages) != 12 {
		t.Errorf("packages = %d, want 12", len(m.Packages))
	}
	for _, p := range m.Packages {
		if p.Version == "" {
			t.Errorf("package %s has no version", p.Name)
		}
	}
	r, err := dataset.Open(o.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkSplitsDisjoint(t, r)
	if err := r.Verify(); err != nil {
		t.Error(err)
	}
}

// checkSplitsDisjoint checks that open-set classes appear only in the
// openset split, held-out fonts only in heldout, and that every image is
// in exactly one split.
func checkSplitsDisjoint(t *testing.T, r *dataset.Reader) {
	t.Helper()
	m := r.Manifest()
	seen := make([]int, r.Len())
	classSplits := map[int]map[dataset.Split]bool{}
	for _, s := range dataset.AllSplits() {
		for _, i := range r.Split(s) {
			seen[i]++
			mt := r.Meta(i)
			if mt.Split != s {
				t.Fatalf("image %d listed in %s has split %s", i, s, mt.Split)
			}
			if classSplits[mt.Class] == nil {
				classSplits[mt.Class] = map[dataset.Split]bool{}
			}
			classSplits[mt.Class][s] = true
			open := m.Classes[mt.Class].Split == "openset"
			held := m.Fonts[mt.Source].Heldout
			switch {
			case open && s != dataset.SplitOpenset:
				t.Fatalf("image %d of open-set class %s in split %s", i, m.Classes[mt.Class].ID, s)
			case !open && held && s != dataset.SplitHeldout:
				t.Fatalf("image %d of held-out font %d in split %s", i, mt.Source, s)
			case !open && !held && s != dataset.SplitTrain:
				t.Fatalf("image %d of a kept font in split %s", i, s)
			}
		}
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("image %d is in %d splits", i, n)
		}
	}
	for c, ss := range classSplits {
		if ss[dataset.SplitOpenset] && (ss[dataset.SplitTrain] || ss[dataset.SplitHeldout]) {
			t.Fatalf("class %d is both open-set and trained", c)
		}
	}
	if len(r.Split(dataset.SplitTrain)) == 0 || len(r.Split(dataset.SplitOpenset)) == 0 || len(r.Split(dataset.SplitHeldout)) == 0 {
		t.Errorf("a split is empty: train %d heldout %d openset %d", len(r.Split(dataset.SplitTrain)), len(r.Split(dataset.SplitHeldout)), len(r.Split(dataset.SplitOpenset)))
	}
}
