package glyphs

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/font/sfnt"

	"github.com/ffc-stream/ffc/internal/dataset"
)

const (
	fixture        = "testdata/wqy-subset.ttf"
	fixtureNear    = "testdata/wqy-subset-near.ttf"
	fixtureOblique = "testdata/wqy-subset-oblique.ttf"
	fixtureTofu    = "testdata/wqy-subset-tofu.ttf"
	fixtureChars   = "一二三中国人大小口日木水"
	tofuChars      = "山火金土石田" // mapped to the glyph of 口 in fixtureTofu
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseOne(t *testing.T, path string) Face {
	t.Helper()
	faces, bad, err := ParseFaces(readFile(t, path), path)
	if err != nil || len(bad) > 0 || len(faces) != 1 {
		t.Fatalf("%s: faces %d, bad %v, err %v", path, len(faces), bad, err)
	}
	return faces[0]
}

func render(t *testing.T, f Face, size int, ch rune) ([]byte, Outcome) {
	t.Helper()
	r, err := NewRenderer(f.Font, size)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, size*size)
	o, err := r.Render(ch, img)
	if err != nil {
		t.Fatal(err)
	}
	return img, o
}

func TestRanges(t *testing.T) {
	cases := []struct {
		name        string
		n           int
		first, last rune
		has         []rune
	}{
		// 啊 is GB2312 B0A1 (the first level-1 cell), 座 D7F9 (the last).
		{RangeGB2312L1, 3755, 0x4E00, 0x9F9F, []rune("啊座中国一")},
		{RangeURO, 20992, 0x4E00, 0x9FFF, nil},
		{RangeHangul, 11172, 0xAC00, 0xD7A3, []rune("한국")},
	}
	for _, c := range cases {
		r, err := Range(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != c.n || r[0] != c.first || r[len(r)-1] != c.last {
			t.Errorf("%s: %d chars %U..%U, want %d %U..%U", c.name, len(r), r[0], r[len(r)-1], c.n, c.first, c.last)
		}
		for i := 1; i < len(r); i++ {
			if r[i] <= r[i-1] {
				t.Fatalf("%s: not ascending at %d", c.name, i)
			}
		}
		for _, h := range c.has {
			if _, ok := slicesIndex(r, h); !ok {
				t.Errorf("%s lacks %c", c.name, h)
			}
		}
	}
	// GB2312 level 1 lies inside the URO block: the union is the block.
	u, err := Chars([]string{RangeGB2312L1, RangeURO})
	if err != nil || len(u) != 20992 {
		t.Errorf("gb2312-1 ∪ uro: %d chars, %v", len(u), err)
	}
	if _, err := Range("gb2312-2"); err == nil || !strings.Contains(err.Error(), "unknown range") {
		t.Errorf("unknown range: %v", err)
	}
	if _, err := Chars(nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty range: %v", err)
	}
}

func slicesIndex(r []rune, c rune) (int, bool) {
	for i, x := range r {
		if x == c {
			return i, true
		}
	}
	return 0, false
}

func TestRenderFixture(t *testing.T) {
	f := parseOne(t, fixture)
	if f.Family != "WenQuanYi Micro Hei" || f.Style != "Regular" {
		t.Errorf("names %q/%q", f.Family, f.Style)
	}
	for _, size := range []int{32, 64} {
		for _, ch := range fixtureChars {
			img, o := render(t, f, size, ch)
			if o != Rendered {
				t.Fatalf("%d px %c: outcome %d", size, ch, o)
			}
			x0, y0, x1, y1 := inkBox(img, size)
			// Nothing in the outer pixel; the ink box centred within half a
			// pixel (measured: 0 or 0.5).
			if x0 < 1 || y0 < 1 || x1 > size-2 || y1 > size-2 {
				t.Errorf("%d px %c: ink box (%d,%d)-(%d,%d) touches the border", size, ch, x0, y0, x1, y1)
			}
			if mid := float64(size-1) / 2; abs(float64(x0+x1)/2-mid) > 0.5 || abs(float64(y0+y1)/2-mid) > 0.5 {
				t.Errorf("%d px %c: ink box (%d,%d)-(%d,%d) not centred", size, ch, x0, y0, x1, y1)
			}
		}
		// One scale for the whole face: 一 stays a flat bar, 口 a box.
		img, _ := render(t, f, size, '一')
		x0, y0, x1, y1 := inkBox(img, size)
		if w, h := x1-x0+1, y1-y0+1; w < size*6/10 || h > size/6 {
			t.Errorf("%d px 一: ink %dx%d, want a wide flat bar", size, w, h)
		}
	}
	if _, o := render(t, f, 32, '啊'); o != Unmapped {
		t.Errorf("啊 (not in the subset): outcome %d, want Unmapped", o)
	}
	if _, err := NewRenderer(f.Font, 4); err == nil {
		t.Error("size 4: no error")
	}
}

// inkBox is the bounding box of the pixels with any ink.
func inkBox(img []byte, size int) (x0, y0, x1, y1 int) {
	x0, y0, x1, y1 = size, size, -1, -1
	for y := range size {
		for x := range size {
			if img[y*size+x] > 0 {
				x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x), max(y1, y)
			}
		}
	}
	return x0, y0, x1, y1
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestTofu(t *testing.T) {
	f := parseOne(t, fixtureTofu)
	chars := []rune(fixtureChars + tofuChars)
	var imgs [][]byte
	for _, c := range chars {
		img, o := render(t, f, 32, c)
		if o != Rendered {
			t.Fatalf("%c: outcome %d", c, o)
		}
		imgs = append(imgs, img)
	}
	cases := []struct {
		share int
		want  string
	}{
		{4, "口" + tofuChars}, // 7 chars share one bitmap
		{7, "口" + tofuChars},
		{8, ""},
	}
	for _, c := range cases {
		var got []rune
		for i, isTofu := range Tofu(imgs, c.share) {
			if isTofu {
				got = append(got, chars[i])
			}
		}
		if string(got) != c.want {
			t.Errorf("share %d: tofu %q, want %q", c.share, string(got), c.want)
		}
	}
}

func TestDedup(t *testing.T) {
	base := make([]byte, 32*32)
	for i := range base {
		if (i/32+i%32)%5 == 0 {
			base[i] = 255
		}
	}
	flip := func(n int) []byte {
		b := bytes.Clone(base)
		for i := range n {
			b[i*7] = 255 - b[i*7]
		}
		return b
	}
	faint := bytes.Clone(base)
	for i := range faint {
		if faint[i] == 0 {
			faint[i] = 100 // below the binarisation threshold
		}
	}
	cases := []struct {
		name string
		imgs [][]byte
		max  int
		keep []bool
	}{
		{"identical", [][]byte{base, bytes.Clone(base)}, 20, []bool{true, false}},
		{"faint background", [][]byte{base, faint}, 0, []bool{true, false}},
		{"5 px apart", [][]byte{base, flip(5)}, 20, []bool{true, false}},
		{"20 px apart", [][]byte{base, flip(20)}, 20, []bool{true, false}},
		{"21 px apart", [][]byte{base, flip(21)}, 20, []bool{true, true}},
		{"first kept wins", [][]byte{flip(30), base, flip(25)}, 20, []bool{true, true, false}},
	}
	for _, c := range cases {
		bms := make([]Bitmap, len(c.imgs))
		for i, im := range c.imgs {
			bms[i] = Binarize(im)
		}
		got := Dedup(bms, c.max)
		for i := range got {
			if got[i] != c.keep[i] {
				t.Errorf("%s: keep %v, want %v", c.name, got, c.keep)
				break
			}
		}
	}
}

// misalignedTTC packs fonts into a collection whose tables start at odd
// offsets, as in some Debian .ttc files that sfnt rejects.
func misalignedTTC(t *testing.T, fonts ...[]byte) []byte {
	t.Helper()
	hdr := 12 + 4*len(fonts)
	out := make([]byte, hdr)
	copy(out, "ttcf")
	binary.BigEndian.PutUint32(out[4:], 0x00010000)
	binary.BigEndian.PutUint32(out[8:], uint32(len(fonts)))
	for fi, f := range fonts {
		n := int(binary.BigEndian.Uint16(f[4:]))
		dirAt := len(out)
		binary.BigEndian.PutUint32(out[12+4*fi:], uint32(dirAt))
		out = append(out, f[:12+16*n]...)
		for ti := range n {
			rec := f[12+16*ti:]
			off, length := binary.BigEndian.Uint32(rec[8:]), binary.BigEndian.Uint32(rec[12:])
			out = append(out, 0) // one byte of padding: misaligned
			binary.BigEndian.PutUint32(out[dirAt+12+16*ti+8:], uint32(len(out)))
			out = append(out, f[off:off+length]...)
		}
	}
	return out
}

func TestStandaloneRepacksMisalignedCollection(t *testing.T) {
	a, o := readFile(t, fixture), readFile(t, fixtureOblique)
	ttc := misalignedTTC(t, a, o)
	// The fixture must really be one sfnt rejects.
	c, err := sfnt.ParseCollection(ttc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Font(0); err == nil {
		t.Fatal("sfnt parsed the misaligned face: the test no longer tests anything")
	}
	faces, bad, err := ParseFaces(ttc, "test.ttc")
	if err != nil || len(bad) != 0 || len(faces) != 2 {
		t.Fatalf("faces %d bad %v err %v", len(faces), bad, err)
	}
	for i, want := range []Face{parseOne(t, fixture), parseOne(t, fixtureOblique)} {
		f := faces[i]
		if !f.Repacked || f.Index != i || f.Family != want.Family {
			t.Errorf("face %d: repacked %v index %d family %q (want %q)", i, f.Repacked, f.Index, f.Family, want.Family)
		}
		for _, ch := range fixtureChars {
			got, _ := render(t, f, 32, ch)
			exp, _ := render(t, want, 32, ch)
			if !bytes.Equal(got, exp) {
				t.Fatalf("face %d %c: repacked render differs from the original", i, ch)
			}
		}
	}
}

func TestCorruptFonts(t *testing.T) {
	a := readFile(t, fixture)
	noise := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	hugeTTC := append([]byte("ttcf\x00\x01\x00\x00\x00\x00\x03\xe8"), make([]byte, 64)...)
	// Table directory pointing past the end of the file.
	badDir := bytes.Clone(a[:12+16*int(binary.BigEndian.Uint16(a[4:]))])
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"ten bytes", a[:10]},
		{"truncated", a[:len(a)/2]},
		{"noise", noise},
		{"collection claiming 1000 faces", hugeTTC},
		{"directory only", badDir},
	}
	for _, c := range cases {
		faces, bad, err := ParseFaces(c.data, c.name)
		if err == nil {
			t.Errorf("%s: parsed %d faces (%v), want an error", c.name, len(faces), bad)
			continue
		}
		if !strings.Contains(err.Error(), c.name) {
			t.Errorf("%s: error %q does not name the file", c.name, err)
		}
	}

	// A font whose directory is sound but whose glyph data is garbage
	// parses (sfnt reads glyphs lazily); rendering must report the glyphs
	// that fail to load, not panic or return garbage.
	g := bytes.Clone(a)
	n := int(binary.BigEndian.Uint16(g[4:]))
	for ti := range n {
		rec := g[12+16*ti:]
		if string(rec[:4]) == "glyf" {
			off, length := binary.BigEndian.Uint32(rec[8:]), binary.BigEndian.Uint32(rec[12:])
			for i := off; i < off+length; i++ {
				g[i] = 0xff
			}
		}
	}
	faces, _, err := ParseFaces(g, "garbage glyf")
	if err != nil {
		t.Fatalf("garbage glyf: %v", err)
	}
	r, err := RenderFace(context.Background(), faces[0], []rune(fixtureChars), 32, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Chars) != 0 || r.GlyphErrors == 0 || r.FirstError == "" {
		t.Errorf("garbage glyf: rendered %d, glyph errors %d (%q); want none rendered and the errors counted", len(r.Chars), r.GlyphErrors, r.FirstError)
	}
}

