package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// badKind is one kind of bad message: how it is made from a valid one and
// the reason a decoder gives for it.
type badKind struct {
	name   string
	reason string
}

// Bad message kinds.
const (
	badOversized = "oversized"
	badTruncated = "truncated"
	badVersion   = "unknown-version"
	badNaN       = "nan-inf"
	badNonImage  = "non-image"
	badWrongSize = "wrong-size"
)

func badKinds() []badKind {
	return []badKind{
		{badOversized, schemas.ReasonTooLarge},
		{badTruncated, schemas.ReasonMalformed},
		{badVersion, schemas.ReasonUnknownVersion},
		{badNaN, schemas.ReasonBadImage},
		{badNonImage, schemas.ReasonBadImage},
		{badWrongSize, schemas.ReasonBadImage},
	}
}

// oversizeField is the field number of the padding that makes a message
// oversized: unknown to the schema, so only the size is wrong.
const oversizeField = 15

// makeBad builds a bad message of kind from a valid one of the topic
// (byID: an IDPair, else a Sample) and checks that the decoder rejects it
// with the kind's reason.
func makeBad(kind badKind, d *dataset, rng *rand.Rand, byID bool) (key, value []byte, err error) {
	var m proto.Message
	var imgField *[]byte
	if byID {
		p := d.pair(rng)
		m, imgField, key = p, &p.First.Png, fmt.Appendf(nil, "%d", p.GetId())
	} else {
		s := d.sample(rng)
		m, imgField, key = s, &s.ImagePng, []byte(s.GetImageKey())
	}
	switch kind.name {
	case badVersion:
		switch v := m.(type) {
		case *ffcpb.IDPair:
			v.Version = 2
		case *ffcpb.Sample:
			v.Version = 2
		}
	case badNaN:
		*imgField = nanTensor(schemas.DefaultImageSize)
	case badNonImage:
		*imgField = bytes.Repeat([]byte("chaos: these bytes are not an image\n"), 8)
	case badWrongSize:
		if *imgField, err = grayPNG(schemas.DefaultImageSize/2, rng); err != nil {
			return nil, nil, err
		}
	}
	value, err = proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("bad message %s: %w", kind.name, err)
	}
	switch kind.name {
	case badOversized:
		pad := schemas.DefaultMaxMessageBytes + 1 - len(value)
		value = protowire.AppendTag(value, oversizeField, protowire.BytesType)
		value = protowire.AppendBytes(value, make([]byte, pad))
	case badTruncated:
		value = value[:len(value)/2]
	}
	if got := decodeReason(value, byID); got != kind.reason {
		return nil, nil, fmt.Errorf("bad message %s: the decoder says %q, want %q", kind.name, got, kind.reason)
	}
	return key, value, nil
}

// decodeReason is the reason the trainer's decoder (default limits)
// rejects b for, or "" when it accepts it.
func decodeReason(b []byte, byID bool) string {
	var err error
	if byID {
		_, err = schemas.DecodeIDPair(b, schemas.Limits{})
	} else {
		_, err = schemas.DecodeSample(b, schemas.Limits{})
	}
	return schemas.Reason(err)
}

// nanTensor is a size×size float32 tensor (little endian) of NaN, +Inf
// and −Inf: what a producer that forgot to encode its image would send.
func nanTensor(size int) []byte {
	vals := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}
	out := make([]byte, 0, 4*size*size)
	for i := range size * size {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(vals[i%len(vals)]))
	}
	return out
}

// grayPNG encodes a random size×size grayscale PNG.
func grayPNG(size int, rng *rand.Rand) ([]byte, error) {
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.IntN(256))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("png: %w", err)
	}
	return buf.Bytes(), nil
}
