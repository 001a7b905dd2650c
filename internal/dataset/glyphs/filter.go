package glyphs

import (
	"hash/maphash"
	"math/bits"
)

// Defaults of the filters.
const (
	// DefaultTofuShare: within one face, a bitmap drawn for this many or
	// more different characters is tofu (a placeholder box or a fallback
	// glyph), and every image of it is dropped.
	DefaultTofuShare = 4
	// DefaultDupMaxDiff: two images of one class whose binarised forms
	// (threshold 128) differ in at most this fraction of the pixels are
	// near-duplicates (e.g. the proportional and monospaced faces of one
	// family, or one design in two neighbouring weights); the image from
	// the later font is dropped. 0.02 is 20 of 1,024 pixels at 32×32.
	DefaultDupMaxDiff = 0.02
)

// Bitmap is a binarised image: one bit per pixel, set where the pixel is
// at least 128.
type Bitmap []uint64

// Binarize packs img's pixels at or above 128 into a Bitmap.
func Binarize(img []byte) Bitmap {
	b := make(Bitmap, (len(img)+63)/64)
	for i, v := range img {
		if v >= 128 {
			b[i>>6] |= 1 << (i & 63)
		}
	}
	return b
}

// Diff is the number of pixels in which a and b differ.
func Diff(a, b Bitmap) int {
	n := 0
	for i := range a {
		n += bits.OnesCount64(a[i] ^ b[i])
	}
	return n
}

// Tofu marks, among the images one face gave to different characters,
// those whose exact bitmap occurs share or more times.
func Tofu(imgs [][]byte, share int) []bool {
	seed := maphash.MakeSeed()
	count := make(map[uint64]int, len(imgs))
	hs := make([]uint64, len(imgs))
	for i, img := range imgs {
		hs[i] = maphash.Bytes(seed, img)
		count[hs[i]]++
	}
	tofu := make([]bool, len(imgs))
	for i, h := range hs {
		tofu[i] = count[h] >= share
	}
	return tofu
}

// Dedup keeps images in order, dropping each whose bitmap differs from an
// already kept one in at most maxDiff pixels. It returns keep[i].
func Dedup(bms []Bitmap, maxDiff int) []bool {
	keep := make([]bool, len(bms))
	kept := make([]Bitmap, 0, len(bms))
outer:
	for i, b := range bms {
		for _, k := range kept {
			if Diff(b, k) <= maxDiff {
				continue outer
			}
		}
		keep[i] = true
		kept = append(kept, b)
	}
	return keep
}