// localPackage copies fixture fonts into a folder laid out like a package.
func localPackage(t *testing.T, name string, files map[string][]byte) LocalPackage {
	t.Helper()
	dir := t.TempDir()
	for rel, b := range files {
		p := filepath.Join(dir, "usr/share/fonts/truetype", name, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return LocalPackage{Name: name, Version: "1.0-test", Dir: dir}
}

func fixturePackages(t *testing.T) []LocalPackage {
	return []LocalPackage{
		localPackage(t, "fonts-a", map[string][]byte{
			"a.ttf":       readFile(t, fixture),
			"near.ttf":    readFile(t, fixtureNear),
			"oblique.TTF": readFile(t, fixtureOblique),
			"README":      []byte("not a font"),
		}),
		localPackage(t, "fonts-b", map[string][]byte{
			"tofu.ttf":      readFile(t, fixtureTofu),
			"copy-of-a.ttf": readFile(t, fixture), // identical file: skipped
			"broken.otf":    []byte("OTTO but not really a font at all"),
		}),
	}
}

func testOptions(t *testing.T, pkgs []LocalPackage) Options {
	o := DefaultOptions()
	o.Local = pkgs
	o.OutDir = t.TempDir()
	o.CacheDir = t.TempDir()
	o.OpensetFrac = 0.25
	o.HeldoutFrac = 0.5
	o.Workers = 2
	return o
}

func TestBuildFromFixtures(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t, fixturePackages(t))
	res, err := Build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	t.Logf("classes %d images %d fonts %d dropped %+v unreadable %+v dup files %v", len(m.Classes), m.Counts.Images, len(m.Fonts), res.Dropped, m.Unreadable, res.DuplicateFiles)

	// 12 classes: the tofu characters exist only as tofu.
	if len(m.Classes) != 12 {
		t.Errorf("classes %d, want 12", len(m.Classes))
	}
	if res.Dropped.Tofu != 7 {
		t.Errorf("tofu dropped %d, want 7", res.Dropped.Tofu)
	}
	if len(res.DuplicateFiles) != 1 || !strings.Contains(res.DuplicateFiles[0], "copy-of-a.ttf") {
		t.Errorf("duplicate files %v, want copy-of-a.ttf", res.DuplicateFiles)
	}
	if len(m.Unreadable) != 1 || m.Unreadable[0].Package != "fonts-b" || !strings.Contains(m.Unreadable[0].File, "broken.otf") || m.Unreadable[0].Reason == "" {
		t.Errorf("unreadable %+v, want fonts-b broken.otf with a reason", m.Unreadable)
	}
	fontID := map[string]int{}
	for _, f := range m.Fonts {
		fontID[filepath.Base(f.File)] = f.ID
		if f.Package == "" || f.Version != "1.0-test" || f.Family == "" {
			t.Errorf("font %+v lacks package, version or family", f)
		}
	}
	if len(fontID) != 4 {
		t.Fatalf("fonts %v, want a.ttf, near.ttf, oblique.TTF, tofu.ttf", fontID)
	}
	if n := m.Fonts[fontID["tofu.ttf"]].Images; n != 0 {
		t.Errorf("tofu font kept %d images; its glyphs are tofu or copies of a.ttf", n)
	}
	if n := m.Fonts[fontID["a.ttf"]].Images; n != 12 {
		t.Errorf("a.ttf kept %d images, want all 12", n)
	}

	// Near-duplicates: near.ttf keeps exactly the characters whose binarised
	// render differs from a.ttf's in more than the threshold.
	a, near, obl := parseOne(t, fixture), parseOne(t, fixtureNear), parseOne(t, fixtureOblique)
	maxDiff := int(o.DupMaxDiff * 32 * 32)
	r, err := dataset.Open(o.OutDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wantNear, wantObl := 0, 0
	for _, ch := range fixtureChars {
		ia, _ := render(t, a, 32, ch)
		in, _ := render(t, near, 32, ch)
		io, _ := render(t, obl, 32, ch)
		if Diff(Binarize(ia), Binarize(in)) > maxDiff {
			wantNear++
		}
		if Diff(Binarize(ia), Binarize(io)) > maxDiff && Diff(Binarize(in), Binarize(io)) > maxDiff {
			wantObl++
		}
	}
	if got := m.Fonts[fontID["near.ttf"]].Images; got != wantNear || got > 4 {
		t.Errorf("near.ttf kept %d images, want %d (and few)", got, wantNear)
	}
	if got := m.Fonts[fontID["oblique.TTF"]].Images; got != wantObl || got < 8 {
		t.Errorf("oblique.TTF kept %d images, want %d (and most)", got, wantObl)
	}

	// Every stored image is the render of its class's character by its font.
	byFile := map[int]Face{fontID["a.ttf"]: a, fontID["near.ttf"]: near, fontID["oblique.TTF"]: obl}
	for i := range r.Len() {
		img, mt, err := r.Image(i)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := render(t, byFile[mt.Source], 32, rune(m.Classes[mt.Class].Codepoint))
		if !bytes.Equal(img, want) {
			t.Fatalf("image %d (class %s font %d) is not its render", i, m.Classes[mt.Class].ID, mt.Source)
		}
	}
	checkSplitsDisjoint(t, r)
	if err := r.Verify(); err != nil {
		t.Error(err)
	}

	// A rerun renders nothing and writes the same bytes.
	o2 := o
	o2.OutDir = t.TempDir()
	res2, err := Build(ctx, o2)
	if err != nil {
		t.Fatal(err)
	}
	if res2.FacesCached != res2.Faces {
		t.Errorf("rerun: %d of %d faces from the cache", res2.FacesCached, res2.Faces)
	}
	if res2.Manifest.ContentSHA256 != m.ContentSHA256 {
		t.Error("rerun: different content hash")
	}
	mj1, _ := os.ReadFile(filepath.Join(o.OutDir, dataset.ManifestFile))
	mj2, _ := os.ReadFile(filepath.Join(o2.OutDir, dataset.ManifestFile))
	if !bytes.Equal(mj1, mj2) {
		t.Error("rerun: different manifest")
	}
}

func TestBuildSplitsFollowSeed(t *testing.T) {
	ctx := context.Background()
	pkgs := fixturePackages(t)
	splits := map[uint64]string{}
	for _, seed := range []uint64{1, 2, 3, 1} {
		o := testOptions(t, pkgs)
		o.Seed = seed
		res, err := Build(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		var s strings.Builder
		for _, c := range res.Manifest.Classes {
			s.WriteString(c.Split[:1])
		}
		for _, f := range res.Manifest.Fonts {
			s.WriteString(map[bool]string{true: "H", false: "k"}[f.Heldout])
		}
		if res.Manifest.Counts.OpensetClasses != 3 {
			t.Errorf("seed %d: %d open-set classes, want 25%% of 12", seed, res.Manifest.Counts.OpensetClasses)
		}
		if prev, ok := splits[seed]; ok && prev != s.String() {
			t.Errorf("seed %d: splits %s then %s", seed, prev, s.String())
		}
		splits[seed] = s.String()
	}
	if splits[1] == splits[2] && splits[2] == splits[3] {
		t.Errorf("seeds 1, 2, 3 give the same splits %s", splits[1])
	}
}

func TestBuildBadInput(t *testing.T) {
	ctx := context.Background()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	broken := []LocalPackage{localPackage(t, "fonts-broken", map[string][]byte{"x.ttf": []byte("garbage, not a font")})}
	cases := []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"empty range", func(o *Options) { o.Ranges = []string{" "} }, "empty character range"},
		{"no range", func(o *Options) { o.Ranges = nil }, "empty character range"},
		{"unknown range", func(o *Options) { o.Ranges = []string{"latin"} }, "unknown range"},
		{"unwritable output", func(o *Options) { o.OutDir = filepath.Join(notDir, "out") }, "output dir"},
		{"only corrupt fonts", func(o *Options) { o.Local = broken }, "no images"},
		{"no packages", func(o *Options) { o.Local = nil }, "no packages"},
		{"bad fraction", func(o *Options) { o.OpensetFrac = 1.5 }, "fraction"},
		{"bad size", func(o *Options) { o.Size = 4 }, "size"},
	}
	for _, c := range cases {
		o := testOptions(t, fixturePackages(t)[:1])
		c.mod(&o)
		_, err := Build(ctx, o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}

// TestFetchNamesMissingPackages runs Fetch against a stand-in apt-get that
// knows only packages named good-*.
func TestFetchNamesMissingPackages(t *testing.T) {
	bin := t.TempDir()
	script := `#!/bin/sh
[ "$1" = download ] || exit 2
shift
rc=0
for p in "$@"; do
  case "$p" in
    good-*) echo deb > "${p}_1.0_all.deb" ;;
    *) echo "E: Unable to locate package $p" >&2; rc=100 ;;
  esac
done
exit $rc
`
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cache := t.TempDir()
	_, err := Fetch(context.Background(), []string{"good-one", "missing-a", "missing-b"}, FetchOptions{CacheDir: cache})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"missing-a", "missing-b", "Unable to locate package", "2 of 3"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "good-one") {
		t.Errorf("error %q names a package that was fetched", msg)
	}
	// The package that was fetched is kept for the next run.
	if d, _ := findDeb(filepath.Join(cache, "debs"), "good-one"); d == "" {
		t.Error("good-one's .deb was not kept")
	}
}

func TestPackageLists(t *testing.T) {
	ci, err := PackageList(PackagesCI)
	if err != nil || len(ci) != 12 {
		t.Errorf("ci list: %d packages, %v", len(ci), err)
	}
	full, err := PackageList(PackagesFull)
	if err != nil || len(full) != 71 {
		t.Errorf("full list: %d packages, %v", len(full), err)
	}
	f := filepath.Join(t.TempDir(), "list")
	os.WriteFile(f, []byte("# comment\nfonts-x\n\nfonts-y # why\nfonts-x\n"), 0o644)
	got, err := PackageList(f)
	if err != nil || strings.Join(got, ",") != "fonts-x,fonts-y" {
		t.Errorf("file list: %v, %v", got, err)
	}
	if _, err := PackageList(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing list file: no error")
	}
}

func BenchmarkRender(b *testing.B) {
	faces, _, err := ParseFaces(readFile(b, fixture), fixture)
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewRenderer(faces[0].Font, 32)
	if err != nil {
		b.Fatal(err)
	}
	chars := []rune(fixtureChars)
	img := make([]byte, 32*32)
	for i := 0; b.Loop(); i++ {
		if _, err := r.Render(chars[i%len(chars)], img); err != nil {
			b.Fatal(err)
		}
	}
}
