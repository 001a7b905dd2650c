package dataset

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// File names inside a file set directory.
const (
	ImagesFile   = "images.bin"
	IndexFile    = "index.bin"
	ManifestFile = "manifest.json"
)

// FormatVersion is the version of the file set layout written by Writer.
const FormatVersion = 1

// Kinds of data set.
const (
	KindGlyphs = "glyphs"
	KindSynth  = "synth"
)

// Manifest describes a file set; it is written as manifest.json next to the
// images and uploaded as <bucket>/manifest.json.
type Manifest struct {
	Format int `json:"format"`
	// Kind is KindGlyphs or KindSynth.
	Kind string `json:"kind"`
	// ImageSize is the side of the square images in pixels; each image is
	// ImageSize*ImageSize uint8 values, row-major, ink 255 on background 0.
	ImageSize int `json:"image_size"`
	// Classes are indexed by label: Classes[i].Label == i.
	Classes []Class `json:"classes"`
	// Fonts are indexed by Meta.Source for glyph sets (empty for synth sets,
	// whose source is the instance number).
	Fonts []Font `json:"fonts,omitempty"`
	// Packages are the Debian packages the fonts came from.
	Packages []Package `json:"packages,omitempty"`
	// Unreadable lists font faces that could not be used.
	Unreadable []Unreadable `json:"unreadable,omitempty"`
	Counts     Counts       `json:"counts"`
	// ContentSHA256 is the SHA-256 of images.bin followed by index.bin.
	ContentSHA256 string `json:"content_sha256"`
	// Params are the builder's parameters (its own JSON object).
	Params json.RawMessage `json:"params,omitempty"`
}

// Class is one identity.
type Class struct {
	Label int `json:"label"`
	// ID names the class in object storage: ids/<ID>/.
	ID        string `json:"id"`
	Codepoint int    `json:"codepoint,omitempty"`
	Char      string `json:"char,omitempty"`
	Images    int    `json:"images"`
	// Split is "train" or "openset".
	Split string `json:"split"`
}

// StorageID is the numeric identity of the class in the pipeline: object
// keys ids/<id>/, Kafka keys and pool labels are decimal uint64s. Glyph
// classes use their Unicode code point (stable across builds of different
// package sets); other classes need a decimal ID.
func (c Class) StorageID() (uint64, error) {
	if c.Codepoint > 0 {
		return uint64(c.Codepoint), nil
	}
	id, err := strconv.ParseUint(c.ID, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("dataset: class %d has ID %q: neither a code point nor a decimal number", c.Label, c.ID)
	}
	return id, nil
}

// Font is one font face that contributed images.
type Font struct {
	ID      int    `json:"id"`
	Family  string `json:"family"`
	Style   string `json:"style"`
	Package string `json:"package"`
	Version string `json:"version"`
	// File is the path inside the package, Face the index in a collection.
	File string `json:"file"`
	Face int    `json:"face"`
	// Repacked is set when the face had to be rewritten as a standalone
	// font with aligned tables before it could be parsed.
	Repacked bool `json:"repacked,omitempty"`
	Heldout  bool `json:"heldout"`
	Images   int  `json:"images"`
}

// Package is one Debian package used.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Deb     string `json:"deb"`
	Fonts   int    `json:"fonts"`
}

// Unreadable is a font face that could not be read, with the reason.
type Unreadable struct {
	Package string `json:"package"`
	File    string `json:"file"`
	Face    int    `json:"face"`
	Reason  string `json:"reason"`
}

// Counts summarises a file set.
type Counts struct {
	Classes        int `json:"classes"`
	TrainClasses   int `json:"train_classes"`
	OpensetClasses int `json:"openset_classes"`
	Images         int `json:"images"`
	// Images per split.
	Train   int `json:"train"`
	Heldout int `json:"heldout"`
	Openset int `json:"openset"`
	// TrainClassesWithoutTrainImages counts train classes whose every image
	// is in a held-out source.
	TrainClassesWithoutTrainImages int `json:"train_classes_without_train_images"`
	Fonts                          int `json:"fonts,omitempty"`
	HeldoutFonts                   int `json:"heldout_fonts,omitempty"`
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("dataset: read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("dataset: parse %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("dataset: %s: format %d, want %d", dir, m.Format, FormatVersion)
	}
	for i, c := range m.Classes {
		if c.Label != i {
			return nil, fmt.Errorf("dataset: %s: class %d has label %d", dir, i, c.Label)
		}
	}
	return &m, nil
}

// FindClass finds a class by label ("42"), ID ("u4e2d") or character
// ("中").
func (m *Manifest) FindClass(s string) (int, error) {
	for i, c := range m.Classes {
		if c.ID == s || (c.Char != "" && c.Char == s) {
			return i, nil
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(m.Classes) {
		return n, nil
	}
	return 0, fmt.Errorf("dataset: no class %q (give a label 0..%d, an id or a character)", s, len(m.Classes)-1)
}
