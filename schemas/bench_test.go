package schemas

import "testing"

func BenchmarkDecodeSample(b *testing.B) {
	buf, err := EncodeSample(validSample(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := DecodeSample(buf, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeIDPairImages(b *testing.B) {
	buf, err := EncodeIDPair(validIDPair(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, _, err := DecodeIDPairImages(buf, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCenterUpdate(b *testing.B) {
	buf, err := EncodeCenterUpdate(validCenterUpdate(DefaultDim))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := DecodeCenterUpdate(buf, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
