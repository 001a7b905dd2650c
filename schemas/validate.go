package schemas

import (
	"crypto/sha256"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// checkName: non-empty, at most MaxNameBytes, UTF-8.
func checkName(field, s string) error {
	switch {
	case s == "":
		return bad(ErrMissingField, field, "empty")
	case len(s) > MaxNameBytes:
		return bad(ErrTooLarge, field, "%d bytes > %d", len(s), MaxNameBytes)
	case !utf8.ValidString(s):
		return bad(ErrMalformed, field, "not UTF-8")
	}
	return nil
}

// checkModel: a name that is one NATS subject token (centers.<model>.<id>):
// no '.', '*', '>', whitespace or control characters.
func checkModel(s string) error {
	if err := checkName("model", s); err != nil {
		return err
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return bad(ErrMalformed, "model", "%q: %q not allowed in a NATS subject token", s, r)
		}
	}
	return nil
}

// checkRun: an optional run name, a NATS subject token when set.
func checkRun(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > MaxNameBytes {
		return bad(ErrTooLarge, "run", "%d bytes > %d", len(s), MaxNameBytes)
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return bad(ErrMalformed, "run", "%q: %q not allowed in a NATS subject token", s, r)
		}
	}
	return nil
}

// checkTopic: a Kafka topic name, [a-zA-Z0-9._-]{1,249}.
func checkTopic(field, s string) error {
	if s == "" {
		return bad(ErrMissingField, field, "empty")
	}
	if len(s) > 249 {
		return bad(ErrTooLarge, field, "%d bytes > 249", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return bad(ErrMalformed, field, "%q is not a Kafka topic name", s)
		}
	}
	return nil
}

// checkObjectKey: non-empty, at most MaxKeyBytes, UTF-8.
func checkObjectKey(field, s string) error {
	switch {
	case s == "":
		return bad(ErrMissingField, field, "empty")
	case len(s) > MaxKeyBytes:
		return bad(ErrTooLarge, field, "%d bytes > %d", len(s), MaxKeyBytes)
	case !utf8.ValidString(s):
		return bad(ErrMalformed, field, "not UTF-8")
	}
	return nil
}

// checkVector: lim.Dim long (1..MaxAnyDim when lim.Dim < 0), finite.
func checkVector(field string, v []float32, lim Limits) error {
	if lim.Dim > 0 {
		if len(v) != lim.Dim {
			return bad(ErrBadVector, field, "length %d, want %d", len(v), lim.Dim)
		}
	} else if len(v) == 0 || len(v) > MaxAnyDim {
		return bad(ErrBadVector, field, "length %d, want 1..%d", len(v), MaxAnyDim)
	}
	for i, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return bad(ErrBadVector, field, "element %d is %v", i, x)
		}
	}
	return nil
}

// Names of the standard checkpoint parts, reserved in other_parts.
const (
	PartModel     = "model"
	PartOptimizer = "optimizer"
	PartPool      = "pool"
	PartLRU       = "lru"
)

// digestSizes are the digest lengths of the hash algorithms this package
// knows; a ContentHash with another algorithm only needs a non-empty
// digest.
var digestSizes = map[string]int{
	"sha256": 32,
	"sha512": 64,
	"sha1":   20,
	"md5":    16,
	"xxh64":  8,
	"xxh3":   8,
	"crc32c": 4,
}

// SHA256Hash returns the ContentHash of data stored under key.
func SHA256Hash(key string, data []byte) *ffcpb.ContentHash {
	d := sha256.Sum256(data)
	return &ffcpb.ContentHash{Key: key, Algorithm: "sha256", Digest: d[:]}
}

// ManifestParts returns the manifest's parts as name → object key: the
// standard ones that are set (PartModel, PartOptimizer, PartPool, PartLRU)
// and other_parts.
func ManifestParts(m *ffcpb.CheckpointManifest) map[string]string {
	out := map[string]string{}
	for name, key := range map[string]string{
		PartModel:     m.GetModelKey(),
		PartOptimizer: m.GetOptimizerKey(),
		PartPool:      m.GetPoolKey(),
		PartLRU:       m.GetLruKey(),
	} {
		if key != "" {
			out[name] = key
		}
	}
	for _, p := range m.GetOtherParts() {
		out[p.GetName()] = p.GetKey()
	}
	return out
}

// ValidateCheckpointManifest checks a CheckpointManifest as
// DecodeCheckpointManifest does.
func ValidateCheckpointManifest(m *ffcpb.CheckpointManifest, _ Limits) error {
	if m == nil {
		return bad(ErrMissingField, "message", "nil")
	}
	if err := checkVersion(m.GetVersion()); err != nil {
		return err
	}
	if err := checkModel(m.GetModel()); err != nil {
		return err
	}
	if m.GetCreatedUnixNano() <= 0 {
		return bad(ErrMissingField, "created_unix_nano", "%d", m.GetCreatedUnixNano())
	}
	parts, err := checkManifestParts(m)
	if err != nil {
		return err
	}
	if err := checkOffsets(m.GetOffsets()); err != nil {
		return err
	}
	return checkHashes(m.GetHashes(), parts)
}

// partKeys are the object keys of a checkpoint's parts, each with the field
// that names it, in manifest order.
type partKeys struct {
	field map[string]string // key → field that names it
	order []string
}

