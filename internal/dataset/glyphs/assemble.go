package glyphs

import (
	"encoding/json"
	"fmt"

	"github.com/ffc-stream/ffc/internal/dataset"
)

// selImage is an image selected for a class, from the font numbered font
// in the manifest.
type selImage struct {
	font int
	img  []byte
}

// assemble applies the filters (tofu per face, near-duplicates per class),
// numbers the classes and fonts, chooses the splits and returns the
// manifest with the images of each class in font order.
func assemble(jobs []faceJob, pkgs []LocalPackage, renders []*FaceRender, chars []rune, o Options, res *Result) (*dataset.Manifest, [][]selImage, error) {
	m := &dataset.Manifest{Kind: dataset.KindGlyphs}
	byChar, pkgFonts := addFonts(m, jobs, pkgs, renders, o.TofuShare, &res.Dropped)
	maxDiff := int(o.DupMaxDiff * float64(o.Size*o.Size))
	sel, ids := addClasses(m, chars, byChar, maxDiff, &res.Dropped)
	if len(m.Classes) == 0 {
		return nil, nil, fmt.Errorf("glyphs: no images: %d faces, %d unreadable, none renders a character of %v", len(jobs), len(m.Unreadable), o.Ranges)
	}
	if err := splitClasses(m, ids, o); err != nil {
		return nil, nil, err
	}
	if err := holdOutFonts(m, sel, o); err != nil {
		return nil, nil, err
	}
	for i, p := range pkgs {
		m.Packages = append(m.Packages, dataset.Package{Name: p.Name, Version: p.Version, Deb: p.Deb, Fonts: pkgFonts[i]})
	}
	params, err := json.Marshal(Params{
		Ranges: o.Ranges, Size: o.Size, Margin: Margin(o.Size),
		Layout:        "em box scaled to size-2*margin for every glyph of a face; ink box centred; shrunk to fit when the ink would overflow",
		RenderVersion: renderVersion, MinInk: MinInk, TofuShare: o.TofuShare,
		DupMaxDiff: o.DupMaxDiff, DupMaxPixels: maxDiff,
		Seed: o.Seed, OpensetFrac: o.OpensetFrac, HeldoutFrac: o.HeldoutFrac,
	})
	if err != nil {
		return nil, nil, err
	}
	m.Params = params
	return m, sel, nil
}

// addFonts records the faces that can be read as the fonts of m, in job
// order, and the others as unreadable. It drops each font's tofu images
// and returns the rest by character, and the number of fonts per package.
func addFonts(m *dataset.Manifest, jobs []faceJob, pkgs []LocalPackage, renders []*FaceRender, tofuShare int, dropped *Dropped) (map[rune][]selImage, []int) {
	pkgFonts := make([]int, len(pkgs))
	byChar := make(map[rune][]selImage)
	for ji, j := range jobs {
		r := renders[ji]
		p := pkgs[j.file.pkg]
		if r.Err != "" {
			m.Unreadable = append(m.Unreadable, dataset.Unreadable{Package: p.Name, File: j.file.rel, Face: j.face, Reason: r.Err})
			continue
		}
		font := len(m.Fonts)
		pkgFonts[j.file.pkg]++
		m.Fonts = append(m.Fonts, dataset.Font{
			Family: r.Family, Style: r.Style, Package: p.Name, Version: p.Version,
			File: j.file.rel, Face: j.face, Repacked: r.Repacked,
		})
		dropped.Unmapped += r.Unmapped
		dropped.Empty += r.Empty
		dropped.GlyphErrors += r.GlyphErrors
		imgs := make([][]byte, len(r.Chars))
		for i := range r.Chars {
			imgs[i] = r.Image(i)
		}
		tofu := Tofu(imgs, tofuShare)
		for i, c := range r.Chars {
			if tofu[i] {
				dropped.Tofu++
				continue
			}
			byChar[c] = append(byChar[c], selImage{font: font, img: imgs[i]})
		}
	}
	return byChar, pkgFonts
}

// addClasses makes a class of m of every character that has images, in
// chars order, and drops near-duplicate images within each class. It
// returns the images kept per class and the class IDs.
func addClasses(m *dataset.Manifest, chars []rune, byChar map[rune][]selImage, maxDiff int, dropped *Dropped) ([][]selImage, []string) {
	var sel [][]selImage
	var ids []string
	for _, c := range chars {
		imgs := byChar[c]
		if len(imgs) == 0 {
			dropped.EmptyClasses++
			continue
		}
		bms := make([]Bitmap, len(imgs))
		for i, im := range imgs {
			bms[i] = Binarize(im.img)
		}
		keep := Dedup(bms, maxDiff)
		kept := imgs[:0]
		for i, im := range imgs {
			if keep[i] {
				kept = append(kept, im)
			} else {
				dropped.Duplicates++
			}
		}
		id := fmt.Sprintf("u%04x", c)
		m.Classes = append(m.Classes, dataset.Class{ID: id, Codepoint: int(c), Char: string(c)})
		ids = append(ids, id)
		sel = append(sel, kept)
	}
	return sel, ids
}

// splitClasses puts o.OpensetFrac of the classes, chosen by o.Seed, in the
// open set and the rest in train.
func splitClasses(m *dataset.Manifest, ids []string, o Options) error {
	open, err := dataset.Select(ids, o.Seed, "openset", o.OpensetFrac)
	if err != nil {
		return err
	}
	for i := range m.Classes {
		m.Classes[i].Split = "train"
		if open[i] {
			m.Classes[i].Split = "openset"
		}
	}
	return nil
}

// holdOutFonts holds out o.HeldoutFrac of the fonts, chosen by o.Seed among
// those that kept at least one image.
func holdOutFonts(m *dataset.Manifest, sel [][]selImage, o Options) error {
	used := make([]int, len(m.Fonts))
	for _, imgs := range sel {
		for _, im := range imgs {
			used[im.font]++
		}
	}
	var keys []string
	var keyFont []int
	for i, f := range m.Fonts {
		if used[i] > 0 {
			keys = append(keys, fmt.Sprintf("%s/%s#%d", f.Package, f.File, f.Face))
			keyFont = append(keyFont, i)
		}
	}
	held, err := dataset.Select(keys, o.Seed, "heldout", o.HeldoutFrac)
	if err != nil {
		return err
	}
	for i, h := range held {
		m.Fonts[keyFont[i]].Heldout = h
	}
	return nil
}
