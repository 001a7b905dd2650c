package security

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
)

// KafkaClient are the Kafka settings of role from m: TLS with the CA,
// SCRAM-SHA-512 as the role, and with mtls the role's certificate.
func (m Material) KafkaClient(role string, mtls bool) (Kafka, error) {
	pw, err := ReadSecret(m.KafkaPassword(role))
	if err != nil {
		return Kafka{}, fmt.Errorf("security: kafka credentials of %s: %w", role, err)
	}
	return Kafka{TLS: m.clientTLS(role, mtls), SASL: SASLScramSHA512, User: role, Password: pw}, nil
}

// NATSClient are the NATS settings of role from m: TLS with the CA and
// the role's nkey seed.
func (m Material) NATSClient(role string, mtls bool) NATS {
	return NATS{TLS: m.clientTLS(role, mtls), NKeyFile: m.NATSSeed(role)}
}

// S3Client are the S3 settings of role from m: TLS with the CA and the
// role's keys.
func (m Material) S3Client(role string) (S3, error) {
	sk, err := ReadSecret(m.S3Secret(role))
	if err != nil {
		return S3{}, fmt.Errorf("security: s3 keys of %s: %w", role, err)
	}
	return S3{AccessKey: S3AccessKey(role), SecretKey: sk, TLS: TLS{CAFile: m.CA()}}, nil
}

func (m Material) clientTLS(role string, mtls bool) TLS {
	t := TLS{Enabled: true, CAFile: m.CA()}
	if mtls {
		t.CertFile, t.KeyFile = m.ClientCert(role), m.ClientKey(role)
	}
	return t
}

// Secrets are the contents of every secret file of m (passwords, seeds,
// S3 secrets) and the base64 lines of every private key: what must never
// appear in a log.
func (m Material) Secrets() ([]string, error) {
	var out []string
	for _, key := range append([]string{m.path("ca-key.pem"), m.ServerKey()}, m.clientKeys()...) {
		b, err := os.ReadFile(key)
		if err != nil {
			return nil, fmt.Errorf("security: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	var files []string
	for _, role := range KafkaRoles() {
		files = append(files, m.KafkaPassword(role))
	}
	for _, role := range NATSRoles() {
		files = append(files, m.NATSSeed(role))
	}
	for _, role := range Roles() {
		files = append(files, m.S3Secret(role))
	}
	for _, f := range files {
		s, err := ReadSecret(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// NATSPublicKey is the public nkey (U...) of role's seed in m.
func (m Material) NATSPublicKey(role string) (string, error) {
	seed, err := os.ReadFile(m.NATSSeed(role))
	if err != nil {
		return "", fmt.Errorf("security: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return "", fmt.Errorf("security: nkey seed of %s: %w", role, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

// NATSAuthorization is the authorization block of a nats-server
// configuration (JSON, which the configuration format accepts): one nkey
// user per NATS role with its permissions. Nobody else may connect.
func (m Material) NATSAuthorization(n Names) (string, error) {
	type perm struct {
		Allow []string `json:"allow"`
	}
	type user struct {
		NKey        string          `json:"nkey"`
		Permissions map[string]perm `json:"permissions"`
	}
	var users []user
	for _, role := range NATSRoles() {
		pub, err := m.NATSPublicKey(role)
		if err != nil {
			return "", err
		}
		p, _ := NATSPermissions(role, n)
		users = append(users, user{NKey: pub, Permissions: map[string]perm{"publish": {p.Publish}, "subscribe": {p.Subscribe}}})
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // nats-server's parser reads '>' but no \u escapes
	enc.SetIndent("", "  ")
	if err := enc.Encode(map[string]any{"users": users}); err != nil {
		return "", fmt.Errorf("security: %w", err)
	}
	return "authorization: " + b.String(), nil
}

func (m Material) clientKeys() []string {
	var out []string
	for _, role := range Roles() {
		out = append(out, m.ClientKey(role))
	}
	return out
}
