package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/schemas"
	"github.com/ffc-stream/ffc/schemas/ffcpb"
)

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    uint64
		wantErr string // a part of the error; "" for none
	}{
		{"0", 0, ""},
		{"19968", 19968, ""},
		{"007", 7, ""},
		{"18446744073709551615", 1<<64 - 1, ""},
		{"U+4E00", 0x4E00, ""},
		{"u+4e00", 0x4E00, ""},
		{"U4E00", 0x4E00, ""},
		{"u4e00", 0x4E00, ""},
		{"U+41", 0x41, ""},
		{"u10FFFF", 0x10FFFF, ""},
		{"一", 19968, ""},
		{"中", 0x4E2D, ""},
		{"a", 'a', ""},
		{"U", 'U', ""},
		{"é", 0xE9, ""},
		{"😀", 0x1F600, ""},
		{"", 0, "empty"},
		{"18446744073709551616", 0, "beyond the largest ID"},
		{"U+110000", 0, "beyond the last code point"},
		{"u+FFFFFFFFFFFFFFFFFF", 0, "beyond the last code point"},
		{"U+", 0, "want a decimal number"},
		{"U+4G00", 0, "want a decimal number"},
		{"一二", 0, "want a decimal number"},
		{"12a", 0, "want a decimal number"},
		{"-1", 0, "want a decimal number"},
		{"+5", 0, "want a decimal number"},
		{" 5", 0, "want a decimal number"},
		{"0x4e00", 0, "want a decimal number"},
		{" ", 0, "not a printable character"},
		{"\t", 0, "not a printable character"},
		{"\xff", 0, "not a printable character"},
	} {
		got, err := parseID(tc.in)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("parseID(%q): %v, want %d", tc.in, err, tc.want)
		case tc.wantErr == "" && got != tc.want:
			t.Errorf("parseID(%q) = %d, want %d", tc.in, got, tc.want)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseID(%q) = %d, %v; want an error with %q", tc.in, got, err, tc.wantErr)
		}
	}
}

// idsStack is an embedded NATS and S3 with the bucket and the centers
// stream of model idsModel.
type idsStack struct {
	secret string // the S3 secret key's file
	st     *embedded.Stack
	mc     *minio.Client
	js     jetstream.JetStream
}

const (
	idsBucket = "ids-test"
	idsModel  = "idstest"
)

