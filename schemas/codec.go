package schemas

import (
	"fmt"
	"image"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// versioned is what every wire message is.
type versioned interface {
	proto.Message
	GetVersion() uint32
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// encode stamps an unset version, refuses a version it does not know and
// marshals. It does not validate the fields: call the Validate function
// first when the message comes from outside.
func encode[M versioned](name string, m M, setVersion func(M)) ([]byte, error) {
	var zero M
	if any(m) == any(zero) {
		return nil, fmt.Errorf("schemas: encode %s: %w", name, bad(ErrMissingField, "message", "nil"))
	}
	if m.GetVersion() == 0 {
		setVersion(m)
	}
	if v := m.GetVersion(); v != CurrentVersion {
		return nil, fmt.Errorf("schemas: encode %s: %w", name, bad(ErrUnknownVersion, "version", "%d, this build writes %d", v, CurrentVersion))
	}
	b, err := marshalOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("schemas: encode %s: %w: %w", name, ErrMalformed, err)
	}
	return b, nil
}

// decode checks the size, reads the version before anything else (so a
// newer message that this version cannot parse is reported as a version
// error, not as malformed), parses and validates.
func decode[M versioned](name string, b []byte, lim Limits, m M, validate func(M, Limits) error) (M, error) {
	var zero M
	lim = lim.norm()
	wrap := func(err error) (M, error) {
		return zero, fmt.Errorf("schemas: decode %s: %w", name, err)
	}
	if len(b) > lim.MaxMessageBytes {
		return wrap(bad(ErrTooLarge, "message", "%d bytes > %d", len(b), lim.MaxMessageBytes))
	}
	v, err := peekVersion(b)
	if err != nil {
		return wrap(err)
	}
	if err := checkVersion(v); err != nil {
		return wrap(err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return wrap(fmt.Errorf("%w: %w", ErrMalformed, err))
	}
	if err := validate(m, lim); err != nil {
		return wrap(err)
	}
	return m, nil
}

// peekVersion scans the top-level fields for field 1 (the last occurrence
// wins, as in protobuf) without parsing the rest.
func peekVersion(b []byte) (uint32, error) {
	var v uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(n))
		}
		if num == 1 {
			if typ != protowire.VarintType {
				return 0, bad(ErrMalformed, "version", "wire type %d, want varint", typ)
			}
			x, m := protowire.ConsumeVarint(b[n:])
			if m < 0 {
				return 0, fmt.Errorf("%w: version: %w", ErrMalformed, protowire.ParseError(m))
			}
			v = x
			b = b[n+m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return 0, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(m))
		}
		b = b[n+m:]
	}
	if v > 1<<32-1 {
		return 0, bad(ErrUnknownVersion, "version", "%d", v)
	}
	return uint32(v), nil
}

func checkVersion(v uint32) error {
	switch v {
	case CurrentVersion:
		return nil
	case 0:
		return bad(ErrUnknownVersion, "version", "0 (unset)")
	default:
		return bad(ErrUnknownVersion, "version", "%d, this build reads %d", v, CurrentVersion)
	}
}

// runMessage is what CenterUpdate and StepCommit share: a version and the
// run and model they belong to.
type runMessage interface {
	GetVersion() uint32
	GetRun() string
	GetModel() string
}

// checkRunMessage checks the version, run and model of m, in that order.
func checkRunMessage(m runMessage) error {
	if err := checkVersion(m.GetVersion()); err != nil {
		return err
	}
	if err := checkRun(m.GetRun()); err != nil {
		return err
	}
	return checkModel(m.GetModel())
}

// EncodeSample marshals a Sample, setting Version to CurrentVersion when it
// is 0. It does not validate; see ValidateSample.
func EncodeSample(m *ffcpb.Sample) ([]byte, error) {
	return encode("Sample", m, func(m *ffcpb.Sample) { m.Version = CurrentVersion })
}

// DecodeSample parses and validates a Sample: version, sizes, the image key
// naming the ID, a PNG of lim.ImageSize square, a source.
func DecodeSample(b []byte, lim Limits) (*ffcpb.Sample, error) {
	return decode("Sample", b, lim, new(ffcpb.Sample), ValidateSample)
}

