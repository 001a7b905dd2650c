package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"
)

// Material is the secure material of a deployment, as files in Dir:
//
//	ca.pem ca-key.pem                 the CA (its key signs nothing else)
//	server.pem server-key.pem         the services' certificate (CN ffc-server)
//	server-bundle.pem                 key and certificate in one (Kafka's PEM keystore)
//	<role>.pem <role>-key.pem         a client certificate per role (mutual TLS)
//	kafka-<role>.password             SCRAM-SHA-512 password (admin, producer, trainer)
//	nats-<role>.nk                    NATS user nkey seed (trainer, subscriber)
//	s3-<role>.secret                  S3 secret key, access key ffc-<role> (root: ffcadmin)
//
// Every file is mode 0600 and the folder 0700. Generate keeps what
// exists, so it can run on each start.
type Material struct{ Dir string }

// ServerCN is the common name of the services' certificate; Kafka's
// principal for it is User:ffc-server (a super user: the node itself).
const ServerCN = "ffc-server"

// The file names of Material.
func (m Material) path(name string) string       { return filepath.Join(m.Dir, name) }
func (m Material) CA() string                    { return m.path("ca.pem") }
func (m Material) ServerCert() string            { return m.path("server.pem") }
func (m Material) ServerKey() string             { return m.path("server-key.pem") }
func (m Material) ServerBundle() string          { return m.path("server-bundle.pem") }
func (m Material) ClientCert(role string) string { return m.path(role + ".pem") }
func (m Material) ClientKey(role string) string  { return m.path(role + "-key.pem") }
func (m Material) KafkaPassword(role string) string {
	return m.path("kafka-" + role + ".password")
}
func (m Material) NATSSeed(role string) string { return m.path("nats-" + role + ".nk") }
func (m Material) S3Secret(role string) string { return m.path("s3-" + role + ".secret") }

// S3AccessKey is role's access key (the root user's for admin).
func S3AccessKey(role string) string {
	if role == RoleAdmin {
		return "ffcadmin"
	}
	return "ffc-" + role
}

// KafkaRoles have credentials on Kafka; every role has S3 keys and a
// client certificate.
func KafkaRoles() []string { return []string{RoleAdmin, RoleProducer, RoleTrainer} }

// NATSRoles have credentials on NATS.
func NATSRoles() []string { return []string{RoleTrainer, RoleSubscriber} }

// Generate creates the files of m that do not exist yet. hosts are the
// server certificate's names besides 127.0.0.1, ::1 and localhost.
func (m Material) Generate(hosts ...string) error {
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	ca, caKey, err := m.ca()
	if err != nil {
		return err
	}
	if err := m.leaf(ca, caKey, ServerCN, m.ServerCert(), m.ServerKey(), true, hosts); err != nil {
		return err
	}
	if err := m.bundle(); err != nil {
		return err
	}
	for _, role := range Roles() {
		if err := m.leaf(ca, caKey, role, m.ClientCert(role), m.ClientKey(role), false, nil); err != nil {
			return err
		}
		if err := writeNew(m.S3Secret(role), randomSecret); err != nil {
			return err
		}
	}
	for _, role := range KafkaRoles() {
		if err := writeNew(m.KafkaPassword(role), randomSecret); err != nil {
			return err
		}
	}
	for _, role := range NATSRoles() {
		if err := writeNew(m.NATSSeed(role), nkeySeed); err != nil {
			return err
		}
	}
	return nil
}

// randomSecret is 24 random bytes, base64url.
func randomSecret() ([]byte, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return []byte(base64.RawURLEncoding.EncodeToString(b[:]) + "\n"), nil
}

func nkeySeed() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	return append(seed, '\n'), nil
}

// writeNew writes make()'s bytes to path (0600) unless path exists.
func writeNew(path string, make func() ([]byte, error)) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b, err := make()
	if err != nil {
		return fmt.Errorf("security: %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	return nil
}

// ca loads the CA, creating it first when absent.
func (m Material) ca() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if _, err := os.Stat(m.CA()); errors.Is(err, os.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("security: CA key: %w", err)
		}
		tmpl := template("ffc local CA", 10*365*24*time.Hour)
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return nil, nil, fmt.Errorf("security: CA: %w", err)
		}
		if err := writePair(m.CA(), m.path("ca-key.pem"), der, key); err != nil {
			return nil, nil, err
		}
	}
	return loadPair(m.CA(), m.path("ca-key.pem"))
}

func template(cn string, life time.Duration) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	now := time.Now()
	return &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"ffc"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life)}
}

// leaf writes a certificate signed by the CA (a server's with the
// loopback names and hosts, or a client's) unless certPath exists.
func (m Material) leaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn, certPath, keyPath string, server bool, hosts []string) error {
	if _, err := os.Stat(certPath); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("security: key of %s: %w", cn, err)
	}
	tmpl := template(cn, 2*365*24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		// The server certificate is also the node's client certificate
		// (Kafka's broker dials its own controller with it).
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("security: certificate of %s: %w", cn, err)
	}
	return writePair(certPath, keyPath, der, key)
}

// writePair writes a certificate and its PKCS#8 key as PEM (0600).
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("security: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("security: %w", err)
	}
	return nil
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := readBlock(certPath, "CERTIFICATE")
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("security: %s: %w", certPath, err)
	}
	kb, err := readBlock(keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("security: %s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("security: %s: not an ECDSA key", keyPath)
	}
	return cert, key, nil
}

func readBlock(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("security: %s: no %s PEM block", path, typ)
	}
	return blk.Bytes, nil
}

// bundle writes server-bundle.pem: the server key, then its certificate.
func (m Material) bundle() error {
	return writeNew(m.ServerBundle(), func() ([]byte, error) {
		key, err := os.ReadFile(m.ServerKey())
		if err != nil {
			return nil, err
		}
		cert, err := os.ReadFile(m.ServerCert())
		if err != nil {
			return nil, err
		}
		return append(key, cert...), nil
	})
}
