package dataset

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
)

// Meta labels one image.
type Meta struct {
	// Class is the label: an index into Manifest.Classes.
	Class int
	// Source is the font (index into Manifest.Fonts) for glyph sets, the
	// instance number for synthetic sets.
	Source int
	Split  Split
}

// index.bin layout: a 16-byte header (magic, version, record size), then one
// little-endian record per image: class uint32, source uint32, split uint8,
// three zero bytes.
const (
	indexMagic      = "FFCINDEX"
	indexHeaderSize = 16
	indexRecordSize = 12
)

// Writer creates a file set. Append images, then Commit with the manifest;
// nothing is visible under the final names until Commit succeeds.
type Writer struct {
	dir    string
	size   int
	images *os.File
	buf    *bufio.Writer
	hash   hash.Hash
	metas  []Meta
	done   bool
}

// Create starts a file set of size×size images in dir, creating dir.
func Create(dir string, size int) (*Writer, error) {
	if size <= 0 || size > 4096 {
		return nil, fmt.Errorf("dataset: image size %d outside 1..4096", size)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dataset: create output dir: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, ImagesFile+".tmp"))
	if err != nil {
		return nil, fmt.Errorf("dataset: create output: %w", err)
	}
	return &Writer{dir: dir, size: size, images: f, buf: bufio.NewWriterSize(f, 1<<20), hash: sha256.New()}, nil
}

// Len is the number of images appended so far.
func (w *Writer) Len() int { return len(w.metas) }

// Append adds one image (size*size bytes) with its labels.
func (w *Writer) Append(img []byte, m Meta) error {
	if w.done {
		return errors.New("dataset: append after commit or abort")
	}
	if len(img) != w.size*w.size {
		return fmt.Errorf("dataset: image has %d bytes, want %d", len(img), w.size*w.size)
	}
	if m.Class < 0 || m.Source < 0 || m.Split >= numSplits {
		return fmt.Errorf("dataset: invalid meta %+v", m)
	}
	if _, err := w.buf.Write(img); err != nil {
		return fmt.Errorf("dataset: write images: %w", err)
	}
	w.hash.Write(img)
	w.metas = append(w.metas, m)
	return nil
}

// Commit writes index.bin and manifest.json and moves the images into
// place. It fills m's Format, ImageSize, per-class and per-font image
// counts, Counts and ContentSHA256; the caller provides Kind, Classes
// (label, id, split), Fonts, Packages, Unreadable and Params.
func (w *Writer) Commit(m *Manifest) (err error) {
	if w.done {
		return errors.New("dataset: commit after commit or abort")
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	if err := w.fillManifest(m); err != nil {
		return err
	}
	if err := w.buf.Flush(); err != nil {
		return fmt.Errorf("dataset: write images: %w", err)
	}
	if err := w.images.Close(); err != nil {
		return fmt.Errorf("dataset: write images: %w", err)
	}
	idx := make([]byte, indexHeaderSize+indexRecordSize*len(w.metas))
	copy(idx, indexMagic)
	binary.LittleEndian.PutUint32(idx[8:], FormatVersion)
	binary.LittleEndian.PutUint32(idx[12:], indexRecordSize)
	for i, mt := range w.metas {
		r := idx[indexHeaderSize+i*indexRecordSize:]
		binary.LittleEndian.PutUint32(r[0:], uint32(mt.Class))
		binary.LittleEndian.PutUint32(r[4:], uint32(mt.Source))
		r[8] = byte(mt.Split)
	}
	w.hash.Write(idx)
	// Without a manifest the directory is not a file set: remove the old
	// one first so that a crash below never pairs it with new images.
	if err := os.Remove(filepath.Join(w.dir, ManifestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dataset: replace manifest: %w", err)
	}
	m.ContentSHA256 = hex.EncodeToString(w.hash.Sum(nil))
	if err := writeFileAtomic(filepath.Join(w.dir, IndexFile), idx); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(w.dir, ImagesFile+".tmp"), filepath.Join(w.dir, ImagesFile)); err != nil {
		return fmt.Errorf("dataset: move images into place: %w", err)
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("dataset: encode manifest: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(w.dir, ManifestFile), append(js, '\n')); err != nil {
		return err
	}
	w.done = true
	return nil
}

func (w *Writer) fillManifest(m *Manifest) error {
	m.Format = FormatVersion
	m.ImageSize = w.size
	c := Counts{Classes: len(m.Classes), Images: len(w.metas)}
	trainImgs := make([]int, len(m.Classes))
	for i := range m.Classes {
		cl := &m.Classes[i]
		cl.Label, cl.Images = i, 0
		switch cl.Split {
		case "train":
			c.TrainClasses++
		case "openset":
			c.OpensetClasses++
		default:
			return fmt.Errorf("dataset: class %s: split %q, want train or openset", cl.ID, cl.Split)
		}
	}
	for i := range m.Fonts {
		m.Fonts[i].ID, m.Fonts[i].Images = i, 0
		if m.Fonts[i].Heldout {
			c.HeldoutFonts++
		}
	}
	c.Fonts = len(m.Fonts)
	for i, mt := range w.metas {
		if mt.Class >= len(m.Classes) {
			return fmt.Errorf("dataset: image %d: class %d outside the %d classes", i, mt.Class, len(m.Classes))
		}
		cl := &m.Classes[mt.Class]
		if (cl.Split == "openset") != (mt.Split == SplitOpenset) {
			return fmt.Errorf("dataset: image %d: split %s in %s class %s", i, mt.Split, cl.Split, cl.ID)
		}
		cl.Images++
		if len(m.Fonts) > 0 {
			if mt.Source >= len(m.Fonts) {
				return fmt.Errorf("dataset: image %d: font %d outside the %d fonts", i, mt.Source, len(m.Fonts))
			}
			m.Fonts[mt.Source].Images++
		}
		switch mt.Split {
		case SplitTrain:
			c.Train++
			trainImgs[mt.Class]++
		case SplitHeldout:
			c.Heldout++
		case SplitOpenset:
			c.Openset++
		}
	}
	for i, cl := range m.Classes {
		if cl.Split == "train" && trainImgs[i] == 0 {
			c.TrainClassesWithoutTrainImages++
		}
	}
	m.Counts = c
	return nil
}

// Abort discards what was written.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.images.Close()
	os.Remove(filepath.Join(w.dir, ImagesFile+".tmp"))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("dataset: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("dataset: write %s: %w", filepath.Base(path), err)
	}
	return nil
}
