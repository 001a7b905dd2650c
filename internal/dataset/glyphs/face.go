package glyphs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FaceRender is what one face gave for a list of characters: the images
// of the characters it renders, and what it did with the others.
type FaceRender struct {
	Family   string `json:"family"`
	Style    string `json:"style"`
	Repacked bool   `json:"repacked,omitempty"`
	// Err is set when the face could not be read; nothing else is then.
	Err string `json:"err,omitempty"`
	// Counts of characters not mapped by the cmap, mapped to an empty
	// glyph, or whose glyph failed to load (with the first such error).
	Unmapped    int    `json:"unmapped"`
	Empty       int    `json:"empty"`
	GlyphErrors int    `json:"glyph_errors"`
	FirstError  string `json:"first_error,omitempty"`
	// Chars rendered, ascending, and their images back to back.
	Chars  []rune `json:"-"`
	Images []byte `json:"-"`
	Size   int    `json:"size"`
}

// Image returns the image of Chars[i].
func (r *FaceRender) Image(i int) []byte {
	n := r.Size * r.Size
	return r.Images[i*n : (i+1)*n]
}

// RenderFace renders chars (ascending) with an already parsed face.
func RenderFace(ctx context.Context, f Face, chars []rune, size int, progress func(done int)) (*FaceRender, error) {
	rd, err := NewRenderer(f.Font, size)
	if err != nil {
		return nil, err
	}
	out := &FaceRender{Family: f.Family, Style: f.Style, Repacked: f.Repacked, Size: size}
	img := make([]byte, size*size)
	for i, c := range chars {
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if progress != nil {
				progress(256)
			}
		}
		o, err := rd.Render(c, img)
		if err != nil {
			if out.GlyphErrors == 0 {
				out.FirstError = err.Error()
			}
			out.GlyphErrors++
			continue
		}
		switch o {
		case Unmapped:
			out.Unmapped++
		case Empty:
			out.Empty++
		case Rendered:
			out.Chars = append(out.Chars, c)
			out.Images = append(out.Images, img...)
		}
	}
	if progress != nil {
		progress(len(chars) % 256)
	}
	return out, nil
}

// renderCache keeps one file per (font file content, face, size, renderer
// version, character list), so a rerun renders only what changed.
type renderCache struct{ dir string }

const renderCacheMagic = "FFCGLYR1"

func (c renderCache) path(fileSHA string, face, size int, charsKey string) string {
	return filepath.Join(c.dir, fmt.Sprintf("%s-f%d-s%d-r%d-%s.bin", fileSHA[:24], face, size, renderVersion, charsKey))
}

