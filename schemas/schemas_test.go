package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// roundTrip encodes m, decodes it and checks the result equals m.
func roundTrip[M versioned](t *testing.T, m M, enc func(M) ([]byte, error), dec func([]byte, Limits) (M, error), lim Limits) {
	t.Helper()
	b, err := enc(m)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	got, err := dec(b, lim)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !proto.Equal(got, m) {
		t.Fatalf("round trip differs:\n got %v\nwant %v", got, m)
	}
	b2, err := enc(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding differs")
	}
}

func TestRoundTrip(t *testing.T) {
	t.Run("Sample", func(t *testing.T) {
		roundTrip(t, validSample(t), EncodeSample, DecodeSample, Limits{})
	})
	t.Run("IDPair", func(t *testing.T) {
		roundTrip(t, validIDPair(t), EncodeIDPair, DecodeIDPair, Limits{})
	})
	t.Run("IDPairSameImage", func(t *testing.T) {
		m := validIDPair(t)
		m.Second = proto.Clone(m.First).(*ffcpb.Image)
		roundTrip(t, m, EncodeIDPair, DecodeIDPair, Limits{})
	})
	t.Run("CenterUpdate", func(t *testing.T) {
		roundTrip(t, validCenterUpdate(DefaultDim), EncodeCenterUpdate, DecodeCenterUpdate, Limits{})
		for _, kind := range []ffcpb.CenterUpdate_Kind{ffcpb.CenterUpdate_INSERT, ffcpb.CenterUpdate_EVICT} {
			m := validCenterUpdate(DefaultDim)
			m.Kind, m.Row = kind, 0
			roundTrip(t, m, EncodeCenterUpdate, DecodeCenterUpdate, Limits{})
		}
		m := validCenterUpdate(0)
		m.Kind, m.Row = ffcpb.CenterUpdate_EVICT, 0
		roundTrip(t, m, EncodeCenterUpdate, DecodeCenterUpdate, Limits{})
		roundTrip(t, validCenterUpdate(3), EncodeCenterUpdate, DecodeCenterUpdate, Limits{Dim: 3})
		roundTrip(t, validCenterUpdate(77), EncodeCenterUpdate, DecodeCenterUpdate, Limits{Dim: -1})
	})
	t.Run("StepCommit", func(t *testing.T) {
		roundTrip(t, validStepCommit(), EncodeStepCommit, DecodeStepCommit, Limits{})
		m := validStepCommit()
		m.ChangedIds = nil
		roundTrip(t, m, EncodeStepCommit, DecodeStepCommit, Limits{})
	})
	t.Run("CheckpointManifest", func(t *testing.T) {
		roundTrip(t, validManifest(), EncodeCheckpointManifest, DecodeCheckpointManifest, Limits{})
		m := validManifest()
		m.OptimizerKey, m.PoolKey, m.LruKey, m.OtherParts, m.Offsets = "", "", "", nil, nil
		m.Hashes = m.Hashes[:1]
		roundTrip(t, m, EncodeCheckpointManifest, DecodeCheckpointManifest, Limits{})
	})
}

func TestEncodeStampsVersion(t *testing.T) {
	m := validStepCommit()
	m.Version = 0
	b, err := EncodeStepCommit(m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != CurrentVersion {
		t.Fatalf("version %d", m.Version)
	}
	if _, err := DecodeStepCommit(b, Limits{}); err != nil {
		t.Fatal(err)
	}
	// The version is the first field on the wire.
	if num, typ, _ := protowire.ConsumeTag(b); num != 1 || typ != protowire.VarintType {
		t.Fatalf("first field %d type %d", num, typ)
	}
	m.Version = 2
	if _, err := EncodeStepCommit(m); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("encode version 2: %v", err)
	}
	if _, err := EncodeSample(nil); !errors.Is(err, ErrMissingField) {
		t.Fatalf("encode nil: %v", err)
	}
}

