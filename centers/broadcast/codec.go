package broadcast

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// ProtoCodec is the wire codec of the pipeline: schemas' CenterUpdate and
// StepCommit, validated against Limits (Dim set to the model's D). With
// Sign set it signs every update and commit it encodes (the trainer);
// with Verify set it rejects every one it decodes that is not signed by
// Verify's private key, with schemas.ErrUnsigned or ErrBadSignature (the
// subscribers).
type ProtoCodec struct {
	Limits schemas.Limits
	Sign   ed25519.PrivateKey
	Verify ed25519.PublicKey
}

// WithSigner returns c signing with key (nil: no signature).
func (c ProtoCodec) WithSigner(key ed25519.PrivateKey) ProtoCodec { c.Sign = key; return c }

// WithVerifier returns c verifying against key (nil: no verification).
func (c ProtoCodec) WithVerifier(key ed25519.PublicKey) ProtoCodec { c.Verify = key; return c }

// NewProtoCodec returns the codec for a model of dimension dim.
func NewProtoCodec(dim int) ProtoCodec { return ProtoCodec{Limits: schemas.Limits{Dim: dim}} }

var kindToPB = map[Kind]ffcpb.CenterUpdate_Kind{Insert: ffcpb.CenterUpdate_INSERT, Refresh: ffcpb.CenterUpdate_REFRESH,
	Evict: ffcpb.CenterUpdate_EVICT, Tombstone: ffcpb.CenterUpdate_TOMBSTONE}

// EncodeUpdate implements Codec.
func (c ProtoCodec) EncodeUpdate(u Update) ([]byte, error) {
	k, ok := kindToPB[u.Kind]
	if !ok {
		return nil, fmt.Errorf("center update: unknown kind %v", u.Kind)
	}
	if u.Step < 0 || u.Slot < 0 || u.Row < 0 {
		return nil, fmt.Errorf("center update: negative step, slot or row: %+v", u)
	}
	m := &ffcpb.CenterUpdate{Model: u.Model, Id: u.ID, Vector: u.Vector, Step: uint64(u.Step), Slot: uint32(u.Slot), Row: uint32(u.Row), Kind: k, Run: u.Run, Epoch: u.Epoch}
	if c.Sign != nil {
		return schemas.EncodeSignedCenterUpdate(m, c.Sign)
	}
	return schemas.EncodeCenterUpdate(m)
}

// DecodeUpdate implements Codec.
func (c ProtoCodec) DecodeUpdate(b []byte) (Update, error) {
	m, err := schemas.DecodeCenterUpdate(b, c.Limits)
	if err == nil && c.Verify != nil {
		err = schemas.VerifyCenterUpdate(b, c.Verify)
	}
	if err != nil {
		return Update{}, err
	}
	u := Update{Model: m.GetModel(), ID: m.GetId(), Vector: m.GetVector(), Step: int64(m.GetStep()), Slot: int32(m.GetSlot()), Row: int32(m.GetRow()), Run: m.GetRun(), Epoch: m.GetEpoch()}
	switch m.GetKind() {
	case ffcpb.CenterUpdate_INSERT:
		u.Kind = Insert
	case ffcpb.CenterUpdate_REFRESH:
		u.Kind = Refresh
	case ffcpb.CenterUpdate_EVICT:
		u.Kind = Evict
	case ffcpb.CenterUpdate_TOMBSTONE:
		u.Kind = Tombstone
	}
	return u, nil
}

// EncodeCommit implements Codec.
func (c ProtoCodec) EncodeCommit(cm Commit) ([]byte, error) {
	if cm.Step < 0 {
		return nil, fmt.Errorf("step commit: negative step %d", cm.Step)
	}
	m := &ffcpb.StepCommit{Model: cm.Model, Step: uint64(cm.Step), ChangedIds: cm.IDs, TimeUnixNano: cm.Time.UnixNano(), Run: cm.Run,
		Epoch: cm.Epoch, Phase: ffcpb.StepCommit_Phase(cm.Phase)}
	if c.Sign != nil {
		return schemas.EncodeSignedStepCommit(m, c.Sign)
	}
	return schemas.EncodeStepCommit(m)
}

// DecodeCommit implements Codec.
func (c ProtoCodec) DecodeCommit(b []byte) (Commit, error) {
	m, err := schemas.DecodeStepCommit(b, c.Limits)
	if err == nil && c.Verify != nil {
		err = schemas.VerifyStepCommit(b, c.Verify)
	}
	if err != nil {
		return Commit{}, err
	}
	return Commit{Model: m.GetModel(), Step: int64(m.GetStep()), IDs: m.GetChangedIds(), Time: time.Unix(0, m.GetTimeUnixNano()), Run: m.GetRun(),
		Epoch: m.GetEpoch(), Phase: Phase(m.GetPhase())}, nil
}
