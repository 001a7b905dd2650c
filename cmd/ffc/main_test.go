package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/kernels/cpu"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// realEnv are the variables that point commands at real servers; run
// clears them so a test meant for the embedded stack stays on it.
var realEnv = []string{"FFC_KAFKA_BROKERS", "FFC_NATS_URL", "FFC_S3_ENDPOINT", "FFC_S3_ACCESS_KEY", "FFC_S3_SECRET_KEY", "FFC_S3_SECURE", "FFC_CONFIG", "FFC_S3_NOTIFY_TOPIC", "FFC_S3_NOTIFY_ARN",
	// the security settings (services.sh env in secure mode)
	"FFC_KAFKA_TLS", "FFC_KAFKA_CA_FILE", "FFC_KAFKA_CERT_FILE", "FFC_KAFKA_KEY_FILE", "FFC_KAFKA_SASL", "FFC_KAFKA_USER", "FFC_KAFKA_PASSWORD", "FFC_KAFKA_PASSWORD_FILE",
	"FFC_NATS_CA_FILE", "FFC_NATS_CERT_FILE", "FFC_NATS_KEY_FILE", "FFC_NATS_NKEY_FILE", "FFC_NATS_CREDS_FILE", "FFC_NATS_USER", "FFC_NATS_PASSWORD", "FFC_NATS_PASSWORD_FILE",
	"FFC_S3_CA_FILE", "FFC_S3_SECRET_KEY_FILE"}

// realArgs returns the flags for the real servers named in the
// environment, or nil when they are not all set.
func realArgs(t testing.TB) []string {
	b, n, s := os.Getenv("FFC_KAFKA_BROKERS"), os.Getenv("FFC_NATS_URL"), os.Getenv("FFC_S3_ENDPOINT")
	if b == "" || n == "" || s == "" {
		return nil
	}
	return []string{"--kafka-brokers", b, "--nats-url", n, "--s3-endpoint", s,
		"--s3-access-key", os.Getenv("FFC_S3_ACCESS_KEY"), "--s3-secret-key-file", secretFile(t, os.Getenv("FFC_S3_SECRET_KEY"))}
}

// secretFile writes secret to a file (mode 0600) of the test binary's
// own temporary folder and returns its path: secrets are never given on
// the command line.
func secretFile(t testing.TB, secret string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "secret-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(secret); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func run(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	for _, k := range realEnv {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	// The stages write stdout and stderr concurrently (the demo's progress
	// and the log share stderr with --json).
	var out, errb syncBuffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	err := root.ExecuteContext(testutil.Context(t))
	return out.String(), errb.String(), err
}

// TestVersion: the version and commit stamped with -ldflags as 'make
// build' does, in a binary built here; in-process (nothing stamped) it
// says so instead of "(devel)".
func TestVersion(t *testing.T) {
	out, _, err := run(t, nil, "version", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var v buildVersion
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version --json: %v: %q", err, out)
	}
	if !strings.HasPrefix(v.Version, "devel (") || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("in-process version %+v", v)
	}
	bin := filepath.Join(t.TempDir(), "ffc")
	args := []string{"build", "-ldflags", "-X main.version=v9.8.7-3-gabc -X main.revision=0123abc", "-o", bin}
	if be, err := cpu.New(cpu.Options{}); err == nil && be.Name() == "cpu-go" {
		args = append(args, "-tags", "noopenblas") // as this test binary was built
	}
	build := exec.Command("go", append(args, ".")...)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("version --json: %v: %q", err, b)
	}
	if v.Version != "v9.8.7-3-gabc" || v.Revision != "0123abc" {
		t.Errorf("stamped binary reports %+v", v)
	}
}