func TestDecodeImages(t *testing.T) {
	b, err := EncodeIDPair(validIDPair(t))
	if err != nil {
		t.Fatal(err)
	}
	m, imgs, err := DecodeIDPairImages(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if m.GetId() != 7 {
		t.Fatal(m.GetId())
	}
	for i, g := range imgs {
		if g.Bounds().Dx() != 32 || g.Bounds().Dy() != 32 {
			t.Fatalf("image %d bounds %v", i, g.Bounds())
		}
	}
	// RGBA (10,200,30) → Y = (19595*10 + 38470*200 + 7471*30 + 1<<15) >> 24 on 16-bit values.
	want := color.GrayModel.Convert(color.RGBA{10, 200, 30, 255}).(color.Gray).Y
	if got := imgs[1].GrayAt(5, 5).Y; got != want {
		t.Fatalf("gray %d, want %d", got, want)
	}
	s := validSample(t)
	b, err = EncodeSample(s)
	if err != nil {
		t.Fatal(err)
	}
	_, g, err := DecodeSampleImage(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := g.GrayAt(3, 2).Y, byte(3*7+2*3)^1; got != want {
		t.Fatalf("pixel %d, want %d", got, want)
	}
	if _, _, err := DecodeSampleImage([]byte{0xff}, Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
	if _, err := DecodeImage(grayPNG(t, 64, 48, 0), Limits{ImageSize: -1}); err != nil {
		t.Fatal(err)
	}
}

type badCase[M any] struct {
	name   string
	mutate func(m M)
	lim    Limits
	want   error
}

// checkBad runs each case: mutate a valid message, marshal it without the
// encoder's checks, decode, and want the sentinel and its reason.
func checkBad[M versioned](t *testing.T, valid func() M, dec func([]byte, Limits) (M, error), validate func(M, Limits) error, cases []badCase[M]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := valid()
			c.mutate(m)
			b, err := proto.MarshalOptions{}.Marshal(m)
			if err != nil {
				// Not representable on the wire (invalid UTF-8): the
				// validator must still reject the struct.
				if verr := validate(m, c.lim); !errors.Is(verr, c.want) {
					t.Fatalf("validate: %v, want %v", verr, c.want)
				}
				return
			}
			got, err := dec(b, c.lim)
			if err == nil {
				t.Fatalf("accepted %v", got)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if r, want := Reason(err), Reason(c.want); r != want {
				t.Fatalf("reason %q, want %q (%v)", r, want, err)
			}
			if !strings.HasPrefix(err.Error(), "schemas: decode ") {
				t.Fatalf("error text %q", err)
			}
			t.Logf("%v", err)
		})
	}
}

// commonBytes are raw inputs every decoder must reject.
var commonBytes = []struct {
	name string
	b    []byte
	want error
}{
	{"empty", nil, ErrUnknownVersion},
	{"truncated tag", []byte{0x80}, ErrMalformed},
	{"bad wire type", []byte{0x0f}, ErrMalformed},
	{"truncated length", []byte{0x08, 0x01, 0x1a, 0x05, 'a'}, ErrMalformed},
	{"version as bytes", []byte{0x0a, 0x01, 0x01}, ErrMalformed},
	{"version 2", []byte{0x08, 0x02}, ErrUnknownVersion},
	{"version huge", protowire.AppendVarint([]byte{0x08}, 1<<40), ErrUnknownVersion},
	{"version 2 then 1", []byte{0x08, 0x02, 0x08, 0x01, 0x08, 0x02}, ErrUnknownVersion},
	{"too large", bytes.Repeat([]byte{0x08, 0x01}, DefaultMaxMessageBytes/2+1), ErrTooLarge},
}

func TestDecodeBadBytes(t *testing.T) {
	decoders := map[string]func([]byte, Limits) error{
		"Sample":             func(b []byte, l Limits) error { _, err := DecodeSample(b, l); return err },
		"IDPair":             func(b []byte, l Limits) error { _, err := DecodeIDPair(b, l); return err },
		"CenterUpdate":       func(b []byte, l Limits) error { _, err := DecodeCenterUpdate(b, l); return err },
		"StepCommit":         func(b []byte, l Limits) error { _, err := DecodeStepCommit(b, l); return err },
		"CheckpointManifest": func(b []byte, l Limits) error { _, err := DecodeCheckpointManifest(b, l); return err },
	}
	for name, dec := range decoders {
		for _, c := range commonBytes {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				err := dec(c.b, Limits{})
				if !errors.Is(err, c.want) {
					t.Fatalf("error %v, want %v", err, c.want)
				}
			})
		}
	}
}

