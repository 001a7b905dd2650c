package schemas

import (
	"bytes"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// grayPNG encodes a w×h grayscale gradient seeded by seed.
func grayPNG(t testing.TB, w, h int, seed byte) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetGray(x, y, color.Gray{Y: byte(x*7+y*3) ^ seed})
		}
	}
	return encodePNG(t, img)
}

// rgbaPNG encodes a w×h RGBA image of one color.
func rgbaPNG(t testing.TB, w, h int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetRGBA(x, y, c)
		}
	}
	return encodePNG(t, img)
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func validSample(t testing.TB) *ffcpb.Sample {
	return &ffcpb.Sample{
		Version:  CurrentVersion,
		Id:       4242,
		ImageKey: ImageKey(4242, "noto-serif-cjk"),
		ImagePng: grayPNG(t, 32, 32, 1),
		Epoch:    3,
		Sequence: 17,
		Source:   "producer-0",
	}
}

func validIDPair(t testing.TB) *ffcpb.IDPair {
	return &ffcpb.IDPair{
		Version:  CurrentVersion,
		Id:       7,
		First:    &ffcpb.Image{Key: "bucket-prefix/ids/7/a.png", Png: grayPNG(t, 32, 32, 2)},
		Second:   &ffcpb.Image{Key: "ids/7/b.png", Png: rgbaPNG(t, 32, 32, color.RGBA{10, 200, 30, 255})},
		Sequence: 99,
		Source:   "producer-1",
	}
}

func unitVector(dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(i%5) - 2
	}
	var n float32
	for _, x := range v {
		n += x * x
	}
	if n == 0 {
		return v
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(float64(n)))
	}
	return v
}

func validCenterUpdate(dim int) *ffcpb.CenterUpdate {
	return &ffcpb.CenterUpdate{
		Version: CurrentVersion,
		Model:   "ffc-small_run-1",
		Id:      123456789,
		Vector:  unitVector(dim),
		Step:    1000,
		Slot:    42,
		Kind:    ffcpb.CenterUpdate_REFRESH,
		Row:     1,
	}
}

func validStepCommit() *ffcpb.StepCommit {
	return &ffcpb.StepCommit{
		Version:      CurrentVersion,
		Model:        "ffc-small",
		Step:         1000,
		ChangedIds:   []uint64{1, 2, 3, 1 << 40},
		TimeUnixNano: 1_700_000_000_000_000_000,
	}
}

func validManifest() *ffcpb.CheckpointManifest {
	m := &ffcpb.CheckpointManifest{
		Version:      CurrentVersion,
		Model:        "ffc-small",
		Step:         5000,
		ModelKey:     "checkpoints/ffc-small/5000/model.bin",
		OptimizerKey: "checkpoints/ffc-small/5000/optimizer.bin",
		PoolKey:      "checkpoints/ffc-small/5000/pool.bin",
		LruKey:       "checkpoints/ffc-small/5000/lru.bin",
		Offsets: []*ffcpb.TopicOffsets{
			{Topic: "samples.byid", Partitions: []*ffcpb.PartitionOffset{{Partition: 0, Offset: 100}, {Partition: 1, Offset: 0}}},
			{Topic: "samples.instance", Partitions: []*ffcpb.PartitionOffset{{Partition: 0, Offset: 12345}}},
		},
		CreatedUnixNano: 1_700_000_000_000_000_000,
		OtherParts:      []*ffcpb.Part{{Name: "head", Key: "checkpoints/ffc-small/5000/head.bin"}},
	}
	for _, k := range []string{m.ModelKey, m.OptimizerKey, m.PoolKey, m.LruKey, m.OtherParts[0].Key} {
		m.Hashes = append(m.Hashes, SHA256Hash(k, []byte(k)))
	}
	return m
}

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
