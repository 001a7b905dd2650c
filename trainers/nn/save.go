package nn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"slices"

	"github.com/ffc-stream/ffc/kernels"
)

// The parameter file, all integers little-endian:
//
//	magic   "FFCNNPRM"
//	version uint32 (1)
//	count   uint32
//	count × { nameLen uint16, name, ndim uint8, ndim × dim uint32 }
//	count × { N float32 values }
//	crc     uint32, CRC-32C of every byte before it
const (
	fileMagic   = "FFCNNPRM"
	fileVersion = 1
	maxTensors  = 1 << 20
	maxNDim     = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func shapeOf(p *Param) []int {
	if len(p.Shape) == 0 {
		return []int{p.N}
	}
	return p.Shape
}

// SaveParams writes the values W of ps (e.g. [Tensors] of a net, and
// [Momenta] of its Params for the optimizer state) with their names and
// shapes.
func SaveParams(w io.Writer, be kernels.Backend, ps []*Param) error {
	h := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<16)
	var hdr []byte
	hdr = append(hdr, fileMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, fileVersion)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(ps)))
	for _, p := range ps {
		sh := shapeOf(p)
		if len(p.Name) > math.MaxUint16 || len(sh) > maxNDim {
			return fmt.Errorf("nn: save params: %w: tensor %q: name or rank too long", kernels.ErrShape, p.Name)
		}
		hdr = binary.LittleEndian.AppendUint16(hdr, uint16(len(p.Name)))
		hdr = append(hdr, p.Name...)
		hdr = append(hdr, uint8(len(sh)))
		for _, d := range sh {
			hdr = binary.LittleEndian.AppendUint32(hdr, uint32(d))
		}
	}
	if _, err := bw.Write(hdr); err != nil {
		return fmt.Errorf("nn: save params: %w", err)
	}
	var host []float32
	var raw []byte
	for _, p := range ps {
		host = slices32(host, p.N)
		if err := be.Download(host, p.W); err != nil {
			return fmt.Errorf("nn: save params %s: %w", p.Name, err)
		}
		raw = raw[:0]
		for _, v := range host {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
		if _, err := bw.Write(raw); err != nil {
			return fmt.Errorf("nn: save params: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("nn: save params: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, h.Sum32())); err != nil {
		return fmt.Errorf("nn: save params: %w", err)
	}
	return nil
}

func slices32(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// crcReader reads through a CRC.
type crcReader struct {
	r io.Reader
	h hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	return n, err
}

// LoadParams reads a file written by [SaveParams] into ps, which must have
// the same names and shapes in the same order (else an error wrapping
// [ErrArch] says the first difference). The file is checked completely
// (checksum included) before any tensor is overwritten.
func LoadParams(r io.Reader, be kernels.Backend, ps []*Param) error {
	cr := &crcReader{r: bufio.NewReaderSize(r, 1<<16), h: crc32.New(castagnoli)}
	fail := func(err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("nn: load params: %w: truncated: %w", ErrFormat, err)
		}
		return fmt.Errorf("nn: load params: %w", err)
	}
	var buf [8]byte
	if _, err := io.ReadFull(cr, buf[:8]); err != nil {
		return fail(err)
	}
	if string(buf[:8]) != fileMagic {
		return fmt.Errorf("nn: load params: %w: not a parameter file (magic %q)", ErrFormat, buf[:8])
	}
	u32 := func() (uint32, error) {
		_, err := io.ReadFull(cr, buf[:4])
		return binary.LittleEndian.Uint32(buf[:4]), err
	}
	v, err := u32()
	if err != nil {
		return fail(err)
	}
	if v != fileVersion {
		return fmt.Errorf("nn: load params: %w: version %d, want %d", ErrFormat, v, fileVersion)
	}
	count, err := u32()
	if err != nil {
		return fail(err)
	}
	if count > maxTensors {
		return fmt.Errorf("nn: load params: %w: %d tensors", ErrFormat, count)
	}
	if int(count) != len(ps) {
		return fmt.Errorf("nn: load params: %w: file has %d tensors, the net %d", ErrArch, count, len(ps))
	}
	for i, p := range ps {
		if _, err := io.ReadFull(cr, buf[:2]); err != nil {
			return fail(err)
		}
		name := make([]byte, binary.LittleEndian.Uint16(buf[:2]))
		if _, err := io.ReadFull(cr, name); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(cr, buf[:1]); err != nil {
			return fail(err)
		}
		nd := int(buf[0])
		if nd > maxNDim {
			return fmt.Errorf("nn: load params: %w: tensor %q of rank %d", ErrFormat, name, nd)
		}
		shape := make([]int, nd)
		for j := range shape {
			d, err := u32()
			if err != nil {
				return fail(err)
			}
			shape[j] = int(d)
		}
		if want := shapeOf(p); string(name) != p.Name || !slices.Equal(shape, want) {
			return fmt.Errorf("nn: load params: %w: tensor %d is %q %v in the file, %q %v in the net",
				ErrArch, i, name, shape, p.Name, want)
		}
	}
	vals := make([][]float32, len(ps))
	raw := make([]byte, 0, 1<<16)
	for i, p := range ps {
		vals[i] = make([]float32, p.N)
		for off := 0; off < p.N; {
			k := min(p.N-off, cap(raw)/4)
			raw = raw[:4*k]
			if _, err := io.ReadFull(cr, raw); err != nil {
				return fail(err)
			}
			for j := range k {
				vals[i][off+j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			}
			off += k
		}
	}
	sum := cr.h.Sum32()
	if _, err := io.ReadFull(cr.r, buf[:4]); err != nil {
		return fail(err)
	}
	if got := binary.LittleEndian.Uint32(buf[:4]); got != sum {
		return fmt.Errorf("nn: load params: %w: checksum %08x, computed %08x", ErrFormat, got, sum)
	}
	for i, p := range ps {
		if err := be.Upload(p.W, vals[i]); err != nil {
			return fmt.Errorf("nn: load params %s: %w", p.Name, err)
		}
	}
	return nil
}
