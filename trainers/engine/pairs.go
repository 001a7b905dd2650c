package engine

import (
	"errors"
	"fmt"

	"github.com/ffc-stream/ffc/kernels"
)

// pairBlock is the number of rows one Gemm of allPairScores scores
// against every image.
const pairBlock = 256

// allPairScores scores every pair {i, j}, i < j, of the n rows of emb
// (n×d) with the backend's Gemm, a block of rows at a time: genuine when
// class[i] == class[j], impostor otherwise. Exact TAR@FAR rests on it.
func allPairScores(be kernels.Backend, emb []float32, d int, class []int) (genuine, impostor []float32, err error) {
	n := len(class)
	if len(emb) != n*d {
		return nil, nil, fmt.Errorf("pairs: %d values are not %d rows of %d", len(emb), n, d)
	}
	bufs := scratch{be: be}
	defer func() { err = errors.Join(err, bufs.free()) }()
	all, err := bufs.alloc(n * d)
	if err != nil {
		return nil, nil, fmt.Errorf("pairs: %w", err)
	}
	sb, err := bufs.alloc(pairBlock * n)
	if err != nil {
		return nil, nil, fmt.Errorf("pairs: %w", err)
	}
	if err := be.Upload(all, emb); err != nil {
		return nil, nil, fmt.Errorf("pairs: %w", err)
	}
	impostor = make([]float32, 0, n*(n-1)/2)
	scores := make([]float32, pairBlock*n)
	for i0 := 0; i0 < n; i0 += pairBlock {
		k := min(pairBlock, n-i0)
		rows, err := be.View(all, i0*d, k*d)
		if err != nil {
			return nil, nil, fmt.Errorf("pairs: %w", err)
		}
		if err := be.Gemm(false, true, k, n, d, 1, rows, all, 0, sb); err != nil {
			return nil, nil, fmt.Errorf("pairs: %w", err)
		}
		if err := be.Download(scores[:k*n], sb); err != nil {
			return nil, nil, fmt.Errorf("pairs: %w", err)
		}
		for r := range k {
			i := i0 + r
			row := scores[r*n : (r+1)*n]
			for j := i + 1; j < n; j++ {
				if class[i] == class[j] {
					genuine = append(genuine, row[j])
				} else {
					impostor = append(impostor, row[j])
				}
			}
		}
	}
	return genuine, impostor, nil
}
