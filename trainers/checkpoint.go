package trainers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// Offsets are Kafka offsets by topic and partition: the next offset to
// consume.
type Offsets map[string]map[int]int64

// checkpointManifest is the wire manifest of a checkpoint.
type checkpointManifest = ffcpb.CheckpointManifest

// CheckpointStore keeps checkpoints in object storage under
// <prefix>/<step, 12 digits>/<part>, with manifest.pb written last: a
// checkpoint without its manifest is incomplete and ignored.
type CheckpointStore struct {
	MC     *minio.Client
	Bucket string
	Prefix string // e.g. checkpoints/<model>
	Model  string
	// Keep is how many complete checkpoints to keep (default 3).
	Keep int
}

const manifestName = "manifest.pb"

func (s *CheckpointStore) dir(step int) string {
	return fmt.Sprintf("%s/%012d", strings.TrimSuffix(s.Prefix, "/"), step)
}

// Save writes every part, then the manifest with the offsets the
// checkpoint covers, then prunes old checkpoints. It returns the manifest
// key. Only after Save returns may the offsets be committed to Kafka.
func (s *CheckpointStore) Save(ctx context.Context, step int, parts []engine.StatePart, offsets Offsets) (string, error) {
	dir := s.dir(step)
	man := &ffcpb.CheckpointManifest{Model: s.Model, Step: uint64(step), CreatedUnixNano: time.Now().UnixNano()}
	for _, p := range parts {
		var buf bytes.Buffer
		if err := p.Save(&buf); err != nil {
			return "", fmt.Errorf("checkpoint %d: %s: %w", step, p.Name, err)
		}
		key := dir + "/" + p.Name
		if _, err := s.MC.PutObject(ctx, s.Bucket, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), minio.PutObjectOptions{
			ContentType: "application/octet-stream", DisableContentSha256: true,
		}); err != nil {
			return "", fmt.Errorf("checkpoint %d: put %s: %w", step, key, err)
		}
		sum := sha256.Sum256(buf.Bytes())
		man.Hashes = append(man.Hashes, &ffcpb.ContentHash{Key: key, Algorithm: "sha256", Digest: sum[:]})
		switch p.Name {
		case engine.ProbeFile:
			man.ModelKey = key
		case "probe.momenta":
			man.OptimizerKey = key
		case "pool.state":
			man.PoolKey = key // holds the LRU order, slots and pos bits too (no separate lru_key)
		default:
			man.OtherParts = append(man.OtherParts, &ffcpb.Part{Name: p.Name, Key: key})
		}
	}
	topics := make([]string, 0, len(offsets))
	for t := range offsets {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		to := &ffcpb.TopicOffsets{Topic: t}
		parts := make([]int, 0, len(offsets[t]))
		for p := range offsets[t] {
			parts = append(parts, p)
		}
		sort.Ints(parts)
		for _, p := range parts {
			to.Partitions = append(to.Partitions, &ffcpb.PartitionOffset{Partition: int32(p), Offset: offsets[t][p]})
		}
		man.Offsets = append(man.Offsets, to)
	}
	b, err := schemas.EncodeCheckpointManifest(man)
	if err != nil {
		return "", fmt.Errorf("checkpoint %d: manifest: %w", step, err)
	}
	key := dir + "/" + manifestName
	if _, err := s.MC.PutObject(ctx, s.Bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
		return "", fmt.Errorf("checkpoint %d: put manifest: %w", step, err)
	}
	if err := s.prune(ctx); err != nil {
		return key, err
	}
	return key, nil
}