// add checks key, named by field, and records it: a key may name one part
// only.
func (p *partKeys) add(field, key string) error {
	if err := checkObjectKey(field, key); err != nil {
		return err
	}
	if other, dup := p.field[key]; dup {
		return bad(ErrMalformed, field, "key %q is also %s", key, other)
	}
	p.field[key] = field
	p.order = append(p.order, key)
	return nil
}

// checkManifestParts checks the part keys of m (model_key required, the
// other standard ones optional, other_parts named once and not by a
// standard name; no key twice) and returns them.
func checkManifestParts(m *ffcpb.CheckpointManifest) (*partKeys, error) {
	keys := &partKeys{field: map[string]string{}}
	if err := keys.add("model_key", m.GetModelKey()); err != nil {
		return nil, err
	}
	for _, f := range []struct{ field, key string }{
		{"optimizer_key", m.GetOptimizerKey()},
		{"pool_key", m.GetPoolKey()},
		{"lru_key", m.GetLruKey()},
	} {
		if f.key == "" {
			continue
		}
		if err := keys.add(f.field, f.key); err != nil {
			return nil, err
		}
	}
	names := map[string]bool{PartModel: true, PartOptimizer: true, PartPool: true, PartLRU: true}
	for _, p := range m.GetOtherParts() {
		if p == nil {
			return nil, bad(ErrMissingField, "other_parts", "nil part")
		}
		if err := checkName("other_parts.name", p.GetName()); err != nil {
			return nil, err
		}
		if names[p.GetName()] {
			return nil, bad(ErrMalformed, "other_parts.name", "%q is reserved or repeated", p.GetName())
		}
		names[p.GetName()] = true
		if err := keys.add("other_parts["+p.GetName()+"].key", p.GetKey()); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

// checkOffsets: valid topics, each once; partitions and offsets ≥ 0, each
// partition once.
func checkOffsets(offsets []*ffcpb.TopicOffsets) error {
	topics := map[string]bool{}
	for _, t := range offsets {
		if t == nil {
			return bad(ErrMissingField, "offsets", "nil entry")
		}
		if err := checkTopic("offsets.topic", t.GetTopic()); err != nil {
			return err
		}
		if topics[t.GetTopic()] {
			return bad(ErrMalformed, "offsets.topic", "%q repeated", t.GetTopic())
		}
		topics[t.GetTopic()] = true
		if err := checkTopicPartitions(t); err != nil {
			return err
		}
	}
	return nil
}

// checkTopicPartitions: at least one partition, each once, partitions and
// offsets ≥ 0.
func checkTopicPartitions(t *ffcpb.TopicOffsets) error {
	if len(t.GetPartitions()) == 0 {
		return bad(ErrMissingField, "offsets["+t.GetTopic()+"].partitions", "empty")
	}
	parts := map[int32]bool{}
	for _, p := range t.GetPartitions() {
		if p == nil {
			return bad(ErrMissingField, "offsets["+t.GetTopic()+"].partitions", "nil entry")
		}
		field := "offsets[" + t.GetTopic() + "]"
		if p.GetPartition() < 0 || p.GetOffset() < 0 {
			return bad(ErrMalformed, field, "partition %d offset %d: negative", p.GetPartition(), p.GetOffset())
		}
		if parts[p.GetPartition()] {
			return bad(ErrMalformed, field, "partition %d repeated", p.GetPartition())
		}
		parts[p.GetPartition()] = true
	}
	return nil
}

// checkHashes: one hash per part key, nothing else.
func checkHashes(hashes []*ffcpb.ContentHash, parts *partKeys) error {
	hashed := map[string]bool{}
	for _, h := range hashes {
		if h == nil {
			return bad(ErrMissingField, "hashes", "nil entry")
		}
		if _, ok := parts.field[h.GetKey()]; !ok {
			if h.GetKey() == "" {
				return bad(ErrMissingField, "hashes.key", "empty")
			}
			return bad(ErrMalformed, "hashes.key", "%q is not a part of the checkpoint", h.GetKey())
		}
		if hashed[h.GetKey()] {
			return bad(ErrMalformed, "hashes.key", "%q repeated", h.GetKey())
		}
		hashed[h.GetKey()] = true
		if err := checkDigest(h); err != nil {
			return err
		}
	}
	for _, key := range parts.order {
		if !hashed[key] {
			return bad(ErrMissingField, "hashes", "no hash for %s %q", parts.field[key], key)
		}
	}
	return nil
}

// checkDigest: a named algorithm and a non-empty digest of at most 128
// bytes, of the algorithm's length when digestSizes knows it.
func checkDigest(h *ffcpb.ContentHash) error {
	field := "hashes[" + h.GetKey() + "]"
	if err := checkName(field+".algorithm", h.GetAlgorithm()); err != nil {
		return err
	}
	alg := strings.ToLower(h.GetAlgorithm())
	if len(h.GetDigest()) == 0 {
		return bad(ErrMissingField, field+".digest", "empty")
	}
	if n, ok := digestSizes[alg]; ok && len(h.GetDigest()) != n {
		return bad(ErrMalformed, field+".digest", "%d bytes, %s is %d", len(h.GetDigest()), alg, n)
	}
	if len(h.GetDigest()) > 128 {
		return bad(ErrTooLarge, field+".digest", "%d bytes > 128", len(h.GetDigest()))
	}
	return nil
}
