package schemas

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// TestSignatures: a signed update and commit verify with the signer's
// public key and decode as usual; an unsigned one, one signed by another
// key, and one with a byte changed are rejected with their reason.
func TestSignatures(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	up := validCenterUpdate(DefaultDim)
	signed, err := EncodeSignedCenterUpdate(up, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyCenterUpdate(signed, pub); err != nil {
		t.Fatalf("signed update: %v", err)
	}
	if m, err := DecodeCenterUpdate(signed, Limits{}); err != nil || len(m.GetSignature()) != ed25519.SignatureSize {
		t.Fatalf("decode a signed update: %v (signature %d bytes)", err, len(m.GetSignature()))
	}
	unsigned, err := EncodeCenterUpdate(up)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := EncodeSignedCenterUpdate(up, otherPriv)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte{}, signed...)
	tampered[10] ^= 1
	cm := &ffcpb.StepCommit{Model: "m", Step: 3, TimeUnixNano: 1, Run: "r", Epoch: 2}
	commit, err := EncodeSignedStepCommit(cm, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyStepCommit(commit, pub); err != nil {
		t.Fatalf("signed commit: %v", err)
	}
	for _, tc := range []struct {
		name   string
		verify func([]byte, ed25519.PublicKey) error
		b      []byte
		key    ed25519.PublicKey
		want   error
	}{
		{"unsigned update", VerifyCenterUpdate, unsigned, pub, ErrUnsigned},
		{"update signed by another key", VerifyCenterUpdate, forged, pub, ErrBadSignature},
		{"tampered update", VerifyCenterUpdate, tampered, pub, ErrBadSignature},
		{"update checked with another key", VerifyCenterUpdate, signed, otherPub, ErrBadSignature},
		{"commit checked with another key", VerifyStepCommit, commit, otherPub, ErrBadSignature},
		{"signature twice", VerifyCenterUpdate, append(append([]byte{}, signed...), signed[len(signed)-66:]...), pub, ErrMalformed},
		{"garbage", VerifyCenterUpdate, []byte{0xff, 0xff}, pub, ErrMalformed},
	} {
		if err := tc.verify(tc.b, tc.key); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if Reason(tc.verify(tc.b, tc.key)) == ReasonOther {
			t.Errorf("%s: no reason label", tc.name)
		}
	}
}
