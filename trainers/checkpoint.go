package trainers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/minio/minio-go/v7"

	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
	"github.com/ffc-stream/ffc/trainers/engine"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// Offsets are Kafka offsets by topic and partition: the next offset to
// consume.
type Offsets map[string]map[int]int64

// clone returns a deep copy of o.
func (o Offsets) clone() Offsets {
	c := make(Offsets, len(o))
	for topic, parts := range o {
		c[topic] = make(map[int]int64, len(parts))
		for p, off := range parts {
			c[topic][p] = off
		}
	}
	return c
}

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
	// Retry bounds every object-storage call (get, put, list, delete):
	// each is retried with exponential backoff and jitter within it
	// (zero: 200 ms to 5 s apart for up to 30 s). Errors that retrying
	// cannot mend (no such key, access denied, ...) are not retried.
	Retry Backoff
	// Log receives a debug line for each retry (nil: none).
	Log *slog.Logger
	// OnPruneError, when set, is told of a prune of old checkpoints that
	// failed after its retries. A failed prune never fails Save.
	OnPruneError func(error)
}

const manifestName = "manifest.pb"

func (s *CheckpointStore) dir(step int) string {
	return fmt.Sprintf("%s/%012d", strings.TrimSuffix(s.Prefix, "/"), step)
}