func TestHelpDocumentsConfiguration(t *testing.T) {
	root := newRootCmd(io.Discard, io.Discard)
	for _, want := range []string{"FFC_KAFKA_BROKERS", "--config", "YAML"} {
		if !strings.Contains(root.Long, want) {
			t.Errorf("ffc's help lacks %q", want)
		}
	}
	for cmd, flags := range map[string][]string{
		"demo":    {"kafka-brokers", "nats-url", "s3-endpoint", "follow", "data-dir", "duration", "new-ids", "json", "batch", "pool", "max-lead", "lr", "keep", "metrics-addr"},
		"train":   {"offline", "batch", "pool", "schedule", "head", "dual-loader", "checkpoint-every", "stats-interval", "log-every", "max-steps"},
		"produce": {"max-lead", "batch", "checkpoint-every", "trainer-group"},
		"eval":    {"checkpoint", "data", "out"},
		"export":  {"format", "checkpoint", "network", "out"},
		"embed":   {"checkpoint", "network", "format", "out"},
		"version": {"json"},
	} {
		c, _, err := root.Find([]string{cmd})
		if err != nil || c.Name() != cmd {
			t.Fatalf("no command %s: %v", cmd, err)
		}
		for _, f := range flags {
			if c.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", cmd, f)
			}
		}
	}
}

// checks is what demo --check-only --json writes.
type checks struct {
	Checks  []checkResult `json:"checks"`
	Compute computeInfo   `json:"compute"`
}

func TestDemoEmbedded(t *testing.T) {
	out, _, err := run(t, nil, "demo", "--check-only", "--json", "--stack-dir", t.TempDir())
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	var got checks
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("demo --json: %v\n%s", err, out)
	}
	var names []string
	for _, c := range got.Checks {
		if !c.OK {
			t.Errorf("%s check failed: %s", c.Service, c.Error)
		}
		names = append(names, c.Service)
	}
	if strings.Join(names, ",") != "kafka,nats,s3" {
		t.Errorf("checks %v, want kafka, nats, s3", names)
	}
	// The compute backend this binary was built with, and why when slow.
	want := "cpu-go"
	if cpu.HaveOpenBLAS() {
		want = "cpu-openblas"
	}
	if c := got.Compute; c.Backend != want || c.Threads < 1 || (want == "cpu-go") != (c.Note != "") {
		t.Errorf("compute %+v, want %s with its threads (and a note when it is the fallback)", c, want)
	}
}

// TestDemoValidatesFirst: a bad flag is refused before anything starts:
// no first screen, no server, all the bad values named at once.
func TestDemoValidatesFirst(t *testing.T) {
	out, stderr, err := run(t, nil, "demo", "--new-at", "2", "--remove-ids", "30", "--backbone", "resnet", "--log-format", "json")
	if err == nil {
		t.Fatal("demo with bad flags succeeded")
	}
	for _, flag := range []string{"--new-at", "--remove-ids", "--backbone"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error %q does not name %s", err, flag)
		}
	}
	if out != "" || stderr != "" {
		t.Errorf("the demo started before refusing its flags: stdout %q, stderr %q", out, stderr)
	}
}

// TestSummaryText: no empty or odd values in the demo's summary.
func TestSummaryText(t *testing.T) {
	for _, c := range []struct {
		producer map[string]int64
		trainer  int
		want     string
	}{
		{nil, 0, "none"},
		{map[string]int64{"bad-image": 0}, 0, "none"},
		{map[string]int64{"too-large": 1, "bad-image": 2}, 0, "producer: bad-image 2, too-large 1"},
		{nil, 3, "trainer: 3 rejected (see ffc_trainer_dead_letters_total by reason)"},
	} {
		if got := deadLetterText(c.producer, c.trainer); got != c.want {
			t.Errorf("deadLetterText(%v, %d) = %q, want %q", c.producer, c.trainer, got, c.want)
		}
	}
	var b strings.Builder
	(&demoSummary{}).print(&b)
	for _, odd := range []string{"map[", "0.0% of 0", "NaN", "%!"} {
		if strings.Contains(b.String(), odd) {
			t.Errorf("an empty summary says %q:\n%s", odd, b.String())
		}
	}
	if !strings.Contains(b.String(), "no new IDs yet") {
		t.Errorf("an empty summary does not say there are no new IDs yet:\n%s", b.String())
	}
}

