package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

// idsFlags are the flags of ffc ids and its commands.
type idsFlags struct {
	ends        endpoints // S3 and NATS only
	bucket      string
	model       string
	json        bool
	wait        bool
	waitTimeout time.Duration
	// publicKey is the trainer's public key file: with --wait, updates
	// it did not sign are skipped (empty: nothing is verified).
	publicKey string
}

var (
	// errBadImages: ids add refused its files; nothing was uploaded.
	errBadImages = errors.New("bad image files, nothing uploaded")
	// errWaitTimeout: --wait gave up after --wait-timeout.
	errWaitTimeout = errors.New("--wait-timeout passed")
)

const idsLong = `Add an identity to a running pipeline, or remove one, while it trains.

An ID is ` + idForms + `.

Images live in S3 as <bucket>/ids/<id>/<name>.png; an ID is announced to
the producers by the marker announce/<unix nanos>-<id> (see ffc produce),
a removal by announce/<unix nanos>-<id>.remove. With --wait the command
follows the ID's center subject centers.<model>.<id> on NATS (only updates
published after it subscribed, before announcing) and prints how long the
pipeline took. Progress goes to stderr, the result to stdout (JSON with
--json).`

func newIDsCmd(a *app) *cobra.Command {
	f := &idsFlags{}
	cmd := &cobra.Command{
		Use:   "ids",
		Short: "Add an identity's images to the pipeline, or remove an identity, while it trains",
		Long:  idsLong,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.ends.S3Endpoint, "s3-endpoint", "", "S3 endpoint host:port, e.g. MinIO (env FFC_S3_ENDPOINT; required)")
	f.ends.S3.addFlags(pf)
	pf.StringVar(&f.ends.NATSURL, "nats-url", "", "NATS server URL with JetStream (env FFC_NATS_URL; required with --wait)")
	f.ends.NATS.addFlags(pf)
	pf.StringVar(&f.bucket, "bucket", "ffc-data", "bucket holding ids/<id>/<name>.png and announce/ (must exist)")
	pf.StringVar(&f.model, "model", "glyphs", "model whose centers --wait follows (NATS stream CENTERS_<model>)")
	pf.BoolVar(&f.json, "json", false, "print the result as one JSON object")
	pf.BoolVar(&f.wait, "wait", false, "wait for the pipeline's answer on NATS (add: the ID's center; remove: its tombstone) and print how long it took")
	pf.DurationVar(&f.waitTimeout, "wait-timeout", time.Minute, "with --wait: fail (exit status 1) when no answer came this long after the announcement")
	pf.StringVar(&f.publicKey, "centers-public-key", "", "with --wait: the trainer's ed25519 public key (PEM file): a center update it did not sign is skipped, not taken for the answer (env FFC_CENTERS_PUBLIC_KEY; empty: nothing is verified)")
	cmd.AddCommand(newIDsAddCmd(a, f), newIDsRemoveCmd(a, f))
	return cmd
}