func newIDsStack(t *testing.T) *idsStack {
	t.Helper()
	clearEnv(t)
	st, err := embedded.Start(embedded.StackOptions{NoKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ak, sk := st.S3.Credentials()
	mc, done, err := s3Client(endpoints{S3Endpoint: st.S3.Endpoint(), S3: s3Auth{accessKey: ak, secretKey: sk}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(done)
	ctx := testutil.Context(t)
	if err := mc.MakeBucket(ctx, idsBucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(st.NATS.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broadcast.EnsureStream(ctx, js, idsModel, 1); err != nil {
		t.Fatal(err)
	}
	return &idsStack{st: st, mc: mc, js: js, secret: secretFile(t, sk)}
}

// args are the flags of an ids command on the stack, then more.
func (s *idsStack) args(cmd string, more ...string) []string {
	ak, _ := s.st.S3.Credentials()
	return append([]string{"ids", cmd, "--s3-endpoint", s.st.S3.Endpoint(), "--s3-access-key", ak, "--s3-secret-key-file", s.secret,
		"--nats-url", s.st.NATS.URL(), "--bucket", idsBucket, "--model", idsModel, "--json", "--log-level", "warn"}, more...)
}

// keys lists the bucket's object keys under prefix, sorted.
func (s *idsStack) keys(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for o := range s.mc.ListObjects(testutil.Context(t), idsBucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	slices.Sort(out)
	return out
}

// markers parses the announce/ markers of the bucket.
func (s *idsStack) markers(t *testing.T) []producers.Marker {
	t.Helper()
	var out []producers.Marker
	for _, k := range s.keys(t, producers.AnnouncePrefix) {
		m, err := producers.ParseMarker(k)
		if err != nil {
			t.Fatalf("marker %s: %v", k, err)
		}
		out = append(out, m)
	}
	return out
}

// publish puts a center update of idsModel on the ID's center subject.
func (s *idsStack) publish(t *testing.T, m *ffcpb.CenterUpdate) {
	t.Helper()
	m.Model = idsModel
	b, err := schemas.EncodeCenterUpdate(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.js.Publish(testutil.Context(t), schemas.CenterSubject(idsModel, m.GetId()), b); err != nil {
		t.Fatal(err)
	}
}

// pngBytes encodes a w×h grayscale image with a pattern seeded by seed.
func pngBytes(t *testing.T, w, h int, seed byte) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i)*7 + seed
	}
	img.SetGray(0, 0, color.Gray{Y: seed})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// execJSON runs args (safe off the test's goroutine) and returns its
// stdout.
func execJSON(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	root := newRootCmd(&out, io.Discard)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// decodeJSON decodes out into v when out is not empty.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if strings.TrimSpace(out) == "" {
		return
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
}

// runJSON runs args and decodes the JSON stdout into v (when there is any).
func runJSON(t *testing.T, v any, args ...string) error {
	t.Helper()
	out, stderr, err := run(t, nil, args...)
	if strings.TrimSpace(out) != "" {
		if jerr := json.Unmarshal([]byte(out), v); jerr != nil {
			t.Fatalf("%v: stdout is not JSON: %v\n%s\nstderr:\n%s", args, jerr, out, stderr)
		}
	}
	return err
}

// TestIDsAddRejectsBadFiles: every bad file is reported and nothing is
// uploaded or announced, good files included.
func TestIDsAddRejectsBadFiles(t *testing.T) {
	s := newIDsStack(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.png"), pngBytes(t, 32, 32, 1))
	notes := writeFile(t, filepath.Join(t.TempDir(), "notes.txt"), []byte("x"))
	missing := filepath.Join(dir, "missing.png")
	bad := map[string]string{ // file: a part of the reason
		writeFile(t, filepath.Join(dir, "corrupt.png"), []byte("not a png at all")):                "png",
		writeFile(t, filepath.Join(dir, "big.png"), pngBytes(t, 64, 64, 2)):                        "64×64, want 32×32",
		writeFile(t, filepath.Join(dir, "empty.png"), nil):                                         "empty",
		writeFile(t, filepath.Join(dir, "huge.png"), make([]byte, schemas.DefaultMaxImageBytes+1)): "bytes >",
		notes:   "not a .png file",
		missing: "no such file",
	}
	writeFile(t, filepath.Join(dir, "ignored.txt"), []byte("not an image: skipped in a directory"))
	args := []string{dir, notes, missing}
	var res idsAddResult
	err := runJSON(t, &res, s.args("add", append([]string{"--id", "一"}, args...)...)...)
	if !errors.Is(err, errBadImages) {
		t.Fatalf("ids add with bad files: %v, want %v", err, errBadImages)
	}
	if res.ID != 19968 || res.Images != 0 || len(res.Rejected) != len(bad) {
		t.Errorf("result %+v: want ID 19968, no images, %d rejected", res, len(bad))
	}
	for _, r := range res.Rejected {
		want, ok := bad[r.File]
		if !ok || !strings.Contains(r.Reason, want) {
			t.Errorf("rejected %s: %q; want a reason with %q (a bad file: %v)", r.File, r.Reason, want, ok)
		}
		delete(bad, r.File)
	}
	if len(bad) > 0 {
		t.Errorf("not reported: %v", bad)
	}
	if keys := s.keys(t, ""); len(keys) != 0 {
		t.Errorf("objects written despite bad files: %v", keys)
	}
}

// TestIDsAddUploadsAndAnnounces: the images land under ids/<id>/ with
// their bytes, then the announcement marker of the ID.
func TestIDsAddUploadsAndAnnounces(t *testing.T) {
	s := newIDsStack(t)
	dir, other := t.TempDir(), t.TempDir()
	files := map[string][]byte{
		"ids/19968/a.png": pngBytes(t, 32, 32, 1),
		"ids/19968/b.png": pngBytes(t, 32, 32, 2),
		"ids/19968/c.png": pngBytes(t, 32, 32, 3),
	}
	writeFile(t, filepath.Join(dir, "a.png"), files["ids/19968/a.png"])
	writeFile(t, filepath.Join(dir, "b.png"), files["ids/19968/b.png"])
	writeFile(t, filepath.Join(dir, "readme.txt"), []byte("skipped"))
	writeFile(t, filepath.Join(dir, "sub", "deep.png"), pngBytes(t, 32, 32, 9)) // not recursive
	c := writeFile(t, filepath.Join(other, "c.png"), files["ids/19968/c.png"])
	var res idsAddResult
	if err := runJSON(t, &res, s.args("add", "--id", "U+4E00", dir, c)...); err != nil {
		t.Fatalf("ids add: %v", err)
	}
	if res.ID != 19968 || res.Images != 3 || res.Announced.IsZero() || res.CenterAfterMS != nil || len(res.Rejected) != 0 {
		t.Errorf("result %+v: want ID 19968, 3 images, announced, no wait", res)
	}
	want := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	if got := s.keys(t, "ids/"); !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	for k, data := range files {
		o, err := s.mc.GetObject(testutil.Context(t), idsBucket, k, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(o)
		o.Close()
		if err != nil || !bytes.Equal(b.Bytes(), data) {
			t.Errorf("%s: %d bytes (%v), want the file's %d", k, b.Len(), err, len(data))
		}
	}
	ms := s.markers(t)
	if len(ms) != 1 || ms[0].ID != 19968 || ms[0].Remove {
		t.Errorf("markers %+v, want one announcement of 19968", ms)
	}
}

// TestIDsRemove: every object of the ID is deleted — those of an ID whose
// decimal form it prefixes stay — then the removal marker is written.
func TestIDsRemove(t *testing.T) {
	s := newIDsStack(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), pngBytes(t, 32, 32, 1))
	writeFile(t, filepath.Join(dir, "b.png"), pngBytes(t, 32, 32, 2))
	for _, id := range []string{"7", "70"} {
		var res idsAddResult
		if err := runJSON(t, &res, s.args("add", "--id", id, dir)...); err != nil || res.Images != 2 {
			t.Fatalf("ids add %s: %v, %+v", id, err, res)
		}
	}
	var res idsRemoveResult
	if err := runJSON(t, &res, s.args("remove", "7")...); err != nil {
		t.Fatalf("ids remove: %v", err)
	}
	if res.ID != 7 || res.Deleted != 2 || res.Announced.IsZero() || res.TombstoneAfterMS != nil {
		t.Errorf("result %+v: want ID 7, 2 deleted, announced", res)
	}
	if got, want := s.keys(t, "ids/"), []string{"ids/70/a.png", "ids/70/b.png"}; !slices.Equal(got, want) {
		t.Errorf("objects after removing 7: %v, want %v", got, want)
	}
	var removals []uint64
	for _, m := range s.markers(t) {
		if m.Remove {
			removals = append(removals, m.ID)
		}
	}
	if !slices.Equal(removals, []uint64{7}) {
		t.Errorf("removal markers of %v, want [7]", removals)
	}
	// Again: nothing left to delete, the removal is announced anyway.
	if err := runJSON(t, &res, s.args("remove", "7")...); err != nil || res.Deleted != 0 {
		t.Errorf("second ids remove: %v, %+v; want 0 deleted", err, res)
	}
}

// waitForMarker waits until a marker of id (a removal when remove) is in
// the bucket: the command then follows the center subject.
func (s *idsStack) waitForMarker(t *testing.T, id uint64, remove bool) {
	testutil.WaitTrue(t, fmt.Sprintf("the marker of %d (remove %v)", id, remove), func() bool {
		for _, m := range s.markers(t) {
			if m.ID == id && m.Remove == remove {
				return true
			}
		}
		return false
	})
}

// TestIDsWait: --wait returns the first center update of the wanted kinds
// published after the command subscribed: not the center already in the
// stream, not an update of another kind.
func TestIDsWait(t *testing.T) {
	s := newIDsStack(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), pngBytes(t, 32, 32, 1))
	vec := []float32{1, 0, 0, 0}
	// A center from before: DeliverNew must skip it.
	s.publish(t, &ffcpb.CenterUpdate{Id: 19968, Kind: ffcpb.CenterUpdate_INSERT, Vector: vec, Step: 1, Epoch: 1})

	type outcome struct {
		out string
		err error
	}
	ctx := testutil.Context(t)
	done := make(chan outcome, 1)
	go func() {
		out, err := execJSON(ctx, s.args("add", "--id", "一", "--wait", "--wait-timeout", "1h", dir)...)
		done <- outcome{out, err}
	}()
	s.waitForMarker(t, 19968, false)
	s.publish(t, &ffcpb.CenterUpdate{Id: 19968, Kind: ffcpb.CenterUpdate_TOMBSTONE, Step: 41, Epoch: 3})
	s.publish(t, &ffcpb.CenterUpdate{Id: 19968, Kind: ffcpb.CenterUpdate_REFRESH, Row: 1, Vector: vec, Step: 42, Epoch: 3})
	o := <-done
	if o.err != nil {
		t.Fatalf("ids add --wait: %v", o.err)
	}
	var res idsAddResult
	decodeJSON(t, o.out, &res)
	if r := res; r.CenterAfterMS == nil || *r.CenterAfterMS < 0 || r.Step == nil || *r.Step != 42 || r.Epoch == nil || *r.Epoch != 3 {
		t.Errorf("ids add --wait: %s, want the center of step 42, epoch 3, and its time", o.out)
	}

	go func() {
		out, err := execJSON(ctx, s.args("remove", "19968", "--wait", "--wait-timeout", "1h")...)
		done <- outcome{out, err}
	}()
	s.waitForMarker(t, 19968, true)
	s.publish(t, &ffcpb.CenterUpdate{Id: 19968, Kind: ffcpb.CenterUpdate_INSERT, Vector: vec, Step: 50, Epoch: 3})
	s.publish(t, &ffcpb.CenterUpdate{Id: 19968, Kind: ffcpb.CenterUpdate_TOMBSTONE, Step: 51, Epoch: 3})
	if o = <-done; o.err != nil {
		t.Fatalf("ids remove --wait: %v", o.err)
	}
	var rres idsRemoveResult
	decodeJSON(t, o.out, &rres)
	if rres.Deleted != 1 || rres.TombstoneAfterMS == nil || rres.Step == nil || *rres.Step != 51 {
		t.Errorf("ids remove --wait: %s, want 1 deleted and the tombstone of step 51", o.out)
	}
}

// TestIDsWaitFails: --wait gives up after --wait-timeout with a non-zero
// exit status, and refuses a model without a centers stream before it
// uploads anything.
func TestIDsWaitFails(t *testing.T) {
	s := newIDsStack(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), pngBytes(t, 32, 32, 1))
	var res idsAddResult
	err := runJSON(t, &res, append(s.args("add", "--id", "5", dir), "--model", "nostream", "--wait")...)
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("ids add --wait without a centers stream: %v, want stream not found", err)
	}
	if keys := s.keys(t, ""); len(keys) != 0 {
		t.Errorf("objects written although --wait could not follow: %v", keys)
	}
	// No trainer publishes: the wait must time out.
	ctx := testutil.Context(t)
	err = runJSON(t, &res, s.args("add", "--id", "5", "--wait", "--wait-timeout", "100ms", dir)...)
	if !errors.Is(err, errWaitTimeout) || exitCode(ctx, err) != 1 {
		t.Errorf("ids add --wait without a trainer: %v (exit status %d), want %v and 1", err, exitCode(ctx, err), errWaitTimeout)
	}
	err = runJSON(t, &res, s.args("remove", "5", "--wait", "--wait-timeout", "100ms")...)
	if !errors.Is(err, errWaitTimeout) {
		t.Errorf("ids remove --wait without a trainer: %v, want %v", err, errWaitTimeout)
	}
	if _, _, err := run(t, nil, "ids", "add", "--id", "5", dir); err == nil || !strings.Contains(err.Error(), "--s3-endpoint") {
		t.Errorf("ids add without --s3-endpoint: %v, want it required", err)
	}
}

// TestCentersGetIDForms: centers get takes every ID form and prints the
// same JSON center for each.
func TestCentersGetIDForms(t *testing.T) {
	s := newIDsStack(t)
	s.publish(t, &ffcpb.CenterUpdate{Id: 19968, Kind: ffcpb.CenterUpdate_INSERT, Vector: []float32{0, 1, 0, 0}, Step: 9, Epoch: 2})
	out, _, err := run(t, nil, "centers", "get", "--nats-url", s.st.NATS.URL(), "--model", idsModel, "--dim", "4", "19968", "一", "U+4E00", "u4e00")
	if err != nil {
		t.Fatalf("centers get: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	n := 0
	for ; ; n++ {
		var c broadcast.Center
		if err := dec.Decode(&c); err != nil {
			break
		}
		if c.ID != 19968 || c.Step != 9 || c.Epoch != 2 || !slices.Equal(c.Vector, []float32{0, 1, 0, 0}) {
			t.Errorf("center %+v, want ID 19968 of step 9, epoch 2", c)
		}
	}
	if n != 4 {
		t.Errorf("%d centers printed, want 4:\n%s", n, out)
	}
	if _, _, err := run(t, nil, "centers", "get", "--nats-url", s.st.NATS.URL(), "--model", idsModel, "--dim", "4", "一二"); err == nil || !strings.Contains(err.Error(), "want a decimal number") {
		t.Errorf("centers get 一二: %v, want the ID refused", err)
	}
}

// TestIDsWaitVerifies: with --centers-public-key, --wait skips a center
// update the trainer's key did not sign (one of another key, one
// unsigned) and reports the signed one.
func TestIDsWaitVerifies(t *testing.T) {
	s := newIDsStack(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), pngBytes(t, 32, 32, 1))
	keys := t.TempDir()
	privPath, pubPath := filepath.Join(keys, "c.key"), filepath.Join(keys, "c.pub")
	if err := broadcast.GenerateKeys(privPath, pubPath); err != nil {
		t.Fatal(err)
	}
	priv, err := broadcast.LoadSigningKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	signed := func(m *ffcpb.CenterUpdate, key ed25519.PrivateKey) {
		t.Helper()
		m.Model = idsModel
		b, err := schemas.EncodeSignedCenterUpdate(m, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.js.Publish(testutil.Context(t), schemas.CenterSubject(idsModel, m.GetId()), b); err != nil {
			t.Fatal(err)
		}
	}
	vec := []float32{1, 0, 0, 0}
	ctx := testutil.Context(t)
	type outcome struct {
		out string
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		out, err := execJSON(ctx, s.args("add", "--id", "7", "--wait", "--wait-timeout", "1h", "--centers-public-key", pubPath, dir)...)
		done <- outcome{out, err}
	}()
	s.waitForMarker(t, 7, false)
	signed(&ffcpb.CenterUpdate{Id: 7, Kind: ffcpb.CenterUpdate_INSERT, Vector: vec, Step: 90, Epoch: 9}, other)
	s.publish(t, &ffcpb.CenterUpdate{Id: 7, Kind: ffcpb.CenterUpdate_INSERT, Vector: vec, Step: 91, Epoch: 9})
	signed(&ffcpb.CenterUpdate{Id: 7, Kind: ffcpb.CenterUpdate_INSERT, Vector: vec, Step: 5, Epoch: 2}, priv)
	o := <-done
	if o.err != nil {
		t.Fatalf("ids add --wait: %v", o.err)
	}
	var res idsAddResult
	decodeJSON(t, o.out, &res)
	if res.Step == nil || *res.Step != 5 || res.Epoch == nil || *res.Epoch != 2 {
		t.Errorf("ids add --wait --centers-public-key: %s, want the signed center of step 5, epoch 2", o.out)
	}
}