func TestDecodeSampleBad(t *testing.T) {
	png := func(b []byte) func(*ffcpb.Sample) { return func(m *ffcpb.Sample) { m.ImagePng = b } }
	valid := grayPNG(t, 32, 32, 1)
	checkBad(t, func() *ffcpb.Sample { return validSample(t) }, DecodeSample, ValidateSample, []badCase[*ffcpb.Sample]{
		{name: "version 0", mutate: func(m *ffcpb.Sample) { m.Version = 0 }, want: ErrUnknownVersion},
		{name: "version 2", mutate: func(m *ffcpb.Sample) { m.Version = 2 }, want: ErrUnknownVersion},
		{name: "message too large", mutate: func(*ffcpb.Sample) {}, lim: Limits{MaxMessageBytes: 100}, want: ErrTooLarge},
		{name: "no key", mutate: func(m *ffcpb.Sample) { m.ImageKey = "" }, want: ErrMissingField},
		{name: "key too long", mutate: func(m *ffcpb.Sample) { m.ImageKey = strings.Repeat("x/", 600) + "ids/4242/a.png" }, want: ErrTooLarge},
		{name: "key other id", mutate: func(m *ffcpb.Sample) { m.ImageKey = "ids/4243/a.png" }, want: ErrMalformed},
		{name: "key not png", mutate: func(m *ffcpb.Sample) { m.ImageKey = "ids/4242/a.jpg" }, want: ErrMalformed},
		{name: "key no ids", mutate: func(m *ffcpb.Sample) { m.ImageKey = "4242/a.png" }, want: ErrMalformed},
		{name: "key invalid utf8", mutate: func(m *ffcpb.Sample) { m.ImageKey = "ids/4242/\xff.png" }, want: ErrMalformed},
		{name: "no source", mutate: func(m *ffcpb.Sample) { m.Source = "" }, want: ErrMissingField},
		{name: "source too long", mutate: func(m *ffcpb.Sample) { m.Source = strings.Repeat("s", MaxNameBytes+1) }, want: ErrTooLarge},
		{name: "no image", mutate: png(nil), want: ErrMissingField},
		{name: "image too large", mutate: func(*ffcpb.Sample) {}, lim: Limits{MaxImageBytes: 10}, want: ErrTooLarge},
		{name: "image not png", mutate: png([]byte("GIF89a not a png at all")), want: ErrBadImage},
		{name: "image truncated", mutate: png(valid[:len(valid)/2]), want: ErrBadImage},
		{name: "image header only", mutate: png(valid[:33]), want: ErrBadImage},
		{name: "image corrupt data", mutate: png(corruptIDAT(valid)), want: ErrBadImage},
		{name: "image 16x16", mutate: png(grayPNG(t, 16, 16, 0)), want: ErrBadImage},
		{name: "image 32x31", mutate: png(grayPNG(t, 32, 31, 0)), want: ErrBadImage},
		{name: "image size limit", mutate: func(*ffcpb.Sample) {}, lim: Limits{ImageSize: 112}, want: ErrBadImage},
		{name: "image too many pixels", mutate: png(hugeIHDR(t, 1<<15, 1<<15)), lim: Limits{ImageSize: -1}, want: ErrTooLarge},
	})
}

// corruptIDAT flips bytes inside the first IDAT chunk's payload.
func corruptIDAT(p []byte) []byte {
	q := slices.Clone(p)
	i := bytes.Index(q, []byte("IDAT"))
	for j := i + 6; j < i+12 && j < len(q); j++ {
		q[j] ^= 0x5a
	}
	return q
}

