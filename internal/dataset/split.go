package dataset

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
)

// Split says what an image is for.
type Split uint8

const (
	// SplitTrain images train the model: a train class from a kept source.
	SplitTrain Split = iota
	// SplitHeldout images are of train classes from held-out sources (whole
	// fonts): the top-1 identification test.
	SplitHeldout
	// SplitOpenset images are of classes never trained on: verification.
	SplitOpenset
	numSplits
)

// AllSplits lists every split in index order.
func AllSplits() []Split { return []Split{SplitTrain, SplitHeldout, SplitOpenset} }

func (s Split) String() string {
	switch s {
	case SplitTrain:
		return "train"
	case SplitHeldout:
		return "heldout"
	case SplitOpenset:
		return "openset"
	}
	return fmt.Sprintf("split(%d)", uint8(s))
}

// ParseSplit is the inverse of Split.String.
func ParseSplit(s string) (Split, error) {
	for _, v := range AllSplits() {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("dataset: unknown split %q (want train, heldout or openset)", s)
}

// Select picks round(frac*len(keys)) of the keys deterministically: those
// with the smallest Hash(seed, salt+key). The same keys, seed, salt and
// fraction give the same selection whatever the order of keys. It returns
// selected[i] for keys[i].
func Select(keys []string, seed uint64, salt string, frac float64) ([]bool, error) {
	if frac < 0 || frac > 1 || math.IsNaN(frac) {
		return nil, fmt.Errorf("dataset: fraction %v outside [0, 1]", frac)
	}
	n := int(math.Round(frac * float64(len(keys))))
	type ranked struct {
		h   uint64
		key string
		i   int
	}
	r := make([]ranked, len(keys))
	for i, k := range keys {
		r[i] = ranked{HashString(seed, salt+"\x00"+k), k, i}
	}
	sort.Slice(r, func(a, b int) bool {
		if r[a].h != r[b].h {
			return r[a].h < r[b].h
		}
		return r[a].key < r[b].key
	})
	sel := make([]bool, len(keys))
	for _, x := range r[:n] {
		sel[x.i] = true
	}
	return sel, nil
}

// Mix64 is the SplitMix64 finaliser: a bijective, well-mixed 64-bit hash.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Hash combines a seed and values into one well-mixed 64-bit value.
func Hash(seed uint64, vals ...uint64) uint64 {
	h := Mix64(seed + 0x9e3779b97f4a7c15)
	for _, v := range vals {
		h = Mix64(h ^ Mix64(v+0x9e3779b97f4a7c15))
	}
	return h
}

// HashString hashes a string with a seed.
func HashString(seed uint64, s string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(s))
	return Hash(seed, f.Sum64())
}