// Save writes every part, then the manifest with the offsets the
// checkpoint covers, then prunes old checkpoints (a prune that fails is
// told to OnPruneError, not returned). It returns the manifest key. Only
// after Save returns nil may the offsets be committed to Kafka.
func (s *CheckpointStore) Save(ctx context.Context, step int, parts []engine.StatePart, offsets Offsets) (string, error) {
	dir := s.dir(step)
	man := &ffcpb.CheckpointManifest{Model: s.Model, Step: uint64(step), CreatedUnixNano: time.Now().UnixNano()}
	for _, p := range parts {
		var buf bytes.Buffer
		if err := p.Save(&buf); err != nil {
			return "", fmt.Errorf("checkpoint %d: %s: %w", step, p.Name, err)
		}
		key := dir + "/" + p.Name
		if err := s.put(ctx, key, buf.Bytes(), "application/octet-stream"); err != nil {
			return "", fmt.Errorf("checkpoint %d: %w", step, err)
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
	if err := s.put(ctx, key, b, ""); err != nil {
		return "", fmt.Errorf("checkpoint %d: manifest: %w", step, err)
	}
	if err := s.prune(ctx); err != nil {
		if s.OnPruneError != nil {
			s.OnPruneError(err)
		} else if s.Log != nil {
			s.Log.Warn("checkpoints: prune failed; retried after the next checkpoint", "err", err)
		}
	}
	return key, nil
}

// retryPolicy is Retry with its defaults.
func (s *CheckpointStore) retryPolicy() Backoff { return s.Retry.or(storageRetry()) }

// do runs one object-storage call with retries; an error that retrying
// cannot mend is returned at once.
func (s *CheckpointStore) do(ctx context.Context, what string, call func() error) error {
	_, err := retry(ctx, s.retryPolicy(), s.Log, "checkpoint "+what, func() (struct{}, error) {
		err := call()
		if err != nil && permanentS3(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	})
	return err
}

// permanentS3 reports whether an object-storage error is one that
// retrying cannot mend.
func permanentS3(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchBucket, minio.NoSuchKey, minio.AccessDenied, minio.InvalidAccessKeyID, minio.SignatureDoesNotMatch,
		minio.InvalidBucketName, minio.InvalidArgument, minio.EntityTooLarge, minio.MethodNotAllowed, minio.NotImplemented:
		return true
	}
	return false
}

// put writes b at key.
func (s *CheckpointStore) put(ctx context.Context, key string, b []byte, contentType string) error {
	err := s.do(ctx, "put "+key, func() error {
		_, err := s.MC.PutObject(ctx, s.Bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{
			ContentType: contentType, DisableContentSha256: true,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// steps lists the steps with a complete checkpoint, ascending.
func (s *CheckpointStore) steps(ctx context.Context) ([]int, error) {
	dirs, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	var steps []int
	for st, d := range dirs {
		if d.complete {
			steps = append(steps, st)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// stepDir is what a listing found under one step's folder.
type stepDir struct {
	keys     []string
	complete bool // has its manifest
}

// list lists every checkpoint folder by step (none when the bucket does
// not exist).
func (s *CheckpointStore) list(ctx context.Context) (map[int]*stepDir, error) {
	prefix := strings.TrimSuffix(s.Prefix, "/") + "/"
	var dirs map[int]*stepDir
	err := s.do(ctx, "list "+prefix, func() error {
		dirs = map[int]*stepDir{}
		lctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the listing's goroutine when it stops early
		for obj := range s.MC.ListObjects(lctx, s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if obj.Err != nil {
				if minio.ToErrorResponse(obj.Err).Code == minio.NoSuchBucket {
					dirs = nil
					return nil
				}
				return obj.Err
			}
			dir, name, ok := strings.Cut(strings.TrimPrefix(obj.Key, prefix), "/")
			n, err := strconv.Atoi(dir)
			if !ok || err != nil {
				continue
			}
			if dirs[n] == nil {
				dirs[n] = &stepDir{}
			}
			dirs[n].keys = append(dirs[n].keys, obj.Key)
			dirs[n].complete = dirs[n].complete || name == manifestName
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoints: list %s: %w", prefix, err)
	}
	return dirs, nil
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

// LoadOther loads part from the checkpoint m when m lists it among its
// other parts (a checkpoint written before the part existed does not).
func (s *CheckpointStore) LoadOther(ctx context.Context, m *ffcpb.CheckpointManifest, part engine.StatePart) error {
	for _, p := range m.GetOtherParts() {
		if p.GetName() != part.Name {
			continue
		}
		b, err := s.get(ctx, p.GetKey())
		if err != nil {
			return err
		}
		if err := s.verify(m, p.GetKey(), b); err != nil {
			return err
		}
		if err := part.Load(bytes.NewReader(b)); err != nil {
			return fmt.Errorf("checkpoint %s: %w", p.GetKey(), err)
		}
	}
	return nil
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
	var b []byte
	err := s.do(ctx, "get "+key, func() error {
		obj, err := s.MC.GetObject(ctx, s.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		b, err = io.ReadAll(obj)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: get %s: %w", key, err)
	}
	return b, nil
}

// prune deletes all but the newest Keep complete checkpoints, and the
// incomplete ones older than those kept (left by a failed Save).
func (s *CheckpointStore) prune(ctx context.Context) error {
	keep := s.Keep
	if keep <= 0 {
		keep = 3
	}
	dirs, err := s.list(ctx)
	if err != nil {
		return fmt.Errorf("checkpoints: prune: %w", err)
	}
	var complete []int
	for st, d := range dirs {
		if d.complete {
			complete = append(complete, st)
		}
	}
	if len(complete) <= keep {
		return nil
	}
	sort.Ints(complete)
	oldest := complete[len(complete)-keep] // the oldest kept
	var errs []error
	for st, d := range dirs {
		if st >= oldest {
			continue
		}
		// The manifest goes first, so a half-deleted checkpoint is
		// incomplete rather than corrupt.
		sort.Slice(d.keys, func(i, j int) bool { return strings.HasSuffix(d.keys[i], "/"+manifestName) })
		for _, key := range d.keys {
			if err := s.do(ctx, "delete "+key, func() error {
				return s.MC.RemoveObject(ctx, s.Bucket, key, minio.RemoveObjectOptions{})
			}); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
				break // the rest of this checkpoint waits for the next prune
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
// those offsets to the group. A write that fails (after the store's
// retries) is reported in Health and returned, and nothing is committed:
// the group's offsets stay those of the last durable checkpoint.
func (t *Trainer) checkpoint(ctx context.Context, g *generation) error {
	if len(t.offsets) == 0 {
		return nil
	}
	step, key := t.Stats().Steps, "(consume only: offsets)"
	if !t.cfg.ConsumeOnly {
		step = t.eng.StepCount()
		parts := append(t.eng.StateParts(), settingsPart(t.set), t.removedPart())
		var err error
		if key, err = t.ckpt.Save(ctx, step, parts, t.offsets); err != nil {
			t.ckptFailing = true
			t.metrics.ckptFailures.Inc()
			t.mu.Lock()
			t.stats.CheckpointFailures++
			t.mu.Unlock()
			t.health.Set(CondStorage, false, "checkpoint at step "+strconv.Itoa(step)+": "+err.Error())
			return fmt.Errorf("trainer: %w", err)
		}
		t.ckptFailing = false
		t.health.Set(CondStorage, true, "")
		t.metrics.ckptTime.SetToCurrentTime()
		t.mu.Lock()
		t.stats.Checkpoints++
		t.mu.Unlock()
	}
	t.lastDurable.Store(time.Now().UnixNano())
	g.lastCkpt, g.sinceCkpt = time.Now(), 0
	t.durable, t.durableStep = t.offsets.clone(), step
	t.commitDurable(g)
	t.cfg.Log.Info("trainer: checkpoint", "step", step, "manifest", key)
	return nil
}

// commitDurable commits the offsets of the last durable checkpoint to the
// group. One that fails stays pending and is tried again when the input
// stalls (onIdle) — the producers hold back until the group commits, so
// without it a lost commit would stall them and the trainer for good.
func (t *Trainer) commitDurable(g *generation) {
	step := t.durableStep
	if len(t.durable) == 0 {
		t.commitPending = false
		return
	}
	if err := g.gen.CommitOffsets(t.durable); err != nil {
		t.commitPending = true
		t.cfg.Log.Warn("trainer: committing the offsets of the last checkpoint failed; retried when the input stalls", "step", step, "err", err)
		return
	}
	if t.commitPending {
		t.cfg.Log.Info("trainer: committed the offsets of the last checkpoint", "step", step)
	}
	t.commitPending = false
}

// checkpointDue writes a checkpoint that is due. One that fails is not
// fatal: the trainer trains on, holds its offset commits at the last
// durable checkpoint and tries again at the next due point (or when the
// input stalls), when storage has come back.
func (t *Trainer) checkpointDue(ctx context.Context, g *generation) {
	if err := t.checkpoint(ctx, g); err != nil {
		g.lastCkpt, g.sinceCkpt = time.Now(), 0
		t.cfg.Log.Warn("trainer: checkpoint failed; training on, offsets held at the last durable checkpoint", "err", err)
	}
}

// pruneFailed counts and logs a prune of old checkpoints that failed.
func (t *Trainer) pruneFailed(err error) {
	t.metrics.pruneFailures.Inc()
	t.mu.Lock()
	t.stats.PruneFailures++
	t.mu.Unlock()
	t.cfg.Log.Warn("trainer: pruning old checkpoints failed; retried after the next checkpoint", "err", err)
}