// hugeIHDR returns a PNG whose IHDR declares w×h (the rest is one small
// image's data), to check the pixel bound acts before decoding.
func hugeIHDR(t testing.TB, w, h uint32) []byte {
	q := slices.Clone(grayPNG(t, 32, 32, 0))
	// Signature (8) + length (4) + "IHDR" (4), then width, height.
	put := func(off int, v uint32) {
		q[off], q[off+1], q[off+2], q[off+3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	}
	put(16, w)
	put(20, h)
	// Fix the IHDR CRC so the config decodes.
	crc := crc32IEEE(q[12:29])
	put(29, crc)
	return q
}

func TestDecodeIDPairBad(t *testing.T) {
	checkBad(t, func() *ffcpb.IDPair { return validIDPair(t) }, DecodeIDPair, ValidateIDPair, []badCase[*ffcpb.IDPair]{
		{name: "version 3", mutate: func(m *ffcpb.IDPair) { m.Version = 3 }, want: ErrUnknownVersion},
		{name: "too large", mutate: func(*ffcpb.IDPair) {}, lim: Limits{MaxMessageBytes: 64}, want: ErrTooLarge},
		{name: "no first", mutate: func(m *ffcpb.IDPair) { m.First = nil }, want: ErrMissingField},
		{name: "no second", mutate: func(m *ffcpb.IDPair) { m.Second = nil }, want: ErrMissingField},
		{name: "first no key", mutate: func(m *ffcpb.IDPair) { m.First.Key = "" }, want: ErrMissingField},
		{name: "second other id", mutate: func(m *ffcpb.IDPair) { m.Second.Key = "ids/70/b.png" }, want: ErrMalformed},
		{name: "second leading zero id", mutate: func(m *ffcpb.IDPair) { m.Second.Key = "ids/07/b.png" }, want: ErrMalformed},
		{name: "first no png", mutate: func(m *ffcpb.IDPair) { m.First.Png = nil }, want: ErrMissingField},
		{name: "second bad png", mutate: func(m *ffcpb.IDPair) { m.Second.Png = []byte{0x89, 'P', 'N', 'G'} }, want: ErrBadImage},
		{name: "second wrong size", mutate: func(m *ffcpb.IDPair) { m.Second.Png = grayPNG(t, 33, 33, 0) }, want: ErrBadImage},
		{name: "image too large", mutate: func(*ffcpb.IDPair) {}, lim: Limits{MaxImageBytes: 20}, want: ErrTooLarge},
		{name: "no source", mutate: func(m *ffcpb.IDPair) { m.Source = "" }, want: ErrMissingField},
		{name: "negative announced", mutate: func(m *ffcpb.IDPair) { m.AnnouncedUnixNano = -1 }, want: ErrMalformed},
		{name: "remove with images", mutate: func(m *ffcpb.IDPair) { m.Op = ffcpb.IDPair_REMOVE }, want: ErrMalformed},
		{name: "unknown op", mutate: func(m *ffcpb.IDPair) { m.Op = 7 }, want: ErrMalformed},
	})
}

// TestControlRecords: a REMOVE record has no images and decodes without
// them; a TOMBSTONE has no vector, slot or row.
func TestControlRecords(t *testing.T) {
	b, err := EncodeIDPair(&ffcpb.IDPair{Id: 7, Op: ffcpb.IDPair_REMOVE, Source: "s", AnnouncedUnixNano: 5})
	if err != nil {
		t.Fatal(err)
	}
	m, imgs, err := DecodeIDPairImages(b, Limits{})
	if err != nil || m.GetOp() != ffcpb.IDPair_REMOVE || m.GetId() != 7 || imgs[0] != nil || imgs[1] != nil {
		t.Fatalf("REMOVE record: %v, %v, %v", m, imgs, err)
	}
	tomb := &ffcpb.CenterUpdate{Model: "m", Id: 7, Kind: ffcpb.CenterUpdate_TOMBSTONE, Step: 3, Run: "r", Epoch: 1}
	b, err = EncodeCenterUpdate(tomb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCenterUpdate(b, Limits{}); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	for name, mut := range map[string]func(*ffcpb.CenterUpdate){
		"vector": func(m *ffcpb.CenterUpdate) { m.Vector = make([]float32, DefaultDim) },
		"slot":   func(m *ffcpb.CenterUpdate) { m.Slot = 2 },
		"row":    func(m *ffcpb.CenterUpdate) { m.Row = 1 },
	} {
		bad := proto.Clone(tomb).(*ffcpb.CenterUpdate)
		mut(bad)
		if err := ValidateCenterUpdate(bad, Limits{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("tombstone with a %s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestDecodeCenterUpdateBad(t *testing.T) {
	nan := func(x float32) func(*ffcpb.CenterUpdate) { return func(m *ffcpb.CenterUpdate) { m.Vector[100] = x } }
	checkBad(t, func() *ffcpb.CenterUpdate { return validCenterUpdate(DefaultDim) }, DecodeCenterUpdate, ValidateCenterUpdate, []badCase[*ffcpb.CenterUpdate]{
		{name: "version 0", mutate: func(m *ffcpb.CenterUpdate) { m.Version = 0 }, want: ErrUnknownVersion},
		{name: "too large", mutate: func(*ffcpb.CenterUpdate) {}, lim: Limits{MaxMessageBytes: 1024}, want: ErrTooLarge},
		{name: "no model", mutate: func(m *ffcpb.CenterUpdate) { m.Model = "" }, want: ErrMissingField},
		{name: "model with dot", mutate: func(m *ffcpb.CenterUpdate) { m.Model = "a.b" }, want: ErrMalformed},
		{name: "model with wildcard", mutate: func(m *ffcpb.CenterUpdate) { m.Model = "a>" }, want: ErrMalformed},
		{name: "model with space", mutate: func(m *ffcpb.CenterUpdate) { m.Model = "a b" }, want: ErrMalformed},
		{name: "model too long", mutate: func(m *ffcpb.CenterUpdate) { m.Model = strings.Repeat("m", 300) }, want: ErrTooLarge},
		{name: "kind unset", mutate: func(m *ffcpb.CenterUpdate) { m.Kind = 0 }, want: ErrMissingField},
		{name: "kind unknown", mutate: func(m *ffcpb.CenterUpdate) { m.Kind = 9 }, want: ErrMalformed},
		{name: "row 2", mutate: func(m *ffcpb.CenterUpdate) { m.Row = 2 }, want: ErrMalformed},
		{name: "insert row 1", mutate: func(m *ffcpb.CenterUpdate) { m.Kind = ffcpb.CenterUpdate_INSERT }, want: ErrMalformed},
		{name: "vector short", mutate: func(m *ffcpb.CenterUpdate) { m.Vector = m.Vector[:511] }, want: ErrBadVector},
		{name: "vector long", mutate: func(m *ffcpb.CenterUpdate) { m.Vector = append(m.Vector, 0) }, want: ErrBadVector},
		{name: "vector empty", mutate: func(m *ffcpb.CenterUpdate) { m.Vector = nil }, want: ErrBadVector},
		{name: "vector dim limit", mutate: func(*ffcpb.CenterUpdate) {}, lim: Limits{Dim: 128}, want: ErrBadVector},
		{name: "vector any dim empty", mutate: func(m *ffcpb.CenterUpdate) { m.Vector = nil }, lim: Limits{Dim: -1}, want: ErrBadVector},
		{name: "NaN", mutate: nan(float32(math.NaN())), want: ErrBadVector},
		{name: "+Inf", mutate: nan(float32(math.Inf(1))), want: ErrBadVector},
		{name: "-Inf", mutate: nan(float32(math.Inf(-1))), want: ErrBadVector},
		{name: "evict NaN", mutate: func(m *ffcpb.CenterUpdate) {
			m.Kind, m.Row = ffcpb.CenterUpdate_EVICT, 0
			m.Vector[0] = float32(math.NaN())
		}, want: ErrBadVector},
		{name: "evict short", mutate: func(m *ffcpb.CenterUpdate) {
			m.Kind, m.Row = ffcpb.CenterUpdate_EVICT, 0
			m.Vector = m.Vector[:3]
		}, want: ErrBadVector},
	})
}

func TestDecodeStepCommitBad(t *testing.T) {
	checkBad(t, validStepCommit, DecodeStepCommit, ValidateStepCommit, []badCase[*ffcpb.StepCommit]{
		{name: "version 0", mutate: func(m *ffcpb.StepCommit) { m.Version = 0 }, want: ErrUnknownVersion},
		{name: "version 2", mutate: func(m *ffcpb.StepCommit) { m.Version = 2 }, want: ErrUnknownVersion},
		{name: "too large", mutate: func(m *ffcpb.StepCommit) { m.ChangedIds = make([]uint64, 1<<20) }, want: ErrTooLarge},
		{name: "no model", mutate: func(m *ffcpb.StepCommit) { m.Model = "" }, want: ErrMissingField},
		{name: "model star", mutate: func(m *ffcpb.StepCommit) { m.Model = "*" }, want: ErrMalformed},
		{name: "model invalid utf8", mutate: func(m *ffcpb.StepCommit) { m.Model = "\xc3" }, want: ErrMalformed},
		{name: "no time", mutate: func(m *ffcpb.StepCommit) { m.TimeUnixNano = 0 }, want: ErrMissingField},
		{name: "negative time", mutate: func(m *ffcpb.StepCommit) { m.TimeUnixNano = -1 }, want: ErrMissingField},
	})
}

func TestDecodeCheckpointManifestBad(t *testing.T) {
	type M = *ffcpb.CheckpointManifest
	checkBad(t, validManifest, DecodeCheckpointManifest, ValidateCheckpointManifest, []badCase[M]{
		{name: "version 0", mutate: func(m M) { m.Version = 0 }, want: ErrUnknownVersion},
		{name: "too large", mutate: func(M) {}, lim: Limits{MaxMessageBytes: 200}, want: ErrTooLarge},
		{name: "no model", mutate: func(m M) { m.Model = "" }, want: ErrMissingField},
		{name: "no created", mutate: func(m M) { m.CreatedUnixNano = 0 }, want: ErrMissingField},
		{name: "no model key", mutate: func(m M) { m.ModelKey = "" }, want: ErrMissingField},
		{name: "model key too long", mutate: func(m M) { m.ModelKey = strings.Repeat("k", MaxKeyBytes+1) }, want: ErrTooLarge},
		{name: "same key twice", mutate: func(m M) { m.PoolKey = m.ModelKey }, want: ErrMalformed},
		{name: "part no name", mutate: func(m M) { m.OtherParts[0].Name = "" }, want: ErrMissingField},
		{name: "part reserved name", mutate: func(m M) { m.OtherParts[0].Name = PartPool }, want: ErrMalformed},
		{name: "part repeated", mutate: func(m M) { m.OtherParts = append(m.OtherParts, m.OtherParts[0]) }, want: ErrMalformed},
		{name: "part no key", mutate: func(m M) { m.OtherParts[0].Key = "" }, want: ErrMissingField},
		{name: "topic empty", mutate: func(m M) { m.Offsets[0].Topic = "" }, want: ErrMissingField},
		{name: "topic bad char", mutate: func(m M) { m.Offsets[0].Topic = "samples/byid" }, want: ErrMalformed},
		{name: "topic too long", mutate: func(m M) { m.Offsets[0].Topic = strings.Repeat("t", 250) }, want: ErrTooLarge},
		{name: "topic repeated", mutate: func(m M) { m.Offsets[1].Topic = m.Offsets[0].Topic }, want: ErrMalformed},
		{name: "topic no partitions", mutate: func(m M) { m.Offsets[0].Partitions = nil }, want: ErrMissingField},
		{name: "partition negative", mutate: func(m M) { m.Offsets[0].Partitions[0].Partition = -1 }, want: ErrMalformed},
		{name: "offset negative", mutate: func(m M) { m.Offsets[0].Partitions[0].Offset = -1 }, want: ErrMalformed},
		{name: "partition repeated", mutate: func(m M) { m.Offsets[0].Partitions[1].Partition = 0 }, want: ErrMalformed},
		{name: "hash missing", mutate: func(m M) { m.Hashes = m.Hashes[1:] }, want: ErrMissingField},
		{name: "hash other key", mutate: func(m M) { m.Hashes[0].Key = "elsewhere" }, want: ErrMalformed},
		{name: "hash empty key", mutate: func(m M) { m.Hashes[0].Key = "" }, want: ErrMissingField},
		{name: "hash repeated", mutate: func(m M) { m.Hashes = append(m.Hashes, m.Hashes[0]) }, want: ErrMalformed},
		{name: "hash no algorithm", mutate: func(m M) { m.Hashes[0].Algorithm = "" }, want: ErrMissingField},
		{name: "hash no digest", mutate: func(m M) { m.Hashes[0].Digest = nil }, want: ErrMissingField},
		{name: "hash short sha256", mutate: func(m M) { m.Hashes[0].Digest = m.Hashes[0].Digest[:31] }, want: ErrMalformed},
		{name: "hash huge digest", mutate: func(m M) { m.Hashes[0].Algorithm, m.Hashes[0].Digest = "blake9", make([]byte, 129) }, want: ErrTooLarge},
	})
}

func TestValidateNil(t *testing.T) {
	for name, err := range map[string]error{
		"Sample":             ValidateSample(nil, Limits{}),
		"IDPair":             ValidateIDPair(nil, Limits{}),
		"CenterUpdate":       ValidateCenterUpdate(nil, Limits{}),
		"StepCommit":         ValidateStepCommit(nil, Limits{}),
		"CheckpointManifest": ValidateCheckpointManifest(nil, Limits{}),
	} {
		if !errors.Is(err, ErrMissingField) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("x"), "other"},
		{ErrUnknownVersion, "unknown_version"},
		{bad(ErrMalformed, "f", "x"), "malformed"},
		{bad(ErrTooLarge, "f", "x"), "too_large"},
		{bad(ErrBadImage, "f", "x"), "bad_image"},
		{bad(ErrBadVector, "f", "x"), "bad_vector"},
		{bad(ErrMissingField, "f", "x"), "missing_field"},
		{fmt.Errorf("v: %w", ErrUnsigned), "unsigned"},
		{fmt.Errorf("v: %w", ErrBadSignature), "bad_signature"},
	} {
		if got := Reason(c.err); got != c.want {
			t.Errorf("Reason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	want := []string{"unknown_version", "too_large", "bad_image", "bad_vector", "missing_field", "unsigned", "bad_signature", "malformed", "other"}
	if got := Reasons(); !slices.Equal(got, want) {
		t.Fatalf("Reasons() = %v", got)
	}
}

func TestImageKey(t *testing.T) {
	if k := ImageKey(12, "a-b"); k != "ids/12/a-b.png" {
		t.Fatal(k)
	}
	for _, c := range []struct {
		key  string
		id   uint64
		name string
		err  error
	}{
		{"ids/12/a.png", 12, "a", nil},
		{"x/y/ids/0/font.name.png", 0, "font.name", nil},
		{"ids/18446744073709551615/z.png", math.MaxUint64, "z", nil},
		{"", 0, "", ErrMissingField},
		{"ids/18446744073709551616/z.png", 0, "", ErrMalformed},
		{"ids/12/.png", 0, "", ErrMalformed},
		{"ids/12/a.PNG", 0, "", ErrMalformed},
		{"ids//a.png", 0, "", ErrMalformed},
		{"ids/-1/a.png", 0, "", ErrMalformed},
		{"ids/+1/a.png", 0, "", ErrMalformed},
		{"ids/012/a.png", 0, "", ErrMalformed},
		{"xids/12/a.png", 0, "", ErrMalformed},
		{"12/a.png", 0, "", ErrMalformed},
		{"a.png", 0, "", ErrMalformed},
		{"ids/12/sub/a.png", 0, "", ErrMalformed},
	} {
		id, name, err := ParseImageKey(c.key)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: %v, want %v", c.key, err, c.err)
			}
			continue
		}
		if err != nil || id != c.id || name != c.name {
			t.Errorf("%q: %d %q %v", c.key, id, name, err)
		}
	}
}

func TestManifestParts(t *testing.T) {
	got := ManifestParts(validManifest())
	if len(got) != 5 || got[PartLRU] != "checkpoints/ffc-small/5000/lru.bin" || got["head"] == "" {
		t.Fatal(got)
	}
}

func TestLimitsDefaults(t *testing.T) {
	if (Limits{}).norm() != DefaultLimits() {
		t.Fatal((Limits{}).norm())
	}
	l := Limits{ImageSize: -1, Dim: -1}.norm()
	if l.ImageSize != -1 || l.Dim != -1 || l.MaxMessageBytes != DefaultMaxMessageBytes {
		t.Fatal(l)
	}
}

func TestDecodeInvalidUTF8(t *testing.T) {
	// version 1, then a string field holding 0xff.
	str := func(field protowire.Number) []byte {
		b := protowire.AppendTag(nil, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
		b = protowire.AppendTag(b, field, protowire.BytesType)
		return protowire.AppendBytes(b, []byte{0xff})
	}
	for name, err := range map[string]error{
		"Sample":             second(DecodeSample(str(3), Limits{})),
		"IDPair":             second(DecodeIDPair(str(6), Limits{})),
		"CenterUpdate":       second(DecodeCenterUpdate(str(2), Limits{})),
		"StepCommit":         second(DecodeStepCommit(str(2), Limits{})),
		"CheckpointManifest": second(DecodeCheckpointManifest(str(2), Limits{})),
	} {
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func second[A, B any](_ A, b B) B { return b }