// DecodeSampleImage is DecodeSample that also returns the image, decoded
// once, as grayscale.
func DecodeSampleImage(b []byte, lim Limits) (*ffcpb.Sample, *image.Gray, error) {
	var img image.Image
	m, err := decode("Sample", b, lim, new(ffcpb.Sample), func(m *ffcpb.Sample, lim Limits) (err error) {
		img, err = validateSample(m, lim)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return m, toGray(img), nil
}

// ValidateSample checks a Sample as DecodeSample does.
func ValidateSample(m *ffcpb.Sample, lim Limits) error {
	_, err := validateSample(m, lim.norm())
	return err
}

func validateSample(m *ffcpb.Sample, lim Limits) (image.Image, error) {
	if m == nil {
		return nil, bad(ErrMissingField, "message", "nil")
	}
	if err := checkVersion(m.GetVersion()); err != nil {
		return nil, err
	}
	if err := checkKey("image_key", m.GetImageKey(), m.GetId()); err != nil {
		return nil, err
	}
	if err := checkName("source", m.GetSource()); err != nil {
		return nil, err
	}
	return checkImage("image_png", m.GetImagePng(), lim)
}

// EncodeIDPair marshals an IDPair, setting Version to CurrentVersion when
// it is 0. It does not validate; see ValidateIDPair.
func EncodeIDPair(m *ffcpb.IDPair) ([]byte, error) {
	return encode("IDPair", m, func(m *ffcpb.IDPair) { m.Version = CurrentVersion })
}

// DecodeIDPair parses and validates an IDPair: version, sizes, both images
// present with keys naming the ID and PNGs of lim.ImageSize square, a
// source.
func DecodeIDPair(b []byte, lim Limits) (*ffcpb.IDPair, error) {
	return decode("IDPair", b, lim, new(ffcpb.IDPair), ValidateIDPair)
}

// DecodeIDPairImages is DecodeIDPair that also returns both images,
// decoded once, as grayscale (nil for a control record: op REMOVE).
func DecodeIDPairImages(b []byte, lim Limits) (*ffcpb.IDPair, [2]*image.Gray, error) {
	var imgs [2]image.Image
	m, err := decode("IDPair", b, lim, new(ffcpb.IDPair), func(m *ffcpb.IDPair, lim Limits) (err error) {
		imgs, err = validateIDPair(m, lim)
		return err
	})
	if err != nil {
		return nil, [2]*image.Gray{}, err
	}
	if m.GetOp() != ffcpb.IDPair_PAIR {
		return m, [2]*image.Gray{}, nil
	}
	return m, [2]*image.Gray{toGray(imgs[0]), toGray(imgs[1])}, nil
}

// ValidateIDPair checks an IDPair as DecodeIDPair does.
func ValidateIDPair(m *ffcpb.IDPair, lim Limits) error {
	_, err := validateIDPair(m, lim.norm())
	return err
}

func validateIDPair(m *ffcpb.IDPair, lim Limits) (imgs [2]image.Image, err error) {
	if m == nil {
		return imgs, bad(ErrMissingField, "message", "nil")
	}
	if err := checkVersion(m.GetVersion()); err != nil {
		return imgs, err
	}
	if err := checkName("source", m.GetSource()); err != nil {
		return imgs, err
	}
	if m.GetAnnouncedUnixNano() < 0 {
		return imgs, bad(ErrMalformed, "announced_unix_nano", "%d < 0", m.GetAnnouncedUnixNano())
	}
	switch op := m.GetOp(); op {
	case ffcpb.IDPair_PAIR:
	case ffcpb.IDPair_REMOVE:
		if m.GetFirst() != nil || m.GetSecond() != nil {
			return imgs, bad(ErrMalformed, "op", "%v record with images", op)
		}
		return imgs, nil
	default:
		return imgs, bad(ErrMalformed, "op", "unknown value %d", int32(op))
	}
	for i, im := range []*ffcpb.Image{m.GetFirst(), m.GetSecond()} {
		field := [2]string{"first", "second"}[i]
		if im == nil {
			return imgs, bad(ErrMissingField, field, "no image")
		}
		if err := checkKey(field+".key", im.GetKey(), m.GetId()); err != nil {
			return imgs, err
		}
		if imgs[i], err = checkImage(field+".png", im.GetPng(), lim); err != nil {
			return imgs, err
		}
	}
	return imgs, nil
}

// EncodeCenterUpdate marshals a CenterUpdate, setting Version to
// CurrentVersion when it is 0. It does not validate; see
// ValidateCenterUpdate.
func EncodeCenterUpdate(m *ffcpb.CenterUpdate) ([]byte, error) {
	return encode("CenterUpdate", m, func(m *ffcpb.CenterUpdate) { m.Version = CurrentVersion })
}

// DecodeCenterUpdate parses and validates a CenterUpdate: version, size,
// model name (a NATS subject token), kind, row (0 or 1; 0 for INSERT), a
// vector of lim.Dim finite floats (empty allowed for EVICT; none, slot 0
// and row 0 for TOMBSTONE).
func DecodeCenterUpdate(b []byte, lim Limits) (*ffcpb.CenterUpdate, error) {
	return decode("CenterUpdate", b, lim, new(ffcpb.CenterUpdate), ValidateCenterUpdate)
}

// ValidateCenterUpdate checks a CenterUpdate as DecodeCenterUpdate does.
func ValidateCenterUpdate(m *ffcpb.CenterUpdate, lim Limits) error {
	lim = lim.norm()
	if m == nil {
		return bad(ErrMissingField, "message", "nil")
	}
	if err := checkRunMessage(m); err != nil {
		return err
	}
	kind := m.GetKind()
	switch kind {
	case ffcpb.CenterUpdate_INSERT, ffcpb.CenterUpdate_REFRESH, ffcpb.CenterUpdate_EVICT:
	case ffcpb.CenterUpdate_TOMBSTONE:
		if len(m.GetVector()) != 0 || m.GetRow() != 0 || m.GetSlot() != 0 {
			return bad(ErrMalformed, "kind", "TOMBSTONE with a vector, slot or row")
		}
		return nil
	case ffcpb.CenterUpdate_KIND_UNSPECIFIED:
		return bad(ErrMissingField, "kind", "unset")
	default:
		return bad(ErrMalformed, "kind", "unknown value %d", int32(kind))
	}
	if r := m.GetRow(); r > 1 || (kind == ffcpb.CenterUpdate_INSERT && r != 0) {
		return bad(ErrMalformed, "row", "%d for %v (INSERT writes row 0, REFRESH row 0 or 1)", r, kind)
	}
	vec := m.GetVector()
	if kind == ffcpb.CenterUpdate_EVICT && len(vec) == 0 {
		return nil
	}
	return checkVector("vector", vec, lim)
}

// EncodeStepCommit marshals a StepCommit, setting Version to CurrentVersion
// when it is 0. It does not validate; see ValidateStepCommit.
func EncodeStepCommit(m *ffcpb.StepCommit) ([]byte, error) {
	return encode("StepCommit", m, func(m *ffcpb.StepCommit) { m.Version = CurrentVersion })
}

// DecodeStepCommit parses and validates a StepCommit: version, size, model
// name, a time. changed_ids may be empty and may repeat an ID.
func DecodeStepCommit(b []byte, lim Limits) (*ffcpb.StepCommit, error) {
	return decode("StepCommit", b, lim, new(ffcpb.StepCommit), ValidateStepCommit)
}

// ValidateStepCommit checks a StepCommit as DecodeStepCommit does.
func ValidateStepCommit(m *ffcpb.StepCommit, _ Limits) error {
	if m == nil {
		return bad(ErrMissingField, "message", "nil")
	}
	if err := checkRunMessage(m); err != nil {
		return err
	}
	if m.GetTimeUnixNano() <= 0 {
		return bad(ErrMissingField, "time_unix_nano", "%d", m.GetTimeUnixNano())
	}
	if _, ok := ffcpb.StepCommit_Phase_name[int32(m.GetPhase())]; !ok {
		return bad(ErrMalformed, "phase", "unknown value %d", int32(m.GetPhase()))
	}
	return nil
}

// EncodeCheckpointManifest marshals a CheckpointManifest, setting Version
// to CurrentVersion when it is 0. It does not validate; see
// ValidateCheckpointManifest.
func EncodeCheckpointManifest(m *ffcpb.CheckpointManifest) ([]byte, error) {
	return encode("CheckpointManifest", m, func(m *ffcpb.CheckpointManifest) { m.Version = CurrentVersion })
}

// DecodeCheckpointManifest parses and validates a CheckpointManifest:
// version, size, model name, model_key, a creation time, parts with unique
// names and keys, offsets with valid topics and no duplicate partition,
// and exactly one well-formed content hash per part key.
func DecodeCheckpointManifest(b []byte, lim Limits) (*ffcpb.CheckpointManifest, error) {
	return decode("CheckpointManifest", b, lim, new(ffcpb.CheckpointManifest), ValidateCheckpointManifest)
}
