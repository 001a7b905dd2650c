package embedded

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ffc-stream/ffc/internal/security"
)

// Secure makes the embedded servers authenticate and encrypt as the real
// ones of deploy/local do in secure mode, with the roles and privileges
// of internal/security and the certificates and secrets of Material:
//
//   - Kafka (kfake): TLS only, SASL/SCRAM-SHA-512, ACLs; admin is a super
//     user, producer and trainer have the ACLs of their role for Names;
//   - NATS: TLS required, the nkey users of the NATS roles with their
//     subject permissions, nobody else;
//   - S3 (gofakes3): HTTPS only. gofakes3 checks no signature and has no
//     users or policies: it authenticates nobody (the real MinIO does).
type Secure struct {
	Material security.Material
	// Names are what the Kafka ACLs are written for (default
	// security.DefaultNames). A deployment with other names provisions
	// them as admin (security.ProvisionKafka).
	Names security.Names
	// MutualTLS requires clients to present a certificate of the CA.
	MutualTLS bool
}

func (s *Secure) names() security.Names {
	if s.Names == (security.Names{}) {
		return security.DefaultNames()
	}
	return s.Names
}

func (s *Secure) caForClients() string {
	if s.MutualTLS {
		return s.Material.CA()
	}
	return ""
}

// kafkaOpts are the kfake options of s.
func (s *Secure) kafkaOpts() ([]kfake.Opt, error) {
	m := s.Material
	cfg, err := security.ServerConfig(m.ServerCert(), m.ServerKey(), s.caForClients())
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	opts := []kfake.Opt{kfake.TLS(cfg), kfake.EnableSASL(), kfake.EnableACLs()}
	for _, role := range security.KafkaRoles() {
		pw, err := security.ReadSecret(m.KafkaPassword(role))
		if err != nil {
			return nil, fmt.Errorf("embedded kafka: %w", err)
		}
		if role == security.RoleAdmin {
			opts = append(opts, kfake.Superuser(security.SASLScramSHA512, role, pw))
			continue
		}
		var acls []kfake.ACL
		for _, e := range security.KafkaACLs(role, s.names()) {
			acls = append(acls, kfake.ACL{Resource: kmsg.ACLResourceType(e.ResourceType), Name: e.ResourceName,
				Pattern: kmsg.ACLResourcePatternType(e.ResourcePatternType), Operation: kmsg.ACLOperation(e.Operation),
				Allow: e.PermissionType == 3 /* kafka.ACLPermissionTypeAllow */})
		}
		opts = append(opts, kfake.User(security.SASLScramSHA512, role, pw, acls...))
	}
	return opts, nil
}

// natsOpts sets the TLS and the users of s on o.
func (s *Secure) natsOpts(o *server.Options) error {
	m := s.Material
	cfg, err := security.ServerConfig(m.ServerCert(), m.ServerKey(), s.caForClients())
	if err != nil {
		return fmt.Errorf("embedded nats: %w", err)
	}
	o.TLS, o.TLSConfig, o.TLSTimeout, o.TLSVerify = true, cfg, 5, s.MutualTLS
	for _, role := range security.NATSRoles() {
		pub, err := m.NATSPublicKey(role)
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		p, _ := security.NATSPermissions(role, s.names())
		o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: pub, Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: p.Publish}, Subscribe: &server.SubjectPermission{Allow: p.Subscribe}}})
	}
	return nil
}