func TestDemoFailsClearly(t *testing.T) {
	// A closed port for Kafka: the demo must fail and say which check.
	out, _, err := run(t, nil, "demo", "--check-only", "--json", "--kafka-brokers", "127.0.0.1:1", "--timeout", "20s")
	if err == nil {
		t.Fatalf("demo against a closed Kafka port succeeded\n%s", out)
	}
	var got checks
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("demo --json: %v\n%s", err, out)
	}
	if len(got.Checks) != 1 || got.Checks[0].Service != "kafka" || got.Checks[0].OK || got.Checks[0].Error == "" {
		t.Errorf("checks %+v, want one failed kafka check with its error", got.Checks)
	}
}

func TestConfigPrecedenceThroughRoot(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ffc.yaml")
	if err := os.WriteFile(cfg, []byte("log-format: yaml-is-not-a-format\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// From the file: rejected with the flag named.
	_, _, err := run(t, nil, "--config", cfg, "version")
	if err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("err = %v, want the file's bad log format rejected", err)
	}
	// The environment beats the file.
	if _, _, err := run(t, map[string]string{"FFC_LOG_FORMAT": "json"}, "--config", cfg, "version"); err != nil {
		t.Fatalf("env should override the file: %v", err)
	}
	// FFC_CONFIG names the file; a bad env value is reported with its name.
	_, _, err = run(t, map[string]string{"FFC_CONFIG": cfg, "FFC_LOG_LEVEL": "loud"}, "version")
	if err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Fatalf("err = %v, want the bad log level rejected", err)
	}
}

// TestFlagsOfTheOtherModeRefused: a training flag that does not apply to
// the mode is refused on the command line, never silently ignored; from
// the environment it is ignored with a warning (a shared configuration).
func TestFlagsOfTheOtherModeRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"train", "--schedule", "poly"}, "--schedule"},
		{[]string{"train", "--head", "fc"}, "--head"},
		{[]string{"train", "--dual-loader=false"}, "--dual-loader"},
		{[]string{"train", "--steps", "10"}, "--steps"},
		{[]string{"train", "--offline", "--model", "m"}, "--model"},
		{[]string{"train", "--offline", "--max-steps", "3"}, "--max-steps"},
	} {
		_, _, err := run(t, nil, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.flag+" applies to") {
			t.Errorf("%v: %v, want %s refused", c.args, err, c.flag)
		}
	}
	// From the environment: a warning, and the command goes on (to fail
	// later for want of a data set).
	_, stderr, err := run(t, map[string]string{"FFC_MODEL": "m"}, "train", "--offline", "--data", t.TempDir(), "--log-format", "json")
	if err == nil || strings.Contains(err.Error(), "applies to") {
		t.Fatalf("train --offline with FFC_MODEL: %v, want it to go on and fail on the data set", err)
	}
	if !logged(t, stderr, "WARN", "--model applies to streaming training only") {
		t.Errorf("no warning about FFC_MODEL:\n%s", stderr)
	}
}

// logged reports whether the JSON log holds a record of level whose
// message contains msg.
func logged(t *testing.T, log, level, msg string) bool {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		var rec struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == level && strings.Contains(rec.Msg, msg) {
			return true
		}
	}
	return false
}

// TestDemoPipeline runs the whole pipeline on the embedded stack with
// synthetic identities and the fast mlp backbone: every ID in object
// storage, including those streamed in mid-run, gets a center on NATS.
func TestDemoPipeline(t *testing.T) {
	stacks := map[string][]string{"embedded": nil}
	if ra := realArgs(t); ra != nil {
		stacks["real"] = ra
	} else if os.Getenv("FFC_REQUIRE_REAL") == "1" {
		t.Fatal("FFC_REQUIRE_REAL=1 but FFC_KAFKA_BROKERS, FFC_NATS_URL or FFC_S3_ENDPOINT is unset")
	}
	data := t.TempDir() // shared: the synthetic set is written once
	for name, extra := range stacks {
		t.Run(name, func(t *testing.T) { testDemoPipeline(t, data, extra) })
	}
}

