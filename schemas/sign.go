package schemas

import (
	"crypto/ed25519"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// Signatures. The trainer signs every CenterUpdate and StepCommit it
// publishes with its ed25519 key, and subscribers that hold the public
// key verify them: a NATS account that leaked can publish, but not sign.
// The signature covers the message's bytes on the wire without the
// signature field. The signer appends that field to the encoding of the
// others; the verifier takes it out of the bytes it received. Neither
// re-encodes anything, so the bytes signed are the bytes verified.

// Field numbers of the signatures.
const (
	centerUpdateSignature protowire.Number = 11
	stepCommitSignature   protowire.Number = 9
)

// EncodeSignedCenterUpdate is EncodeCenterUpdate with the signature by
// key appended (m's own Signature is ignored).
func EncodeSignedCenterUpdate(m *ffcpb.CenterUpdate, key ed25519.PrivateKey) ([]byte, error) {
	if m == nil {
		return EncodeCenterUpdate(m)
	}
	sig := m.Signature
	m.Signature = nil
	b, err := EncodeCenterUpdate(m)
	m.Signature = sig
	if err != nil {
		return nil, err
	}
	return appendSignature(b, centerUpdateSignature, key)
}

// EncodeSignedStepCommit is EncodeStepCommit with the signature by key
// appended (m's own Signature is ignored).
func EncodeSignedStepCommit(m *ffcpb.StepCommit, key ed25519.PrivateKey) ([]byte, error) {
	if m == nil {
		return EncodeStepCommit(m)
	}
	sig := m.Signature
	m.Signature = nil
	b, err := EncodeStepCommit(m)
	m.Signature = sig
	if err != nil {
		return nil, err
	}
	return appendSignature(b, stepCommitSignature, key)
}

// VerifyCenterUpdate checks the signature of an encoded CenterUpdate
// against key: ErrUnsigned when it has none, ErrBadSignature when it does
// not verify, ErrMalformed when the bytes are not a protobuf encoding.
func VerifyCenterUpdate(b []byte, key ed25519.PublicKey) error {
	return verify("CenterUpdate", b, centerUpdateSignature, key)
}

// VerifyStepCommit checks the signature of an encoded StepCommit, as
// VerifyCenterUpdate.
func VerifyStepCommit(b []byte, key ed25519.PublicKey) error {
	return verify("StepCommit", b, stepCommitSignature, key)
}

func appendSignature(b []byte, num protowire.Number, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("schemas: sign: a private key of %d bytes, want ed25519's %d", len(key), ed25519.PrivateKeySize)
	}
	sig := ed25519.Sign(key, b)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, sig), nil
}

func verify(name string, b []byte, num protowire.Number, key ed25519.PublicKey) error {
	wrap := func(err error) error { return fmt.Errorf("schemas: verify %s: %w", name, err) }
	if len(key) != ed25519.PublicKeySize {
		return wrap(fmt.Errorf("a public key of %d bytes, want ed25519's %d", len(key), ed25519.PublicKeySize))
	}
	payload, sig, err := splitField(b, num)
	if err != nil {
		return wrap(err)
	}
	if sig == nil {
		return wrap(ErrUnsigned)
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(key, payload, sig) {
		return wrap(ErrBadSignature)
	}
	return nil
}

// splitField returns b without its top-level field num, and that field's
// bytes (nil when absent); both may share b's memory. A repeated field
// num, or one that is not length-delimited, is malformed. When the field
// is the last one, as signers write it, nothing is copied.
func splitField(b []byte, num protowire.Number) (rest, val []byte, err error) {
	start, stop := -1, -1
	for pos := 0; pos < len(b); {
		n, typ, tl := protowire.ConsumeTag(b[pos:])
		if tl < 0 {
			return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(tl))
		}
		vl := protowire.ConsumeFieldValue(n, typ, b[pos+tl:])
		if vl < 0 {
			return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, protowire.ParseError(vl))
		}
		if n == num {
			if typ != protowire.BytesType || start >= 0 {
				return nil, nil, fmt.Errorf("%w: signature field repeated or not bytes", ErrMalformed)
			}
			val, _ = protowire.ConsumeBytes(b[pos+tl:])
			start, stop = pos, pos+tl+vl
		}
		pos += tl + vl
	}
	switch {
	case start < 0:
		return b, nil, nil
	case stop == len(b):
		return b[:start], val, nil
	}
	return append(append(make([]byte, 0, len(b)), b[:start]...), b[stop:]...), val, nil
}
