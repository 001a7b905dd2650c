package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
)

// Reader reads a file set. Images stay on disk and are read with ReadAt;
// only the index (12 bytes per image) and the manifest are held in memory.
// A Reader is safe for concurrent use.
type Reader struct {
	dir     string
	f       *os.File
	man     *Manifest
	size    int
	metas   []Meta
	bySplit [numSplits][]int
	byClass [][]int
}

// Open opens the file set in dir.
func Open(dir string) (*Reader, error) {
	man, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if man.ImageSize <= 0 {
		return nil, fmt.Errorf("dataset: %s: image size %d", dir, man.ImageSize)
	}
	idx, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		return nil, fmt.Errorf("dataset: read index: %w", err)
	}
	if len(idx) < indexHeaderSize || string(idx[:8]) != indexMagic ||
		binary.LittleEndian.Uint32(idx[8:]) != FormatVersion ||
		binary.LittleEndian.Uint32(idx[12:]) != indexRecordSize ||
		(len(idx)-indexHeaderSize)%indexRecordSize != 0 {
		return nil, fmt.Errorf("dataset: %s: not an index file of format %d", filepath.Join(dir, IndexFile), FormatVersion)
	}
	n := (len(idx) - indexHeaderSize) / indexRecordSize
	if n != man.Counts.Images {
		return nil, fmt.Errorf("dataset: %s: index has %d images, manifest %d", dir, n, man.Counts.Images)
	}
	f, err := os.Open(filepath.Join(dir, ImagesFile))
	if err != nil {
		return nil, fmt.Errorf("dataset: open images: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dataset: open images: %w", err)
	}
	if want := int64(n) * int64(man.ImageSize*man.ImageSize); st.Size() != want {
		f.Close()
		return nil, fmt.Errorf("dataset: %s: %d bytes, want %d", filepath.Join(dir, ImagesFile), st.Size(), want)
	}
	r := &Reader{dir: dir, f: f, man: man, size: man.ImageSize, metas: make([]Meta, n), byClass: make([][]int, len(man.Classes))}
	for i := range r.metas {
		rec := idx[indexHeaderSize+i*indexRecordSize:]
		m := Meta{Class: int(binary.LittleEndian.Uint32(rec)), Source: int(binary.LittleEndian.Uint32(rec[4:])), Split: Split(rec[8])}
		if m.Class >= len(man.Classes) || m.Split >= numSplits {
			f.Close()
			return nil, fmt.Errorf("dataset: %s: image %d has invalid labels %+v", dir, i, m)
		}
		r.metas[i] = m
		r.bySplit[m.Split] = append(r.bySplit[m.Split], i)
		r.byClass[m.Class] = append(r.byClass[m.Class], i)
	}
	return r, nil
}

// Close releases the images file.
func (r *Reader) Close() error { return r.f.Close() }

// Dir is the directory the set was opened from.
func (r *Reader) Dir() string { return r.dir }

// Len is the number of images.
func (r *Reader) Len() int { return len(r.metas) }

// ImageSize is the side of the square images in pixels.
func (r *Reader) ImageSize() int { return r.size }

// Manifest is the set's manifest; do not modify it.
func (r *Reader) Manifest() *Manifest { return r.man }

// Classes are the classes, indexed by label.
func (r *Reader) Classes() []Class { return r.man.Classes }

// Meta returns the labels of image i.
func (r *Reader) Meta(i int) Meta { return r.metas[i] }

// Split returns the indices of the images in split s, ascending.
func (r *Reader) Split(s Split) []int {
	if s >= numSplits {
		return nil
	}
	return r.bySplit[s]
}

// ClassImages returns the indices of the images of class label, ascending.
func (r *Reader) ClassImages(label int) []int { return r.byClass[label] }

// Image reads image i into a new buffer.
func (r *Reader) Image(i int) ([]byte, Meta, error) {
	buf := make([]byte, r.size*r.size)
	m, err := r.ReadImage(i, buf)
	return buf, m, err
}

// ReadImage reads image i into dst, which must hold ImageSize² bytes.
func (r *Reader) ReadImage(i int, dst []byte) (Meta, error) {
	if i < 0 || i >= len(r.metas) {
		return Meta{}, fmt.Errorf("dataset: image %d outside 0..%d", i, len(r.metas)-1)
	}
	n := r.size * r.size
	if len(dst) < n {
		return Meta{}, fmt.Errorf("dataset: buffer of %d bytes for a %d-byte image", len(dst), n)
	}
	if _, err := r.f.ReadAt(dst[:n], int64(i)*int64(n)); err != nil {
		return Meta{}, fmt.Errorf("dataset: read image %d: %w", i, err)
	}
	return r.metas[i], nil
}

// Verify recomputes the content hash and compares it with the manifest.
func (r *Reader) Verify() error {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r.f, 0, int64(len(r.metas))*int64(r.size*r.size))); err != nil {
		return fmt.Errorf("dataset: verify: %w", err)
	}
	idx, err := os.ReadFile(filepath.Join(r.dir, IndexFile))
	if err != nil {
		return fmt.Errorf("dataset: verify: %w", err)
	}
	h.Write(idx)
	if got := hex.EncodeToString(h.Sum(nil)); got != r.man.ContentSHA256 {
		return fmt.Errorf("dataset: %s: content hash %s, manifest says %s", r.dir, got, r.man.ContentSHA256)
	}
	return nil
}

// Source returns the set as a Source: IDs are class labels and instances
// the class's images in index order.
func (r *Reader) Source() Source { return readerSource{r} }

type readerSource struct{ r *Reader }

func (s readerSource) ImageSize() int { return s.r.size }
func (s readerSource) NumIDs() uint64 { return uint64(len(s.r.byClass)) }
func (s readerSource) InstancesOf(id uint64) int {
	if id >= uint64(len(s.r.byClass)) {
		return 0
	}
	return len(s.r.byClass[id])
}
func (s readerSource) Image(id uint64, instance int) ([]byte, error) {
	if id >= uint64(len(s.r.byClass)) || instance < 0 || instance >= len(s.r.byClass[id]) {
		return nil, fmt.Errorf("dataset: no image %d of id %d", instance, id)
	}
	b, _, err := s.r.Image(s.r.byClass[id][instance])
	return b, err
}

// Gray wraps size×size pixels as an image (no copy).
func Gray(pix []byte, size int) *image.Gray {
	return &image.Gray{Pix: pix[:size*size], Stride: size, Rect: image.Rect(0, 0, size, size)}
}
