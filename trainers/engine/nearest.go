package engine

import (
	"errors"
	"fmt"
	"math"

	"github.com/ffc-stream/ffc/kernels"
	"github.com/ffc-stream/ffc/trainers/nn"
)

// nearestBlock is the number of query rows one Gemm of Nearest scores.
const nearestBlock = 256

// Nearest returns, for each row of q (n×d), the index of the row of c
// (m×d) with the largest dot product (the lowest index on a tie). The
// scores are computed blockwise with the backend's Gemm, so a few
// thousand queries against a few thousand centers take a fraction of a
// second.
func Nearest(be kernels.Backend, q, c []float32, d int) (idx []int, err error) {
	if d <= 0 || len(q)%d != 0 || len(c)%d != 0 {
		return nil, fmt.Errorf("nearest: %d query and %d center values are not rows of %d", len(q), len(c), d)
	}
	n, m := len(q)/d, len(c)/d
	if m == 0 {
		return nil, errors.New("nearest: no centers")
	}
	bufs := scratch{be: be}
	defer func() { err = errors.Join(err, bufs.free()) }()
	cb, err := bufs.alloc(m * d)
	if err != nil {
		return nil, fmt.Errorf("nearest: %w", err)
	}
	qb, err := bufs.alloc(nearestBlock * d)
	if err != nil {
		return nil, fmt.Errorf("nearest: %w", err)
	}
	sb, err := bufs.alloc(nearestBlock * m)
	if err != nil {
		return nil, fmt.Errorf("nearest: %w", err)
	}
	if err := be.Upload(cb, c); err != nil {
		return nil, fmt.Errorf("nearest: %w", err)
	}
	idx = make([]int, n)
	scores := make([]float32, nearestBlock*m)
	for i0 := 0; i0 < n; i0 += nearestBlock {
		k := min(nearestBlock, n-i0)
		if err := be.Upload(qb, q[i0*d:(i0+k)*d]); err != nil {
			return nil, fmt.Errorf("nearest: %w", err)
		}
		if err := be.Gemm(false, true, k, m, d, 1, qb, cb, 0, sb); err != nil {
			return nil, fmt.Errorf("nearest: %w", err)
		}
		if err := be.Download(scores[:k*m], sb); err != nil {
			return nil, fmt.Errorf("nearest: %w", err)
		}
		for r := range k {
			idx[i0+r] = argmax(scores[r*m : (r+1)*m])
		}
	}
	return idx, nil
}

// scratch holds the buffers one computation allocates on a backend, and
// frees them together.
type scratch struct {
	be   kernels.Backend
	bufs []kernels.Buffer
}

func (s *scratch) alloc(n int) (kernels.Buffer, error) {
	b, err := s.be.Alloc(n)
	if err == nil {
		s.bufs = append(s.bufs, b)
	}
	return b, err
}

func (s *scratch) free() error {
	var errs []error
	for _, b := range s.bufs {
		errs = append(errs, s.be.Free(b))
	}
	s.bufs = nil
	return errors.Join(errs...)
}

func argmax(v []float32) int {
	best, arg := float32(math.Inf(-1)), 0
	for i, x := range v {
		if x > best {
			best, arg = x, i
		}
	}
	return arg
}

// Pixels returns the images idx of ds as raw pixels, scaled as the
// networks see them (nn.AppendScaled), each row L2-normalized: the
// raw-pixel baseline's embeddings, len(idx)×ImageSize².
func Pixels(ds Images, idx []int) ([]float32, error) {
	n := ds.ImageSize() * ds.ImageSize()
	buf := make([]byte, n)
	out := make([]float32, 0, len(idx)*n)
	for _, i := range idx {
		if _, err := ds.ReadImage(i, buf); err != nil {
			return nil, fmt.Errorf("pixels: read image %d: %w", i, err)
		}
		out = nn.AppendScaled(out, buf)
		l2normalize(out[len(out)-n:])
	}
	return out, nil
}

func l2normalize(v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range v {
		v[i] *= inv
	}
}