func testDemoPipeline(t *testing.T, data string, extra []string) {
	// --steps, not --duration: the same work however busy the machine is.
	// No removal (--remove-ids 0): the trainer stops at step 40 whether or
	// not it has handled a removal by then (trainers' TestFreshLaneAndRemoval
	// covers removals).
	args := append([]string{"demo", "--json", "--synthetic", "--synthetic-ids", "200", "--backbone", "mlp", "--steps", "40", "--new-ids", "5",
		"--new-at", "0.3", "--remove-ids", "0", "--data-dir", data, "--log-level", "warn"}, extra...)
	out, stderr, err := run(t, nil, args...)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr)
	}
	t.Log(stderr[max(0, len(stderr)-1500):])
	var s demoSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("demo --json: %v\n%s", err, out)
	}
	if s.CatalogIDs == 0 || s.ReplicaIDs != s.CatalogIDs {
		t.Errorf("replica holds %d IDs, the catalog %d: every ID in object storage should have a center", s.ReplicaIDs, s.CatalogIDs)
	}
	if f := s.Freshness; f.NewIDs != 5 || f.WithCenter != 5 {
		t.Errorf("%d of %d streamed-in IDs got a center, want 5 of 5", f.WithCenter, f.NewIDs)
	}
	if f := s.Freshness; !(0 < f.P50Seconds && f.P50Seconds <= f.P99Seconds && f.P99Seconds <= f.MaxSeconds) || s.Removal.Removed != 0 {
		t.Errorf("freshness %+v, removal %+v: want ordered quantiles and no removal", f, s.Removal)
	}
	if s.Top1 <= 0.01 {
		t.Errorf("top-1 %.1f%%: the pipeline did not learn", 100*s.Top1)
	}
	if b := s.Baselines; b.IDs == 0 || b.Pixels <= 1/float64(b.IDs) || b.Trained < 0 || b.Trained > 1 || b.Untrained < 0 || b.Untrained > 1 {
		t.Errorf("baselines %+v: want the IDs counted, fractions, raw pixels above chance", b)
	}
	if extra != nil {
		assertDemoCleaned(t, s, extra)
	}
	if s.Settings.Pool < 3*s.Settings.Batch || s.Settings.MaxLead != settings.DefaultMaxLead(s.Settings.Batch, s.Settings.CheckpointEvery) || s.Steps != 40 {
		t.Errorf("summary %+v: want the derived pool and lead, and 40 steps", s)
	}
}

// TestErrorsPrefixedOnce: a command's error names the command once, not
// once per layer ("train: train: ...").
func TestErrorsPrefixedOnce(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	for _, args := range [][]string{
		{"train", "--offline", "--data", missing},
		{"train", "--offline", "--data", missing, "--steps", "-1"},
		{"eval", "--data", missing},
		{"demo", "--backbone", "resnet"},
		{"demo", "--new-at", "2"},
		{"data", "upload", "--dir", missing},
		{"ids", "add", "--id", "7", missing},
		{"centers", "get", "not-an-id"},
		{"export", "--format", "onnx", "--checkpoint", missing, "--out", filepath.Join(missing, "m.onnx")},
		{"embed", "--checkpoint", missing, missing},
	} {
		_, _, err := run(t, nil, args...)
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		parts := strings.Split(err.Error(), ": ")
		for i := 1; i < len(parts); i++ {
			if parts[i] == parts[i-1] {
				t.Errorf("%v: %q says %q twice", args, err, parts[i])
			}
		}
	}
}
