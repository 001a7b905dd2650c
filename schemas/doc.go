// Package schemas owns the wire: versioned messages for samples, id pairs,
// center updates, step commits and checkpoint manifests, and the decoders
// that validate them and reject bad input with a reason.
//
// It imports nothing else of the project.
//
// # Messages
//
// The messages are protobuf (ffc/v1/ffc.proto, package ffc.v1); their Go
// types are in the generated package schemas/ffcpb:
//
//   - Sample: one image of one ID (instance stream, samples.instance);
//   - IDPair: two images of one ID (id stream, samples.byid, key = id);
//   - CenterUpdate: one center inserted, refreshed or evicted
//     (centers.<model>.<id>);
//   - StepCommit: every update of a step is out (centers.<model>.step.<run>);
//   - CheckpointManifest: the parts, hashes and Kafka offsets of a
//     checkpoint.
//
// Every message has `version` as field 1. CurrentVersion (1) is the only
// version written and read. Within a version only additive changes are
// allowed; unknown fields are kept on decode and written back on encode.
// Regenerate ffcpb with `go generate ./schemas/...` (gen.sh: protoc, from
// the Debian package protobuf-compiler, and protoc-gen-go at a pinned
// version); TestGeneratedUpToDate checks the committed code is current.
//
// # Encoding and decoding
//
// EncodeX(m) stamps an unset version and marshals; it does not validate
// (ValidateX does, with the same rules as the decoder). DecodeX(b, lim)
// checks the size, reads the version before parsing the rest (so a newer
// message is reported as a version error, not as malformed), parses and
// validates. DecodeSampleImage and DecodeIDPairImages also return the
// images, decoded once, as *image.Gray.
//
// Every error wraps exactly one of ErrUnknownVersion, ErrMalformed,
// ErrTooLarge, ErrBadImage, ErrBadVector, ErrMissingField, and says which
// field and why, e.g.
//
//	schemas: decode Sample: image_png: bad image: 16×16, want 32×32
//
// Reason(err) maps it to a metric label for dead-letter counters
// ("unknown_version", "malformed", "too_large", "bad_image", "bad_vector",
// "missing_field", "other"); Reasons lists them all.
//
// # What is checked
//
//   - sizes: the message (Limits.MaxMessageBytes) before parsing; each image
//     (Limits.MaxImageBytes) before decoding; keys (MaxKeyBytes), names
//     (MaxNameBytes);
//   - image keys: "[<prefix>/]ids/<id>/<name>.png" naming the message's ID
//     (ImageKey, ParseImageKey);
//   - images: PNG, IHDR of Limits.ImageSize square checked first
//     (image.DecodeConfig), then a full decode;
//   - vectors: Limits.Dim finite floats (an EVICT may carry none);
//   - model names: one NATS subject token (no '.', '*', '>', spaces);
//   - CenterUpdate rows: 0 or 1, 0 for INSERT; kinds: set and known;
//   - manifests: a model part, unique part names and keys, Kafka topic names,
//     partitions and offsets ≥ 0 each listed once, and exactly one content
//     hash per part (SHA256Hash builds one).
//
// The zero Limits means DefaultLimits(): 1 MiB messages, 256 KiB images,
// 32×32 images, 512-float vectors.
package schemas
