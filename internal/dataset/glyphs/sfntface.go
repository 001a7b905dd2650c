package glyphs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/image/font/sfnt"
)

// Face is one parsed face of a font file.
type Face struct {
	Font   *sfnt.Font
	Index  int
	Family string
	Style  string
	// Repacked is set when the face was rewritten as a standalone font with
	// 4-byte aligned, tag-sorted tables because sfnt rejected it as stored.
	Repacked bool
}

// FaceError is a face that could not be parsed.
type FaceError struct {
	Index int
	Err   error
}

func (e FaceError) Error() string { return fmt.Sprintf("face %d: %v", e.Index, e.Err) }
func (e FaceError) Unwrap() error { return e.Err }

// NumFaces returns how many faces a font file holds: the count in a
// collection header ("ttcf"), otherwise 1.
func NumFaces(data []byte) (int, error) {
	if len(data) < 12 {
		return 0, fmt.Errorf("glyphs: font file of %d bytes is too short", len(data))
	}
	if string(data[:4]) != "ttcf" {
		return 1, nil
	}
	n := int(binary.BigEndian.Uint32(data[8:]))
	if n <= 0 || n > 1024 || len(data) < 12+4*n {
		return 0, fmt.Errorf("glyphs: font collection header claims %d faces in %d bytes", n, len(data))
	}
	return n, nil
}

// faceOffset is where face i's table directory starts.
func faceOffset(data []byte, i int) (int, error) {
	n, err := NumFaces(data)
	if err != nil {
		return 0, err
	}
	if i < 0 || i >= n {
		return 0, fmt.Errorf("glyphs: face %d outside 0..%d", i, n-1)
	}
	if string(data[:4]) != "ttcf" {
		return 0, nil
	}
	return int(binary.BigEndian.Uint32(data[12+4*i:])), nil
}

// ParseFaces parses every face of a font file (.ttf, .otf, .ttc, .otc)
// with ParseFace. Faces that fail are returned as FaceErrors; an error is
// returned only when the file is not a font at all, or is a single face
// that fails.
func ParseFaces(data []byte, name string) ([]Face, []FaceError, error) {
	n, err := NumFaces(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var faces []Face
	var bad []FaceError
	for i := range n {
		f, err := ParseFace(data, i)
		if err != nil {
			if n == 1 {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
			bad = append(bad, FaceError{i, err})
			continue
		}
		f.Family, f.Style = faceNames(f.Font, name)
		faces = append(faces, f)
	}
	return faces, bad, nil
}

// ParseFace parses face i of a font file. A face that sfnt rejects as
// stored (tables not 4-byte aligned, or out of order, as in some
// collections) is rewritten by Standalone and parsed again; the error of a
// face that still fails gives both reasons. Family and Style are left for
// the caller (see ParseFaces).
func ParseFace(data []byte, i int) (Face, error) {
	n, err := NumFaces(data)
	if err != nil {
		return Face{}, err
	}
	if i < 0 || i >= n {
		return Face{}, fmt.Errorf("glyphs: face %d outside 0..%d", i, n-1)
	}
	var f *sfnt.Font
	var direct error
	if string(data[:4]) == "ttcf" {
		var c *sfnt.Collection
		if c, direct = sfnt.ParseCollection(data); direct == nil {
			f, direct = c.Font(i)
		}
	} else {
		f, direct = sfnt.Parse(data)
	}
	if direct == nil {
		return Face{Font: f, Index: i}, nil
	}
	b, err := Standalone(data, i)
	if err == nil {
		f, err = sfnt.Parse(b)
	}
	if err != nil {
		return Face{}, fmt.Errorf("%v; rewritten standalone: %w", direct, err)
	}
	return Face{Font: f, Index: i, Repacked: true}, nil
}

func faceNames(f *sfnt.Font, file string) (family, style string) {
	var b sfnt.Buffer
	get := func(ids ...sfnt.NameID) string {
		for _, id := range ids {
			if s, err := f.Name(&b, id); err == nil && strings.TrimSpace(s) != "" {
				return strings.TrimSpace(s)
			}
		}
		return ""
	}
	family = get(sfnt.NameIDTypographicFamily, sfnt.NameIDFamily)
	style = get(sfnt.NameIDTypographicSubfamily, sfnt.NameIDSubfamily)
	if family == "" {
		family = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	if style == "" {
		style = "Regular"
	}
	return family, style
}

// Standalone rewrites face i of a font file (a collection or a single
// font) as a standalone font: the face's tables copied one after another,
// sorted by tag, each starting on a 4-byte boundary, behind a fresh table
// directory. Table checksums are copied unchanged (sfnt ignores them).
func Standalone(data []byte, i int) ([]byte, error) {
	off, err := faceOffset(data, i)
	if err != nil {
		return nil, err
	}
	if off < 0 || off+12 > len(data) {
		return nil, fmt.Errorf("glyphs: face %d directory at %d outside the %d-byte file", i, off, len(data))
	}
	numTables := int(binary.BigEndian.Uint16(data[off+4:]))
	if numTables == 0 || off+12+16*numTables > len(data) {
		return nil, fmt.Errorf("glyphs: face %d: %d tables do not fit the file", i, numTables)
	}
	type rec struct {
		tag, sum uint32
		off, n   uint32
	}
	recs := make([]rec, numTables)
	total := 12 + 16*numTables
	for t := range recs {
		b := data[off+12+16*t:]
		r := rec{binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]), binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])}
		if uint64(r.off)+uint64(r.n) > uint64(len(data)) {
			return nil, fmt.Errorf("glyphs: face %d: table %q at %d+%d outside the %d-byte file", i, tagString(r.tag), r.off, r.n, len(data))
		}
		recs[t] = r
		total += int(r.n+3) &^ 3
	}
	sort.Slice(recs, func(a, b int) bool { return recs[a].tag < recs[b].tag })
	for t := 1; t < len(recs); t++ {
		if recs[t].tag == recs[t-1].tag {
			return nil, fmt.Errorf("glyphs: face %d: table %q appears twice", i, tagString(recs[t].tag))
		}
	}
	if total > 1<<30 {
		return nil, errors.New("glyphs: rewritten face would exceed 1 GiB")
	}
	out := make([]byte, total)
	copy(out, data[off:off+4]) // sfnt version
	binary.BigEndian.PutUint16(out[4:], uint16(numTables))
	es := 0
	for 1<<(es+1) <= numTables {
		es++
	}
	binary.BigEndian.PutUint16(out[6:], uint16(16<<es))
	binary.BigEndian.PutUint16(out[8:], uint16(es))
	binary.BigEndian.PutUint16(out[10:], uint16(16*numTables-16<<es))
	pos := 12 + 16*numTables
	for t, r := range recs {
		d := out[12+16*t:]
		binary.BigEndian.PutUint32(d, r.tag)
		binary.BigEndian.PutUint32(d[4:], r.sum)
		binary.BigEndian.PutUint32(d[8:], uint32(pos))
		binary.BigEndian.PutUint32(d[12:], r.n)
		copy(out[pos:], data[r.off:r.off+r.n])
		pos += int(r.n+3) &^ 3
	}
	return out, nil
}

func tagString(t uint32) string {
	return string([]byte{byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t)})
}