func newIDsAddCmd(a *app, f *idsFlags) *cobra.Command {
	var idArg string
	cmd := &cobra.Command{
		Use:   "add --id ID FILE|DIR...",
		Short: "Upload an identity's PNG images and announce it to the producers",
		Long: `add uploads the .png files given (a DIR: the .png files in it, not in its
subdirectories) as <bucket>/ids/<id>/<file name>, then announces the ID.

Every file is checked first as the producers check it (at most 256 KiB, a
PNG that decodes, 32×32 pixels, not empty): if any fails, each bad file is
reported (with --json in "rejected") and nothing is uploaded. Objects of
the ID already in the bucket stay; one with the same name is replaced.

With --wait it waits for the ID's first center (INSERT or REFRESH) published
after the announcement and prints the time from announcement to center,
with the trainer's step and epoch.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if idArg == "" {
				return errors.New("ids add: --id is required")
			}
			id, err := parseID(idArg)
			if err != nil {
				return fmt.Errorf("ids add: --id: %w", err)
			}
			return runIDsAdd(cmd.Context(), a, f, id, args)
		},
	}
	cmd.Flags().StringVar(&idArg, "id", "", "the identity: "+idForms)
	return cmd
}

const idsRemoveLong = `remove deletes every object under <bucket>/ids/<id>/ and then writes the
removal marker announce/<unix nanos>-<id>.remove.

What removal guarantees:
  - the ID's images are deleted from object storage (the count is printed);
  - the producers drop the ID: it is no longer sampled, on any stream;
  - the trainer forgets it: it leaves the class pool, is never trained on
    again, and a tombstone is published on its center subject
    centers.<model>.<id>, so replicas and 'ffc centers get|search' drop it
    (the stream keeps the tombstone as the subject's last value);
  - what the backbone weights learned from the ID's images stays in them:
    removal does not retrain or unlearn;
  - Kafka topics keep the ID's sample messages already written until their
    retention expires; trainers skip them, they are never trained on again.
Adding the ID again later ('ffc ids add') starts it afresh.

With --wait it waits for the tombstone, published after the marker, and
prints the time from the marker to the tombstone.`

func newIDsRemoveCmd(a *app, f *idsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Delete an identity's images and announce its removal",
		Long:  idsRemoveLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return fmt.Errorf("ids remove: %w", err)
			}
			return runIDsRemove(cmd.Context(), a, f, id)
		},
	}
}

// idImage is a checked image file to upload.
type idImage struct {
	path string
	name string // object base name, without .png
	data []byte
}

// rejectedFile is a file ids add refused, and why.
type rejectedFile struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// idsAddResult is what ids add prints (--json).
type idsAddResult struct {
	ID            uint64         `json:"id"`
	Images        int            `json:"images"`
	Announced     time.Time      `json:"announced,omitzero"`
	CenterAfterMS *float64       `json:"center_after_ms,omitempty"`
	Step          *uint64        `json:"step,omitempty"`
	Epoch         *uint64        `json:"epoch,omitempty"`
	Rejected      []rejectedFile `json:"rejected,omitempty"`
}

// idsRemoveResult is what ids remove prints (--json).
type idsRemoveResult struct {
	ID               uint64    `json:"id"`
	Deleted          int       `json:"deleted"`
	Announced        time.Time `json:"announced"`
	TombstoneAfterMS *float64  `json:"tombstone_after_ms,omitempty"`
	Step             *uint64   `json:"step,omitempty"`
	Epoch            *uint64   `json:"epoch,omitempty"`
}

func runIDsAdd(ctx context.Context, a *app, f *idsFlags, id uint64, paths []string) error {
	if err := f.check(); err != nil {
		return fmt.Errorf("ids add: %w", err)
	}
	imgs, rejected := collectImages(id, paths)
	if len(rejected) > 0 {
		for _, r := range rejected {
			a.log.Error("ids add: bad file", "file", r.File, "reason", r.Reason)
		}
		if f.json {
			if err := printJSON(a.stdout, idsAddResult{ID: id, Rejected: rejected}); err != nil {
				return err
			}
		}
		return fmt.Errorf("ids add: %d of %d files: %w", len(rejected), len(rejected)+len(imgs), errBadImages)
	}
	if len(imgs) == 0 {
		return fmt.Errorf("ids add: no .png files in %s", strings.Join(paths, ", "))
	}
	mc, done, err := f.s3(ctx)
	if err != nil {
		return fmt.Errorf("ids add: %w", err)
	}
	defer done()
	w, err := f.follow(ctx, id, a.log)
	if err != nil {
		return fmt.Errorf("ids add: %w", err)
	}
	defer w.close()
	a.log.Info("ids add: uploading", "id", id, "images", len(imgs), "to", fmt.Sprintf("s3://%s/ids/%d/", f.bucket, id))
	for _, im := range imgs {
		key := schemas.ImageKey(id, im.name)
		if _, err := mc.PutObject(ctx, f.bucket, key, bytes.NewReader(im.data), int64(len(im.data)), minio.PutObjectOptions{ContentType: "image/png"}); err != nil {
			return fmt.Errorf("ids add: upload %s as %s/%s: %w", im.path, f.bucket, key, err)
		}
	}
	res := idsAddResult{ID: id, Images: len(imgs), Announced: time.Now()}
	if err := producers.Announce(ctx, mc, f.bucket, id); err != nil {
		return fmt.Errorf("ids add: %d images uploaded, but: %w", len(imgs), err)
	}
	a.log.Info("ids add: announced", "id", id)
	if w != nil {
		a.log.Info("ids add: waiting for the center", "subject", w.subject, "timeout", f.waitTimeout)
		m, after, err := w.wait(ctx, a, res.Announced, f.waitTimeout, ffcpb.CenterUpdate_INSERT, ffcpb.CenterUpdate_REFRESH)
		if err != nil {
			return fmt.Errorf("ids add: ID %d uploaded and announced, but no center: %w", id, err)
		}
		ms, step, epoch := millis(after), m.GetStep(), m.GetEpoch()
		res.CenterAfterMS, res.Step, res.Epoch = &ms, &step, &epoch
	}
	if f.json {
		return printJSON(a.stdout, res)
	}
	fmt.Fprintf(a.stdout, "ID %d%s: %d images uploaded to s3://%s/ids/%d/, announced at %s\n",
		id, charOf(id), res.Images, f.bucket, id, res.Announced.Format(time.RFC3339Nano))
	if res.CenterAfterMS != nil {
		fmt.Fprintf(a.stdout, "center on NATS %.1f ms after the announcement (step %d, epoch %d)\n", *res.CenterAfterMS, *res.Step, *res.Epoch)
	}
	return nil
}

func runIDsRemove(ctx context.Context, a *app, f *idsFlags, id uint64) error {
	if err := f.check(); err != nil {
		return fmt.Errorf("ids remove: %w", err)
	}
	mc, done, err := f.s3(ctx)
	if err != nil {
		return fmt.Errorf("ids remove: %w", err)
	}
	defer done()
	w, err := f.follow(ctx, id, a.log)
	if err != nil {
		return fmt.Errorf("ids remove: %w", err)
	}
	defer w.close()
	n, err := deleteID(ctx, mc, f.bucket, id)
	if err != nil {
		return fmt.Errorf("ids remove: %w", err)
	}
	if n == 0 {
		a.log.Warn("ids remove: no objects under the ID's prefix; announcing the removal anyway", "prefix", fmt.Sprintf("s3://%s/ids/%d/", f.bucket, id))
	} else {
		a.log.Info("ids remove: deleted", "id", id, "objects", n)
	}
	res := idsRemoveResult{ID: id, Deleted: n, Announced: time.Now()}
	if err := producers.AnnounceRemoval(ctx, mc, f.bucket, id); err != nil {
		return fmt.Errorf("ids remove: %d objects deleted, but: %w", n, err)
	}
	a.log.Info("ids remove: removal announced", "id", id)
	if w != nil {
		a.log.Info("ids remove: waiting for the tombstone", "subject", w.subject, "timeout", f.waitTimeout)
		m, after, err := w.wait(ctx, a, res.Announced, f.waitTimeout, ffcpb.CenterUpdate_TOMBSTONE)
		if err != nil {
			return fmt.Errorf("ids remove: ID %d deleted and its removal announced, but no tombstone: %w", id, err)
		}
		ms, step, epoch := millis(after), m.GetStep(), m.GetEpoch()
		res.TombstoneAfterMS, res.Step, res.Epoch = &ms, &step, &epoch
	}
	if f.json {
		return printJSON(a.stdout, res)
	}
	fmt.Fprintf(a.stdout, "ID %d%s: %d objects deleted from s3://%s/ids/%d/, removal announced at %s\n",
		id, charOf(id), n, f.bucket, id, res.Announced.Format(time.RFC3339Nano))
	if res.TombstoneAfterMS != nil {
		fmt.Fprintf(a.stdout, "tombstone on NATS %.1f ms after the removal (step %d, epoch %d)\n", *res.TombstoneAfterMS, *res.Step, *res.Epoch)
	}
	return nil
}

// check validates the flags before anything is read or written.
func (f *idsFlags) check() error {
	if f.ends.S3Endpoint == "" {
		return errors.New("--s3-endpoint is required (env FFC_S3_ENDPOINT)")
	}
	if f.wait && f.ends.NATSURL == "" {
		return errors.New("--wait needs --nats-url (env FFC_NATS_URL)")
	}
	if f.wait && f.waitTimeout <= 0 {
		return fmt.Errorf("--wait-timeout %v: want > 0", f.waitTimeout)
	}
	return f.ends.resolve()
}

// s3 returns the S3 client, once the bucket is known to exist.
func (f *idsFlags) s3(ctx context.Context) (*minio.Client, func(), error) {
	mc, done, err := s3Client(f.ends)
	if err != nil {
		return nil, nil, err
	}
	ok, err := mc.BucketExists(ctx, f.bucket)
	if err == nil && !ok {
		err = fmt.Errorf("bucket %s does not exist", f.bucket)
	}
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("s3 %s: bucket %s: %w", f.ends.S3Endpoint, f.bucket, err)
	}
	return mc, done, nil
}

// collectImages reads and checks the .png files of paths (a directory:
// the .png files in it), named by their base names; it returns every file
// that fails, and why.
func collectImages(id uint64, paths []string) ([]idImage, []rejectedFile) {
	var files []string
	var rejected []rejectedFile
	for _, p := range paths {
		fs, err := pngFiles(p)
		if err != nil {
			rejected = append(rejected, rejectedFile{File: p, Reason: err.Error()})
			continue
		}
		files = append(files, fs...)
	}
	var imgs []idImage
	byName := map[string]string{}
	for _, file := range files {
		im, err := readImage(id, file)
		if err == nil {
			if other, dup := byName[im.name]; dup && other != file {
				err = fmt.Errorf("same object name %s.png as %s", im.name, other)
			} else if dup {
				continue // the same file given twice
			}
		}
		if err != nil {
			rejected = append(rejected, rejectedFile{File: file, Reason: err.Error()})
			continue
		}
		byName[im.name] = file
		imgs = append(imgs, im)
	}
	return imgs, rejected
}

// pngFiles returns p when it is a file, or the .png files of directory p
// (not its subdirectories), sorted.
func pngFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		if !isPNGName(p) {
			return nil, errors.New("not a .png file")
		}
		return []string{filepath.Clean(p)}, nil
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		full := filepath.Join(p, e.Name())
		if !isPNGName(e.Name()) {
			continue
		}
		if st, err := os.Stat(full); err == nil && st.IsDir() {
			continue
		}
		out = append(out, full)
	}
	sort.Strings(out)
	return out, nil
}

func isPNGName(p string) bool { return strings.EqualFold(filepath.Ext(p), ".png") }

// readImage reads file and checks it as the producers will: its object
// key (schemas.ParseImageKey) and its bytes (schemas.DecodeImage with the
// default limits).
func readImage(id uint64, file string) (idImage, error) {
	base := filepath.Base(file)
	name := base[:len(base)-len(filepath.Ext(base))]
	if _, _, err := schemas.ParseImageKey(schemas.ImageKey(id, name)); err != nil {
		return idImage{}, fmt.Errorf("file name %q cannot name an object: %w", base, err)
	}
	data, _, err := readImageFile(file)
	if err != nil {
		return idImage{}, err
	}
	return idImage{path: file, name: name, data: data}, nil
}

// readImageFile reads file (at most the wire's image size limit, plus one
// byte to know it is over) and decodes it as the producers do.
func readImageFile(file string) ([]byte, *image.Gray, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	lim := schemas.DefaultLimits()
	// One byte over the limit is enough for DecodeImage to refuse it.
	data, err := io.ReadAll(io.LimitReader(fh, int64(lim.MaxImageBytes)+1))
	if err != nil {
		return nil, nil, err
	}
	g, err := schemas.DecodeImage(data, lim)
	if err != nil {
		return nil, nil, err
	}
	return data, g, nil
}

// deleteID deletes every object under ids/<id>/ of bucket and returns
// how many; it fails when any could not be listed or deleted.
func deleteID(ctx context.Context, mc *minio.Client, bucket string, id uint64) (int, error) {
	prefix := fmt.Sprintf("ids/%d/", id)
	var objs []minio.ObjectInfo
	for o := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return 0, fmt.Errorf("list %s/%s: %w", bucket, prefix, o.Err)
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		return 0, nil
	}
	ch := make(chan minio.ObjectInfo, len(objs))
	for _, o := range objs {
		ch <- o
	}
	close(ch)
	var errs []error
	for e := range mc.RemoveObjects(ctx, bucket, ch, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("%s: %w", e.ObjectName, e.Err))
	}
	if len(errs) > 0 {
		return len(objs) - len(errs), fmt.Errorf("%d of %d objects under %s/%s not deleted (removal not announced; run it again): %w",
			len(errs), len(objs), bucket, prefix, errors.Join(errs...))
	}
	return len(objs), nil
}

// centerFollower reads the updates of one ID's center subject published
// after it subscribed.
type centerFollower struct {
	model   string
	id      uint64
	subject string
	nc      *nats.Conn
	msgs    jetstream.MessagesContext
	key     ed25519.PublicKey // verifies the updates (nil: not verified)
}

// follow subscribes to the center subject of id with an ordered consumer
// that delivers only messages published from now on, when --wait is
// given (nil otherwise).
func (f *idsFlags) follow(ctx context.Context, id uint64, log *slog.Logger) (*centerFollower, error) {
	if !f.wait {
		return nil, nil
	}
	var key ed25519.PublicKey
	if f.publicKey != "" {
		var err error
		if key, err = broadcast.LoadPublicKey(f.publicKey); err != nil {
			return nil, err
		}
	} else {
		log.Warn("ids: no --centers-public-key: the center update --wait reports is not verified")
	}
	nc, js, err := natsConn(f.ends.NATSURL, "ffc-ids", f.ends.NATS.sec, log)
	if err != nil {
		return nil, err
	}
	subject := schemas.CenterSubject(f.model, id)
	// From the stream's next sequence, not DeliverNew: an ordered consumer
	// that is re-created after a reconnect resumes from a sequence, so a
	// center published during the gap is not missed.
	var cons jetstream.Consumer
	stream, err := js.Stream(ctx, schemas.CentersStream(f.model))
	if err == nil {
		cons, err = stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq: stream.CachedInfo().State.LastSeq + 1,
		})
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		err = fmt.Errorf("no stream %s: has a trainer of model %s run against this NATS? (--model): %w", schemas.CentersStream(f.model), f.model, err)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: follow %s: %w", f.ends.NATSURL, subject, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats %s: follow %s: %w", f.ends.NATSURL, subject, err)
	}
	return &centerFollower{model: f.model, id: id, subject: subject, nc: nc, msgs: msgs, key: key}, nil
}

// close stops the consumer and closes the connection; nil does nothing.
func (w *centerFollower) close() {
	if w == nil {
		return
	}
	w.msgs.Stop()
	w.nc.Close()
}

// wait returns the first update of one of kinds, and how long after since
// it was read; it gives up with errWaitTimeout timeout after since.
// Updates that fail validation or name another model or ID are skipped
// (warned about once).
func (w *centerFollower) wait(ctx context.Context, a *app, since time.Time, timeout time.Duration, kinds ...ffcpb.CenterUpdate_Kind) (*ffcpb.CenterUpdate, time.Duration, error) {
	wctx, cancel := context.WithDeadline(ctx, since.Add(timeout))
	defer cancel()
	skipped := 0
	for {
		msg, err := w.msgs.Next(jetstream.NextContext(wctx))
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return nil, 0, fmt.Errorf("nothing on %s within %v (--wait-timeout) of the announcement; is a producer and a trainer of model %s running?: %w",
					w.subject, timeout, w.model, errWaitTimeout)
			}
			return nil, 0, fmt.Errorf("follow %s: %w", w.subject, err)
		}
		var m *ffcpb.CenterUpdate
		err = nil
		if w.key != nil {
			err = schemas.VerifyCenterUpdate(msg.Data(), w.key)
		}
		if err == nil {
			m, err = schemas.DecodeCenterUpdate(msg.Data(), schemas.Limits{Dim: -1})
		}
		if err == nil && (m.GetId() != w.id || m.GetModel() != w.model) {
			err = fmt.Errorf("update of model %s, ID %d on the subject of ID %d", m.GetModel(), m.GetId(), w.id)
		}
		if err != nil {
			if skipped++; skipped == 1 {
				a.log.Warn("ids: skipping a bad center update (warned once)", "subject", msg.Subject(), "err", err)
			}
			continue
		}
		for _, k := range kinds {
			if m.GetKind() == k {
				return m, time.Since(since), nil
			}
		}
	}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// charOf returns " (c)" when id is the code point of a printable
// character beyond ASCII, else "".
func charOf(id uint64) string {
	if id < 0x80 || id > 0x10FFFF {
		return ""
	}
	if s := string(rune(id)); parseIDRoundTrips(s, id) {
		return " (" + s + ")"
	}
	return ""
}

// parseIDRoundTrips reports whether s parses back to id (a printable
// single character).
func parseIDRoundTrips(s string, id uint64) bool {
	got, err := parseID(s)
	return err == nil && got == id
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
