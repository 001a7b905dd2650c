package security_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/schemas"
)

func TestSettingsChecks(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"kafka: unknown mechanism", security.Kafka{SASL: "GSSAPI", User: "u", Password: "p"}.Check()},
		{"kafka: SCRAM without a password", security.Kafka{SASL: security.SASLScramSHA512, User: "u"}.Check()},
		{"nats: two ways to authenticate", security.NATS{NKeyFile: "a", CredsFile: "b"}.Check()},
		{"nats: a user without a password", security.NATS{User: "u"}.Check()},
		{"tls: a certificate without its key", func() error { _, err := security.TLS{CertFile: "c"}.Config(); return err }()},
		{"tls: a CA file with no certificate", func() error { _, err := security.TLS{CAFile: empty}.Config(); return err }()},
		{"secret: an empty file", func() error { _, err := security.ReadSecret(empty); return err }()},
	} {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if err := (security.Kafka{SASL: "scram-sha-512", User: "u", Password: "p"}).Check(); err != nil {
		t.Errorf("SCRAM-SHA-512 in lower case: %v", err)
	}
	if cfg, err := (security.TLS{}).Config(); cfg != nil || err != nil {
		t.Errorf("TLS off: %v, %v; want no configuration", cfg, err)
	}
}

// TestMaterial: Generate makes private files, keeps them when run again,
// and the server certificate is valid for loopback under the CA.
func TestMaterial(t *testing.T) {
	m := security.Material{Dir: filepath.Join(t.TempDir(), "m")}
	if err := m.Generate("ffc.example"); err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(m.KafkaPassword(security.RoleTrainer))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Generate(); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(m.KafkaPassword(security.RoleTrainer)); string(again) != string(pw) {
		t.Error("a second Generate replaced an existing secret")
	}
	if st, err := os.Stat(m.Dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("material folder mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	files, _ := os.ReadDir(m.Dir)
	for _, f := range files {
		if info, _ := f.Info(); info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f.Name(), info.Mode().Perm())
		}
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(m.CA())
	pool.AppendCertsFromPEM(ca)
	raw, _ := os.ReadFile(m.ServerCert())
	blk, _ := pem.Decode(raw)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "localhost", "ffc.example"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	secrets, err := m.Secrets()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(secrets, strings.TrimSpace(string(pw))) {
		t.Error("Secrets lacks the trainer's Kafka password")
	}
}

// TestPolicies: the names are the schemas' defaults; only the trainer
// publishes centers; each S3 policy is an IAM document.
func TestPolicies(t *testing.T) {
	n := security.DefaultNames()
	if n.DeadLetter != schemas.TopicDeadLetter || n.GroupPrefix != schemas.TrainerGroup || !strings.HasPrefix(schemas.TopicByID, n.TopicPrefix) ||
		!strings.HasPrefix(schemas.TopicInstance, n.TopicPrefix) || !strings.HasPrefix(schemas.TopicFresh, n.TopicPrefix) ||
		!strings.HasPrefix(schemas.CenterSubject("m", 1), n.CentersPrefix) {
		t.Errorf("DefaultNames %+v do not match the schemas' names", n)
	}
	for _, role := range []string{security.RoleSubscriber, security.RoleTrainer} {
		p, ok := security.NATSPermissions(role, n)
		if !ok {
			t.Fatalf("%s has no NATS permissions", role)
		}
		publishes := slices.Contains(p.Publish, n.CentersPrefix+">")
		if publishes != (role == security.RoleTrainer) {
			t.Errorf("%s publishes on %s>: %v", role, n.CentersPrefix, publishes)
		}
	}
	if _, ok := security.NATSPermissions(security.RoleProducer, n); ok {
		t.Error("the producer has NATS permissions")
	}
	for _, role := range []string{security.RoleProducer, security.RoleTrainer, security.RoleUploader} {
		doc, ok := security.S3Policy(role)
		var v struct {
			Version   string
			Statement []map[string]any
		}
		if !ok || json.Unmarshal(doc, &v) != nil || v.Version != "2012-10-17" || len(v.Statement) == 0 {
			t.Errorf("%s: S3 policy %s", role, doc)
		}
	}
	if _, ok := security.S3Policy(security.RoleSubscriber); ok {
		t.Error("the subscriber has an S3 policy")
	}
}

// TestManifestPolicies: the copies of the S3 policies the Kubernetes and
// compose manifests load are S3Policy's output (regenerate them with
// go run ./deploy/local/secure s3-policy ROLE).
func TestManifestPolicies(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{security.RoleProducer, security.RoleTrainer, security.RoleUploader} {
		file := filepath.Join(root, "deploy", "k8s", "s3-policies", role+".json")
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := security.S3Policy(role)
		var g, w any
		if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil || !reflect.DeepEqual(g, w) {
			t.Errorf("%s is not S3Policy(%s): run go run ./deploy/local/secure s3-policy %s > %s", file, role, role, file)
		}
	}
}