// charsKey names a character list in cache file names.
func charsKey(chars []rune) string {
	h := sha256.New()
	var b [4]byte
	for _, c := range chars {
		binary.LittleEndian.PutUint32(b[:], uint32(c))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func (c renderCache) load(path string, size int) (*FaceRender, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bad := fmt.Errorf("glyphs: render cache %s is damaged", path)
	if len(b) < 12 || string(b[:8]) != renderCacheMagic {
		return nil, bad
	}
	hl := int(binary.LittleEndian.Uint32(b[8:]))
	if 12+hl+4 > len(b) {
		return nil, bad
	}
	var r FaceRender
	if err := json.Unmarshal(b[12:12+hl], &r); err != nil || r.Size != size {
		return nil, bad
	}
	rest := b[12+hl:]
	n := int(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if len(rest) != n*(4+size*size) {
		return nil, bad
	}
	r.Chars = make([]rune, n)
	r.Images = make([]byte, 0, n*size*size)
	for i := range n {
		r.Chars[i] = rune(binary.LittleEndian.Uint32(rest))
		r.Images = append(r.Images, rest[4:4+size*size]...)
		rest = rest[4+size*size:]
	}
	return &r, nil
}

func (c renderCache) store(path string, r *FaceRender) error {
	hdr, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(renderCacheMagic)
	binary.Write(&buf, binary.LittleEndian, uint32(len(hdr)))
	buf.Write(hdr)
	binary.Write(&buf, binary.LittleEndian, uint32(len(r.Chars)))
	for i, ch := range r.Chars {
		binary.Write(&buf, binary.LittleEndian, uint32(ch))
		buf.Write(r.Image(i))
	}
	return writeFileAtomic(path, buf.Bytes())
}

// writeFileAtomic writes b to path through a temporary file and a rename,
// creating the directory, so readers never see a partial file.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// fontFile is one font file of one package.
type fontFile struct {
	pkg   int
	rel   string
	path  string
	sha   string
	faces int
}

// faceJob renders one face, from the cache when it is there.
type faceJob struct {
	file *fontFile
	face int
}

func (j faceJob) run(ctx context.Context, cache renderCache, chars []rune, ckey string, size int, progress func(int)) (*FaceRender, bool, error) {
	path := cache.path(j.file.sha, j.face, size, ckey)
	if r, err := cache.load(path, size); err == nil {
		if progress != nil {
			progress(len(chars))
		}
		return r, true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		// A damaged cache entry is rendered again and overwritten.
		os.Remove(path)
	}
	data, err := os.ReadFile(j.file.path)
	if err != nil {
		return nil, false, fmt.Errorf("glyphs: read font: %w", err)
	}
	reported := 0
	count := func(n int) {
		reported += n
		if progress != nil {
			progress(n)
		}
	}
	r, err := parseAndRender(ctx, data, j.file.rel, j.face, chars, size, count)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		r = &FaceRender{Err: err.Error(), Size: size}
	}
	if rest := len(chars) - reported; rest > 0 {
		count(rest)
	}
	if err := cache.store(path, r); err != nil {
		return nil, false, fmt.Errorf("glyphs: write render cache: %w", err)
	}
	return r, false, nil
}

// parseAndRender parses and renders one face; a panic inside the font
// parser (a malformed font) is returned as an error.
func parseAndRender(ctx context.Context, data []byte, name string, face int, chars []rune, size int, progress func(int)) (r *FaceRender, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("font parser panicked: %v", p)
		}
	}()
	f, err := ParseFace(data, face)
	if err != nil {
		return nil, err
	}
	f.Family, f.Style = faceNames(f.Font, name)
	return RenderFace(ctx, f, chars, size, progress)
}

// hashMemo remembers the hash and face count of font files by path, size
// and modification time, so a rerun does not read every font again.
type hashMemo struct {
	path  string
	m     map[string]memoEntry
	dirty bool
}

type memoEntry struct {
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	SHA256  string `json:"sha256"`
	Faces   int    `json:"faces"`
}

// loadHashMemo reads the memo at path; a missing or damaged one is empty.
func loadHashMemo(path string) *hashMemo {
	h := &hashMemo{path: path, m: map[string]memoEntry{}}
	if b, err := os.ReadFile(path); err == nil {
		if json.Unmarshal(b, &h.m) != nil {
			h.m = map[string]memoEntry{}
		}
	}
	return h
}

func (h *hashMemo) hash(path string) (string, int, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", 0, err
	}
	if e, ok := h.m[path]; ok && e.Size == st.Size() && e.ModTime == st.ModTime().UnixNano() {
		return e.SHA256, e.Faces, nil
	}
	sha, faces, err := hashFont(path)
	if err != nil {
		return "", 0, err
	}
	h.m[path] = memoEntry{st.Size(), st.ModTime().UnixNano(), sha, faces}
	h.dirty = true
	return sha, faces, nil
}

func (h *hashMemo) save() error {
	if !h.dirty {
		return nil
	}
	b, err := json.Marshal(h.m)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(h.path, b); err != nil {
		return err
	}
	h.dirty = false
	return nil
}

// hashFont hashes a font file and counts its faces.
func hashFont(path string) (sha string, faces int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	var head [4096]byte
	n, _ := io.ReadFull(f, head[:])
	h.Write(head[:n])
	if _, err := io.Copy(h, f); err != nil {
		return "", 0, err
	}
	faces, err = NumFaces(head[:n])
	if err != nil {
		// Not a font at all: one face that will be reported unreadable.
		faces = 1
	}
	return hex.EncodeToString(h.Sum(nil)), faces, nil
}

func displayName(pkg, rel string, face, faces int) string {
	s := pkg + ":" + strings.TrimPrefix(rel, "usr/share/fonts/")
	if faces > 1 {
		s += fmt.Sprintf("#%d", face)
	}
	return s
}