// steps lists the steps with a complete checkpoint, ascending.
func (s *CheckpointStore) steps(ctx context.Context) ([]int, error) {
	var steps []int
	prefix := strings.TrimSuffix(s.Prefix, "/") + "/"
	for obj := range s.MC.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			if minio.ToErrorResponse(obj.Err).Code == minio.NoSuchBucket {
				return nil, nil
			}
			return nil, fmt.Errorf("checkpoints: list %s: %w", prefix, obj.Err)
		}
		rest := strings.TrimPrefix(obj.Key, prefix)
		dir, name, ok := strings.Cut(rest, "/")
		if !ok || name != manifestName {
			continue
		}
		if n, err := strconv.Atoi(dir); err == nil {
			steps = append(steps, n)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// Latest returns the newest complete checkpoint's manifest, or nil.
func (s *CheckpointStore) Latest(ctx context.Context) (*ffcpb.CheckpointManifest, error) {
	steps, err := s.steps(ctx)
	if err != nil || len(steps) == 0 {
		return nil, err
	}
	key := s.dir(steps[len(steps)-1]) + "/" + manifestName
	b, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	m, err := schemas.DecodeCheckpointManifest(b, schemas.Limits{})
	if err != nil {
		return nil, fmt.Errorf("checkpoint manifest %s: %w", key, err)
	}
	if m.GetModel() != s.Model {
		return nil, fmt.Errorf("checkpoint manifest %s is of model %q, not %q", key, m.GetModel(), s.Model)
	}
	return m, nil
}

// Load reads every part of the manifest, verifies its hash and loads it.
func (s *CheckpointStore) Load(ctx context.Context, m *ffcpb.CheckpointManifest, parts []engine.StatePart) (Offsets, error) {
	dir := s.dir(int(m.GetStep()))
	for _, p := range parts {
		key := dir + "/" + p.Name
		b, err := s.get(ctx, key)
		if err != nil {
			return nil, err
		}
		if err := s.verify(m, key, b); err != nil {
			return nil, err
		}
		if err := p.Load(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", key, err)
		}
	}
	off := Offsets{}
	for _, t := range m.GetOffsets() {
		off[t.GetTopic()] = map[int]int64{}
		for _, p := range t.GetPartitions() {
			off[t.GetTopic()][int(p.GetPartition())] = p.GetOffset()
		}
	}
	return off, nil
}

// Settings reads the settings record (settings.json) of the checkpoint m;
// ok is false for a checkpoint written before settings were recorded.
func (s *CheckpointStore) Settings(ctx context.Context, m *ffcpb.CheckpointManifest) (set settings.Settings, ok bool, err error) {
	var key string
	for _, p := range m.GetOtherParts() {
		if p.GetName() == settings.File {
			key = p.GetKey()
		}
	}
	if key == "" {
		return set, false, nil
	}
	b, err := s.get(ctx, key)
	if err != nil {
		return set, false, err
	}
	if err := s.verify(m, key, b); err != nil {
		return set, false, err
	}
	set, err = settings.Unmarshal(b)
	if err != nil {
		return set, false, fmt.Errorf("checkpoint %s: %w", key, err)
	}
	return set, true, nil
}

// verify checks b against the manifest's content hash of key.
func (s *CheckpointStore) verify(m *ffcpb.CheckpointManifest, key string, b []byte) error {
	sum := sha256.Sum256(b)
	for _, h := range m.GetHashes() {
		if h.GetKey() == key && bytes.Equal(h.GetDigest(), sum[:]) {
			return nil
		}
	}
	return fmt.Errorf("checkpoint %s: content hash mismatch or missing", key)
}

func (s *CheckpointStore) get(ctx context.Context, key string) ([]byte, error) {
	obj, err := s.MC.GetObject(ctx, s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: get %s: %w", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", key, err)
	}
	return b, nil
}

// prune deletes all but the newest Keep complete checkpoints.
func (s *CheckpointStore) prune(ctx context.Context) error {
	keep := s.Keep
	if keep <= 0 {
		keep = 3
	}
	steps, err := s.steps(ctx)
	if err != nil || len(steps) <= keep {
		return err
	}
	var errs []error
	for _, st := range steps[:len(steps)-keep] {
		// The manifest goes first, so a half-deleted checkpoint is
		// incomplete rather than corrupt.
		dir := s.dir(st) + "/"
		if err := s.MC.RemoveObject(ctx, s.Bucket, dir+manifestName, minio.RemoveObjectOptions{}); err != nil {
			errs = append(errs, err)
			continue
		}
		for obj := range s.MC.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
			if obj.Err != nil {
				errs = append(errs, obj.Err)
				break
			}
			if err := s.MC.RemoveObject(ctx, s.Bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("checkpoints: prune: %w", errors.Join(errs...))
	}
	return nil
}

// settingsPart is the checkpoint part that records the run's settings.
func settingsPart(set settings.Settings) engine.StatePart {
	return engine.StatePart{
		Name: settings.File,
		Save: func(w io.Writer) error {
			b, err := set.Marshal()
			if err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		},
		// Read before the engine is built (CheckpointStore.Settings).
		Load: func(io.Reader) error { return nil },
	}
}

// checkpoint writes the state with the offsets it covers, then commits
// those offsets to the group.
func (t *Trainer) checkpoint(ctx context.Context, g *generation) error {
	if len(t.offsets) == 0 {
		return nil
	}
	step, key := t.Stats().Steps, "(consume only: offsets)"
	if !t.cfg.ConsumeOnly {
		step = t.eng.StepCount()
		parts := append(t.eng.StateParts(), settingsPart(t.set))
		var err error
		if key, err = t.ckpt.Save(ctx, step, parts, t.offsets); err != nil {
			return fmt.Errorf("trainer: %w", err)
		}
		t.metrics.ckptAge.SetToCurrentTime()
		t.mu.Lock()
		t.stats.Checkpoints++
		t.mu.Unlock()
	}
	g.lastCkpt, g.sinceCkpt = time.Now(), 0
	commit := map[string]map[int]int64{}
	for topic, parts := range t.offsets {
		commit[topic] = map[int]int64{}
		for p, o := range parts {
			commit[topic][p] = o
		}
	}
	if err := g.gen.CommitOffsets(commit); err != nil {
		// The checkpoint holds the offsets; the next commit catches up.
		t.cfg.Log.Warn("trainer: commit offsets after checkpoint", "step", step, "err", err)
	}
	t.cfg.Log.Info("trainer: checkpoint", "step", step, "manifest", key)
	return nil
}
