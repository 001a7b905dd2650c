package centers

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// The pool state file, little-endian:
//
//	magic "FFCPOOL1", Q uint32, D uint32, used uint32, held uint32
//	held × { label int64, slot int32 }   least to most recent
//	Q × pos uint8
//	2·Q·D float32 rows (block 0 then block 1)
//	crc uint32, CRC-32C of every byte before it
const poolMagic = "FFCPOOL1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SaveState writes the pool — rows, LRU order, slots, pos bits — so that
// LoadState restores it exactly. It must not be called between Mark and
// Rollback.
func (p *Pool) SaveState(w io.Writer) error {
	if p.recording {
		return errors.New("pool: save during a pass (Mark pending)")
	}
	h := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<16)
	order := p.lru.Order() // most recent first
	hdr := append([]byte(poolMagic), make([]byte, 16)...)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(p.q))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(p.d))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(p.lru.used))
	binary.LittleEndian.PutUint32(hdr[20:], uint32(len(order)))
	if _, err := bw.Write(hdr); err != nil {
		return fmt.Errorf("pool: save: %w", err)
	}
	var rec [12]byte
	for i := len(order) - 1; i >= 0; i-- {
		binary.LittleEndian.PutUint64(rec[:], uint64(order[i]))
		binary.LittleEndian.PutUint32(rec[8:], uint32(p.lru.View(order[i])))
		if _, err := bw.Write(rec[:]); err != nil {
			return fmt.Errorf("pool: save: %w", err)
		}
	}
	if _, err := bw.Write(p.pos); err != nil {
		return fmt.Errorf("pool: save: %w", err)
	}
	const chunk = 1 << 16
	host := make([]float32, min(chunk, 2*p.q*p.d))
	buf := make([]byte, 4*len(host))
	for off := 0; off < 2*p.q*p.d; off += chunk {
		n := min(chunk, 2*p.q*p.d-off)
		view, err := p.be.View(p.rows, off, n)
		if err != nil {
			return fmt.Errorf("pool: save: %w", err)
		}
		if err := p.be.Download(host[:n], view); err != nil {
			return fmt.Errorf("pool: save: %w", err)
		}
		for i, v := range host[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		if _, err := bw.Write(buf[:4*n]); err != nil {
			return fmt.Errorf("pool: save: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("pool: save: %w", err)
	}
	var crc [4]byte
	binary.LittleEndian.PutUint32(crc[:], h.Sum32())
	if _, err := w.Write(crc[:]); err != nil {
		return fmt.Errorf("pool: save: %w", err)
	}
	return nil
}

// LoadState replaces the pool's state with one written by SaveState of a
// pool with the same Q and D. On any error the pool is left unchanged. It
// may read r past the end of the state (buffered).
func (p *Pool) LoadState(r io.Reader) error {
	if p.recording {
		return errors.New("pool: load during a pass")
	}
	h := crc32.New(castagnoli)
	br := bufio.NewReaderSize(r, 1<<16)
	read := func(b []byte) error {
		if _, err := io.ReadFull(br, b); err != nil {
			return err
		}
		h.Write(b)
		return nil
	}
	hdr := make([]byte, 24)
	if err := read(hdr); err != nil {
		return fmt.Errorf("pool: load: %w", err)
	}
	if string(hdr[:8]) != poolMagic {
		return errors.New("pool: load: not a pool state file")
	}
	q, d := int(binary.LittleEndian.Uint32(hdr[8:])), int(binary.LittleEndian.Uint32(hdr[12:]))
	used, held := int(binary.LittleEndian.Uint32(hdr[16:])), int(binary.LittleEndian.Uint32(hdr[20:]))
	if q != p.q || d != p.d {
		return fmt.Errorf("pool: load: state of a %d×%d pool into a %d×%d one", q, d, p.q, p.d)
	}
	if held > used || used > q {
		return fmt.Errorf("pool: load: %d labels in %d used of %d slots", held, used, q)
	}
	labels := make([]int64, held)
	slots := make([]int32, held)
	seen := make(map[int32]bool, held)
	var rec [12]byte
	for i := range labels {
		if err := read(rec[:]); err != nil {
			return fmt.Errorf("pool: load: %w", err)
		}
		labels[i] = int64(binary.LittleEndian.Uint64(rec[:]))
		slots[i] = int32(binary.LittleEndian.Uint32(rec[8:]))
		if slots[i] < 0 || int(slots[i]) >= used || seen[slots[i]] {
			return fmt.Errorf("pool: load: label %d in invalid or repeated slot %d", labels[i], slots[i])
		}
		seen[slots[i]] = true
	}
	pos := make([]uint8, q)
	if err := read(pos); err != nil {
		return fmt.Errorf("pool: load: %w", err)
	}
	rows := make([]float32, 2*q*d)
	buf := make([]byte, 4*(1<<16))
	for off := 0; off < len(rows); off += 1 << 16 {
		n := min(1<<16, len(rows)-off)
		if err := read(buf[:4*n]); err != nil {
			return fmt.Errorf("pool: load: %w", err)
		}
		for i := 0; i < n; i++ {
			rows[off+i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
	}
	var crc [4]byte
	got := h.Sum32()
	if _, err := io.ReadFull(br, crc[:]); err != nil {
		return fmt.Errorf("pool: load: %w", err)
	}
	if binary.LittleEndian.Uint32(crc[:]) != got {
		return errors.New("pool: load: checksum mismatch (truncated or corrupt state)")
	}
	// Everything is valid: apply.
	if err := p.be.Upload(p.rows, rows); err != nil {
		return fmt.Errorf("pool: load: %w", err)
	}
	lru, err := NewLRU(q)
	if err != nil {
		return err
	}
	lru.used = used
	for i := range labels { // least recent first: each push makes it the head
		lru.label[slots[i]] = labels[i]
		lru.slotOf[labels[i]] = slots[i]
		lru.pushHead(slots[i])
	}
	for s := range int32(used) { // slots freed by Remove: used, not held
		if !seen[s] {
			lru.free = append(lru.free, s)
		}
	}
	p.lru = lru
	p.pos = pos
	for _, s := range p.refreshedList {
		p.refreshed[s] = false
	}
	p.refreshedList = p.refreshedList[:0]
	return nil
}
