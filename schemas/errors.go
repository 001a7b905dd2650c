package schemas

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error a decoder or validator returns wraps exactly
// one of them (test with errors.Is); Reason maps it to a metric label.
var (
	// ErrUnknownVersion: the version field is not one this package knows
	// (0, i.e. unset, included).
	ErrUnknownVersion = errors.New("unknown schema version")
	// ErrMalformed: the bytes are not a protobuf encoding of the message,
	// or fields that parse are inconsistent (an object key that does not
	// name the message's ID, a duplicate partition, an enum value out of
	// range, a model name that is not a NATS subject token, ...).
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge: the message, an image, a key or a name is above a limit.
	ErrTooLarge = errors.New("too large")
	// ErrBadImage: image bytes that are not a decodable PNG of the
	// expected size.
	ErrBadImage = errors.New("bad image")
	// ErrBadVector: a vector of the wrong length or with NaN/Inf in it.
	ErrBadVector = errors.New("bad vector")
	// ErrMissingField: a required field is empty (image key, image bytes,
	// model name, source, time, ...).
	ErrMissingField = errors.New("missing field")
	// ErrUnsigned: a signature is required (a verification key is set)
	// and the message has none.
	ErrUnsigned = errors.New("unsigned message")
	// ErrBadSignature: the signature does not verify against the key.
	ErrBadSignature = errors.New("bad signature")
)

// Reason labels returned by Reason.
const (
	ReasonUnknownVersion = "unknown_version"
	ReasonMalformed      = "malformed"
	ReasonTooLarge       = "too_large"
	ReasonBadImage       = "bad_image"
	ReasonBadVector      = "bad_vector"
	ReasonMissingField   = "missing_field"
	ReasonUnsigned       = "unsigned"
	ReasonBadSignature   = "bad_signature"
	ReasonOther          = "other"
)

var reasons = []struct {
	err   error
	label string
}{
	{ErrUnknownVersion, ReasonUnknownVersion},
	{ErrTooLarge, ReasonTooLarge},
	{ErrBadImage, ReasonBadImage},
	{ErrBadVector, ReasonBadVector},
	{ErrMissingField, ReasonMissingField},
	{ErrUnsigned, ReasonUnsigned},
	{ErrBadSignature, ReasonBadSignature},
	{ErrMalformed, ReasonMalformed},
}

// Reason maps an error to a short label for dead-letter counters:
// "unknown_version", "malformed", "too_large", "bad_image", "bad_vector",
// "missing_field", or "other" for an error that wraps none of the
// sentinels. It returns "" for a nil error.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return ReasonOther
}

// Reasons lists every label Reason can return (for pre-registering
// counters), in a fixed order.
func Reasons() []string {
	out := make([]string, 0, len(reasons)+1)
	for _, r := range reasons {
		out = append(out, r.label)
	}
	return append(out, ReasonOther)
}

// bad builds a field-level error wrapping kind: "<field>: <kind>: <detail>".
func bad(kind error, field, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", field, kind, fmt.Sprintf(format, args...))
}
