package main

import (
	"bufio"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/internal/security"
)

// TestSecretsStayOffCommandLines: a secret flag on the command line is
// refused before any work; from the environment it is taken and never
// logged, and --help does not offer it.
func TestSecretsStayOffCommandLines(t *testing.T) {
	const secret = "hunter2-not-for-logs"
	for _, args := range [][]string{
		{"ids", "add", "--s3-secret-key", secret, "x.png"},
		{"produce", "--kafka-password", secret},
		{"train", "--nats-password", secret},
		{"centers", "watch", "--nats-password", secret},
		{"data", "upload", "--s3-secret-key", secret},
	} {
		_, stderr, err := run(t, nil, args...)
		if err == nil || !strings.Contains(err.Error(), "not taken from the command line") {
			t.Errorf("%v: err %v, want the secret refused", args, err)
		}
		if strings.Contains(stderr, secret) {
			t.Errorf("%v: the secret is in stderr", args)
		}
	}
	// From the environment: accepted, and the debug line of the setting
	// hides it. ids add then fails on its missing --id, after the setup.
	_, stderr, err := run(t, map[string]string{"FFC_S3_SECRET_KEY": secret}, "ids", "add", "--log-level", "debug", "--log-format", "json", "x.png")
	if err == nil || !strings.Contains(err.Error(), "--id is required") {
		t.Fatalf("ids add with the secret in the environment: %v, want it to get past the setup", err)
	}
	if strings.Contains(stderr, secret) {
		t.Errorf("the secret from the environment is in the log:\n%s", stderr)
	}
	seen := false
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["flag"] == "s3-secret-key" {
			seen = line["from"] == "env"
		}
	}
	if !seen {
		t.Errorf("no debug line for s3-secret-key from env:\n%s", stderr)
	}
	out, _, err := run(t, nil, "train", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--s3-secret-key ", "--kafka-password ", "--nats-password "} {
		if strings.Contains(out, flag) {
			t.Errorf("train --help offers %s", flag)
		}
	}
	for _, flag := range []string{"--s3-secret-key-file", "--kafka-password-file", "--kafka-sasl", "--nats-nkey-file", "--s3-ca-file"} {
		if !strings.Contains(out, flag) {
			t.Errorf("train --help does not list %s", flag)
		}
	}
}

// TestSecureDemoLogsNoSecret runs the whole demo in secure mode (TLS,
// SASL/SCRAM with ACLs, NATS nkeys with permissions, a role per part)
// with debug logs, and finds none of its secrets in anything it printed.
func TestSecureDemoLogsNoSecret(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, err := run(t, nil, "demo", "--secure", "--secure-dir", dir, "--synthetic", "--synthetic-ids", "200", "--data-dir", t.TempDir(),
		"--backbone", "mlp", "--dim", "16", "--batch", "8", "--pool", "64", "--steps", "30", "--new-ids", "4", "--new-at", "0.3", "--remove-ids", "0",
		"--threads", "1", "--json", "--log-format", "json", "--log-level", "debug")
	if err != nil {
		t.Fatalf("secure demo: %v\n%s", err, stderr)
	}
	var sum struct {
		Steps     int `json:"steps"`
		Freshness struct {
			NewIDs     int `json:"new_ids"`
			WithCenter int `json:"with_center"`
		} `json:"freshness"`
		ReplicaIDs int `json:"replica_ids"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, stdout)
	}
	if sum.Steps != 30 || sum.ReplicaIDs == 0 || sum.Freshness.WithCenter != sum.Freshness.NewIDs {
		t.Errorf("secure demo summary %+v: want 30 steps, centers in the replica and every new ID with a center", sum)
	}
	secrets, err := security.Material{Dir: filepath.Join(dir, "secure")}.Secrets()
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) < 10 {
		t.Fatalf("only %d secrets to look for", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
			t.Errorf("a secret of the material (%d characters) is in the demo's output", len(s))
		}
	}
}
