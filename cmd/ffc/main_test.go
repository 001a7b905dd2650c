package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	for _, want := range []string{"--kafka-brokers", "--nats-url", "--s3-endpoint", "--follow", "--data-dir"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo --help lacks %q", want)
		}
	}
}

func TestDemoEmbedded(t *testing.T) {
	out, _, err := run(t, nil, "demo", "--data-dir", t.TempDir())
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
	out, _, err := run(t, nil, "demo", "--kafka-brokers", "127.0.0.1:1", "--timeout", "20s")
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
