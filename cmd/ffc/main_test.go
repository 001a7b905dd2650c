package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// realEnv are the variables that point commands at real servers; run
// clears them so a test meant for the embedded stack stays on it.
var realEnv = []string{"FFC_KAFKA_BROKERS", "FFC_NATS_URL", "FFC_S3_ENDPOINT", "FFC_S3_ACCESS_KEY", "FFC_S3_SECRET_KEY", "FFC_S3_SECURE", "FFC_CONFIG"}

// realArgs returns the flags for the real servers named in the
// environment, or nil when they are not all set.
func realArgs() []string {
	b, n, s := os.Getenv("FFC_KAFKA_BROKERS"), os.Getenv("FFC_NATS_URL"), os.Getenv("FFC_S3_ENDPOINT")
	if b == "" || n == "" || s == "" {
		return nil
	}
	return []string{"--kafka-brokers", b, "--nats-url", n, "--s3-endpoint", s,
		"--s3-access-key", os.Getenv("FFC_S3_ACCESS_KEY"), "--s3-secret-key", os.Getenv("FFC_S3_SECRET_KEY")}
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
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, nil, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "ffc ") || !strings.Contains(out, "go1.") {
		t.Errorf("version printed %q", out)
	}
}

func TestHelpDocumentsConfiguration(t *testing.T) {
	out, _, err := run(t, nil, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FFC_KAFKA_BROKERS", "--config", "YAML", "demo", "version"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	out, _, err = run(t, nil, "demo", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--kafka-brokers", "--nats-url", "--s3-endpoint", "--follow", "--data-dir", "--duration", "--new-ids"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo --help lacks %q", want)
		}
	}
}

func TestDemoEmbedded(t *testing.T) {
	out, _, err := run(t, nil, "demo", "--check-only", "--stack-dir", t.TempDir())
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"embedded: kafka, nats, s3", "ok   kafka", "ok   nats", "ok   s3", "all checks passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestDemoFailsClearly(t *testing.T) {
	// A closed port for Kafka: the demo must fail and say which check.
	out, _, err := run(t, nil, "demo", "--check-only", "--kafka-brokers", "127.0.0.1:1", "--timeout", "20s")
	if err == nil || !strings.Contains(err.Error(), "kafka check failed") {
		t.Fatalf("err = %v, want a kafka check failure\n%s", err, out)
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

// TestDemoPipeline runs the whole pipeline on the embedded stack with
// synthetic identities and the fast mlp backbone: every ID in object
// storage, including those streamed in mid-run, gets a center on NATS.
func TestDemoPipeline(t *testing.T) {
	stacks := map[string][]string{"embedded": nil}
	if ra := realArgs(); ra != nil {
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
	args := append([]string{"demo", "--synthetic", "--synthetic-ids", "200", "--backbone", "mlp", "--duration", "30s", "--new-ids", "5",
		"--new-at", "0.3", "--data-dir", data, "--log-level", "warn"}, extra...)
	out, _, err := run(t, nil, args...)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	t.Log(out[max(0, len(out)-1500):])
	var published, replicaIDs, lastStep, catalogIDs, got, of int
	var top1 float64
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "centers published"):
			fmt.Sscanf(line, "centers published %d updates; the replica holds %d IDs (last step %d); the catalog has %d IDs", &published, &replicaIDs, &lastStep, &catalogIDs)
		case strings.HasPrefix(line, "freshness"):
			i := strings.LastIndex(line, "(")
			fmt.Sscanf(line[i:], "(%d of %d new IDs got a center)", &got, &of)
		case strings.HasPrefix(line, "top-1 held-out"):
			fmt.Sscanf(line, "top-1 held-out %f%%", &top1)
		}
	}
	if catalogIDs == 0 || replicaIDs != catalogIDs {
		t.Errorf("replica holds %d IDs, the catalog %d: every ID in object storage should have a center", replicaIDs, catalogIDs)
	}
	if of != 5 || got != 5 {
		t.Errorf("%d of %d streamed-in IDs got a center, want 5 of 5", got, of)
	}
	if top1 <= 1 {
		t.Errorf("top-1 %.1f%%: the pipeline did not learn", top1)
	}
}
