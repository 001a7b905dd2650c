package schemas

import (
	"image/color"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// The fuzz property for every decoder: it never panics; a rejection wraps
// one of the sentinels (Reason is never "other"); anything accepted
// re-encodes, and the re-encoding decodes to an equal message.
func fuzzDecode[M versioned](f *testing.F, seeds []M, packed map[protowire.Number]protowire.Type, lim Limits, enc func(M) ([]byte, error), dec func([]byte, Limits) (M, error)) {
	for _, m := range seeds {
		b, err := enc(m)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := dec(b, lim); err != nil {
			f.Fatalf("seed rejected: %v", err)
		}
		f.Add(b)
		for _, v := range wireVariants(b, packed) {
			f.Add(v)
		}
	}
	for _, c := range commonBytes {
		if len(c.b) < 1024 {
			f.Add(c.b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dec(b, lim)
		if err != nil {
			if Reason(err) == ReasonOther {
				t.Fatalf("rejection without a reason: %v", err)
			}
			return
		}
		b2, err := enc(m)
		if err != nil {
			t.Fatalf("accepted message does not re-encode: %v", err)
		}
		m2, err := dec(b2, lim)
		if err != nil {
			t.Fatalf("re-encoding rejected: %v", err)
		}
		if !proto.Equal(m, m2) {
			t.Fatalf("re-encoding decodes differently:\n%v\n%v", m, m2)
		}
	})
}

func FuzzDecodeSample(f *testing.F) {
	s2 := validSample(f)
	s2.Id, s2.ImageKey, s2.ImagePng = 0, "p/ids/0/x.png", rgbaPNG(f, 32, 32, color.RGBA{1, 2, 3, 128})
	fuzzDecode(f, []*ffcpb.Sample{validSample(f), s2}, nil, Limits{}, EncodeSample, DecodeSample)
}

func FuzzDecodeIDPair(f *testing.F) {
	p2 := validIDPair(f)
	p2.Second = p2.First
	fuzzDecode(f, []*ffcpb.IDPair{validIDPair(f), p2}, nil, Limits{}, EncodeIDPair, DecodeIDPair)
}

func FuzzDecodeCenterUpdate(f *testing.F) {
	// A small dimension so that mutations reach accepted messages often.
	const dim = 8
	ins := validCenterUpdate(dim)
	ins.Kind, ins.Row = ffcpb.CenterUpdate_INSERT, 0
	ev := validCenterUpdate(0)
	ev.Kind, ev.Row = ffcpb.CenterUpdate_EVICT, 0
	fuzzDecode(f, []*ffcpb.CenterUpdate{validCenterUpdate(dim), ins, ev}, map[protowire.Number]protowire.Type{4: protowire.Fixed32Type}, Limits{Dim: dim}, EncodeCenterUpdate, DecodeCenterUpdate)
}

func FuzzDecodeStepCommit(f *testing.F) {
	s2 := validStepCommit()
	s2.ChangedIds = nil
	fuzzDecode(f, []*ffcpb.StepCommit{validStepCommit(), s2}, map[protowire.Number]protowire.Type{4: protowire.VarintType}, Limits{}, EncodeStepCommit, DecodeStepCommit)
}

func FuzzDecodeCheckpointManifest(f *testing.F) {
	m2 := validManifest()
	m2.OptimizerKey, m2.PoolKey, m2.LruKey, m2.OtherParts, m2.Offsets = "", "", "", nil, nil
	m2.Hashes = m2.Hashes[:1]
	fuzzDecode(f, []*ffcpb.CheckpointManifest{validManifest(), m2}, nil, Limits{}, EncodeCheckpointManifest, DecodeCheckpointManifest)
}

// wireVariants returns encodings of the same message (or one that should
// be just as valid) that this package never writes: an unknown field, the
// fields in reverse order, the version repeated, packed repeated scalars
// unpacked. Decoders must accept them.
func wireVariants(b []byte, packed map[protowire.Number]protowire.Type) [][]byte {
	type field struct {
		num protowire.Number
		typ protowire.Type
		raw []byte // tag and value
		val []byte // value only
	}
	var fields []field
	for rest := b; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		m := protowire.ConsumeFieldValue(num, typ, rest[n:])
		if n < 0 || m < 0 {
			panic("bad seed")
		}
		fields = append(fields, field{num, typ, rest[:n+m], rest[n : n+m]})
		rest = rest[n+m:]
	}
	join := func(fs []field) []byte {
		var out []byte
		for _, f := range fs {
			out = append(out, f.raw...)
		}
		return out
	}
	unknown := protowire.AppendTag(slices.Clone(b), 1000, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("from a newer writer"))
	reversed := slices.Clone(fields)
	slices.Reverse(reversed)
	twice := append(slices.Clone(b), fields[0].raw...)
	out := [][]byte{unknown, join(reversed), twice}

	// Unpack the packed repeated scalars (packed: field number → element
	// wire type).
	var unpacked []byte
	changed := false
	for _, f := range fields {
		if elem, ok := packed[f.num]; ok && f.typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(f.val)
			for len(v) > 0 {
				var n int
				if elem == protowire.Fixed32Type {
					unpacked = protowire.AppendTag(unpacked, f.num, protowire.Fixed32Type)
					n = 4
				} else {
					unpacked = protowire.AppendTag(unpacked, f.num, protowire.VarintType)
					_, n = protowire.ConsumeVarint(v)
				}
				unpacked = append(unpacked, v[:n]...)
				v = v[n:]
			}
			changed = true
			continue
		}
		unpacked = append(unpacked, f.raw...)
	}
	if changed {
		out = append(out, unpacked)
	}
	return out
}

// TestWireVariantsAccepted: every decoder accepts the encodings it never
// writes itself (see wireVariants), and the unpacked forms decode to the
// same message as the packed ones.
func TestWireVariantsAccepted(t *testing.T) {
	check := func(name string, b []byte, packed map[protowire.Number]protowire.Type, dec func([]byte) (proto.Message, error)) {
		want, err := dec(b)
		if err != nil {
			t.Fatal(err)
		}
		vs := wireVariants(b, packed)
		if len(packed) > 0 && len(vs) != 4 {
			t.Fatalf("%s: nothing unpacked", name)
		}
		for i, v := range vs {
			got, err := dec(v)
			if err != nil {
				t.Errorf("%s variant %d: %v", name, i, err)
				continue
			}
			if (i == 2 || i == 3) && !proto.Equal(got, want) {
				t.Errorf("%s variant %d decodes to %v, want %v", name, i, got, want)
			}
		}
	}
	enc := func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check("Sample", enc(EncodeSample(validSample(t))), nil, func(b []byte) (proto.Message, error) { return DecodeSample(b, Limits{}) })
	check("IDPair", enc(EncodeIDPair(validIDPair(t))), nil, func(b []byte) (proto.Message, error) { return DecodeIDPair(b, Limits{}) })
	check("CenterUpdate", enc(EncodeCenterUpdate(validCenterUpdate(DefaultDim))), map[protowire.Number]protowire.Type{4: protowire.Fixed32Type},
		func(b []byte) (proto.Message, error) { return DecodeCenterUpdate(b, Limits{}) })
	check("StepCommit", enc(EncodeStepCommit(validStepCommit())), map[protowire.Number]protowire.Type{4: protowire.VarintType},
		func(b []byte) (proto.Message, error) { return DecodeStepCommit(b, Limits{}) })
	check("CheckpointManifest", enc(EncodeCheckpointManifest(validManifest())), nil, func(b []byte) (proto.Message, error) { return DecodeCheckpointManifest(b, Limits{}) })
}
