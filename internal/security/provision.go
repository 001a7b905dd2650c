package security

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ProvisionKafka creates (or resets) the SCRAM-SHA-512 credentials of the
// Kafka roles other than admin (ProvisionKafkaUsers) and their ACLs for
// n (ProvisionKafkaACLs), through cl, which must be authenticated as
// admin (a super user). It is idempotent.
func ProvisionKafka(ctx context.Context, cl *kafka.Client, m Material, n Names) error {
	if err := ProvisionKafkaUsers(ctx, cl, m); err != nil {
		return err
	}
	return ProvisionKafkaACLs(ctx, cl, n)
}

// ProvisionKafkaUsers creates (or resets) the SCRAM-SHA-512 credentials of
// the Kafka roles other than admin, with the passwords of m.
func ProvisionKafkaUsers(ctx context.Context, cl *kafka.Client, m Material) error {
	var ups []kafka.UserScramCredentialsUpsertion
	for _, role := range KafkaRoles() {
		if role == RoleAdmin {
			continue
		}
		pw, err := ReadSecret(m.KafkaPassword(role))
		if err != nil {
			return err
		}
		up, err := scramUpsertion(role, pw)
		if err != nil {
			return err
		}
		ups = append(ups, up)
	}
	res, err := cl.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{Upsertions: ups})
	if err != nil {
		return fmt.Errorf("security: kafka users: %w", err)
	}
	var errs []error
	for _, r := range res.Results {
		if r.Error != nil {
			errs = append(errs, fmt.Errorf("user %s: %w", r.User, r.Error))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("security: kafka users: %w", err)
	}
	return nil
}

// ProvisionKafkaACLs creates the ACLs of the Kafka roles for n.
func ProvisionKafkaACLs(ctx context.Context, cl *kafka.Client, n Names) error {
	var acls []kafka.ACLEntry
	for _, role := range KafkaRoles() {
		acls = append(acls, KafkaACLs(role, n)...)
	}
	res, err := cl.CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: acls})
	if err != nil {
		return fmt.Errorf("security: kafka ACLs: %w", err)
	}
	var errs []error
	for i, e := range res.Errors {
		if e != nil {
			errs = append(errs, fmt.Errorf("ACL %+v: %w", acls[i], e))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("security: kafka ACLs: %w", err)
	}
	return nil
}

// scramIterations is the SCRAM iteration count of the users created.
const scramIterations = 8192

// scramUpsertion is the SCRAM-SHA-512 credential of user with password:
// KIP-554 has the client send the salted password, Hi(password, salt, i)
// of RFC 5802, which is PBKDF2 with HMAC-SHA-512.
func scramUpsertion(user, password string) (kafka.UserScramCredentialsUpsertion, error) {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return kafka.UserScramCredentialsUpsertion{}, fmt.Errorf("security: salt: %w", err)
	}
	salted, err := pbkdf2.Key(sha512.New, password, salt, scramIterations, sha512.Size)
	if err != nil {
		return kafka.UserScramCredentialsUpsertion{}, fmt.Errorf("security: salted password: %w", err)
	}
	return kafka.UserScramCredentialsUpsertion{Name: user, Mechanism: kafka.ScramMechanismSha512,
		Iterations: scramIterations, Salt: salt, SaltedPassword: salted}, nil
}

// AdminClient is a Kafka client of brokers authenticated as admin with
// m's credentials (and, with mtls, admin's certificate); done releases
// its connections.
func (m Material) AdminClient(brokers []string, mtls bool) (cl *kafka.Client, done func(), err error) {
	sec, err := m.KafkaClient(RoleAdmin, mtls)
	if err != nil {
		return nil, nil, err
	}
	tr, err := sec.Transport("ffc-admin")
	if err != nil {
		return nil, nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second, Transport: tr}, tr.CloseIdleConnections, nil
}
