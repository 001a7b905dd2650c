package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ffc-stream/ffc/internal/config"
	"github.com/ffc-stream/ffc/internal/security"
)

// The one home of the commands' security flags: TLS, SASL and
// credentials of Kafka, NATS and S3. A secret is read from a file
// (--…-file) or from the environment (FFC_S3_SECRET_KEY,
// FFC_KAFKA_PASSWORD, FFC_NATS_PASSWORD); the flags that hold one are
// hidden and refused on the command line (ps and shell history show it),
// and their values are never logged.

// secretAnnotation marks a flag whose value is a secret.
const secretAnnotation = "ffc_secret"

// secretFlag registers a hidden string flag for a secret that only the
// environment or the configuration file may set.
func secretFlag(fs *pflag.FlagSet, p *string, name, file string) {
	fs.StringVar(p, name, "", fmt.Sprintf("secret: only from env %s (or --%s); never on the command line", config.EnvName(name), file))
	_ = fs.SetAnnotation(name, secretAnnotation, []string{"true"})
	_ = fs.MarkHidden(name)
}

// isSecret reports whether f holds a secret.
func isSecret(f *pflag.Flag) bool { return len(f.Annotations[secretAnnotation]) > 0 }

// refuseSecretFlags fails when a secret flag was given on the command
// line; applied says where each flag's value came from.
func refuseSecretFlags(cmd *cobra.Command, applied config.Applied) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err == nil && isSecret(f) && applied[f.Name] == config.FromFlag {
			err = fmt.Errorf("--%s: a secret is not taken from the command line (other users see it in ps, and it stays in shell history): set %s or give the --%s-file flag", f.Name, config.EnvName(f.Name), f.Name)
		}
	})
	return err
}

// kafkaAuth are the Kafka security flags.
type kafkaAuth struct {
	sec          security.Kafka
	passwordFile string
}

func (k *kafkaAuth) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&k.sec.TLS.Enabled, "kafka-tls", false, "connect to Kafka over TLS (implied by --kafka-ca-file and --kafka-cert-file)")
	fs.StringVar(&k.sec.TLS.CAFile, "kafka-ca-file", "", "PEM file of the CA that signs the brokers' certificates (TLS)")
	fs.StringVar(&k.sec.TLS.CertFile, "kafka-cert-file", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&k.sec.TLS.KeyFile, "kafka-key-file", "", "client key (PEM) for mutual TLS")
	fs.StringVar(&k.sec.SASL, "kafka-sasl", "", "SASL mechanism: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN (empty: none)")
	fs.StringVar(&k.sec.User, "kafka-user", "", "SASL user")
	fs.StringVar(&k.passwordFile, "kafka-password-file", "", "file holding the SASL password (or env FFC_KAFKA_PASSWORD)")
	secretFlag(fs, &k.sec.Password, "kafka-password", "kafka-password-file")
}

// natsAuth are the NATS security flags.
type natsAuth struct {
	sec          security.NATS
	passwordFile string
}

func (n *natsAuth) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&n.sec.TLS.CAFile, "nats-ca-file", "", "PEM file of the CA that signs the NATS server's certificate (TLS; a tls:// URL also turns TLS on)")
	fs.StringVar(&n.sec.TLS.CertFile, "nats-cert-file", "", "client certificate (PEM) for mutual TLS")
	fs.StringVar(&n.sec.TLS.KeyFile, "nats-key-file", "", "client key (PEM) for mutual TLS")
	fs.StringVar(&n.sec.NKeyFile, "nats-nkey-file", "", "file holding the NATS user's nkey seed (SU...)")
	fs.StringVar(&n.sec.CredsFile, "nats-creds-file", "", "NATS user credentials file (JWT and seed)")
	fs.StringVar(&n.sec.User, "nats-user", "", "NATS user (with --nats-password-file or env FFC_NATS_PASSWORD)")
	fs.StringVar(&n.passwordFile, "nats-password-file", "", "file holding the NATS user's password (or env FFC_NATS_PASSWORD)")
	secretFlag(fs, &n.sec.Password, "nats-password", "nats-password-file")
}

// s3Auth are the S3 flags other than the endpoint.
type s3Auth struct {
	accessKey, secretKey, secretKeyFile string
	tls                                 security.TLS
}

func (s *s3Auth) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.accessKey, "s3-access-key", "", "S3 access key (env FFC_S3_ACCESS_KEY)")
	fs.StringVar(&s.secretKeyFile, "s3-secret-key-file", "", "file holding the S3 secret key (or env FFC_S3_SECRET_KEY)")
	secretFlag(fs, &s.secretKey, "s3-secret-key", "s3-secret-key-file")
	fs.BoolVar(&s.tls.Enabled, "s3-secure", false, "use HTTPS for S3 (env FFC_S3_SECURE; implied by --s3-ca-file)")
	fs.StringVar(&s.tls.CAFile, "s3-ca-file", "", "PEM file of the CA that signs the S3 server's certificate (HTTPS)")
}

// resolve reads the secret files. A secret given both in the environment
// and as a file is refused: which one wins would be a guess.
func resolveSecret(value *string, file, what string) error {
	if file == "" {
		return nil
	}
	if *value != "" {
		return fmt.Errorf("%s: given both in the environment and as a file; give one", what)
	}
	s, err := security.ReadSecret(file)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	*value = s
	return nil
}

// resolve reads the secret files of the three services and checks the
// settings.
func (e *endpoints) resolve() error {
	if err := resolveSecret(&e.Kafka.sec.Password, e.Kafka.passwordFile, "kafka password"); err != nil {
		return err
	}
	if err := resolveSecret(&e.NATS.sec.Password, e.NATS.passwordFile, "nats password"); err != nil {
		return err
	}
	if err := resolveSecret(&e.S3.secretKey, e.S3.secretKeyFile, "s3 secret key"); err != nil {
		return err
	}
	e.Kafka.passwordFile, e.NATS.passwordFile, e.S3.secretKeyFile = "", "", ""
	if err := e.Kafka.sec.Check(); err != nil {
		return err
	}
	return e.NATS.sec.Check()
}

// s3 are the S3 client settings.
func (e endpoints) s3() security.S3 {
	return security.S3{AccessKey: e.S3.accessKey, SecretKey: e.S3.secretKey, TLS: e.S3.tls}
}

// logSecurity says how the command's connections are secured, with no
// secret in it, and warns about those that authenticate nobody.
func (e endpoints) logSecurity(log *slog.Logger, nats bool) {
	s3 := "HTTP"
	if e.S3.tls.On() {
		s3 = "HTTPS"
	}
	args := []any{"kafka", e.Kafka.sec.Describe(), "s3", s3}
	if nats {
		args = append(args, "nats", e.NATS.sec.Describe())
	}
	log.Info("connections", args...)
	if e.Kafka.sec.SASL == "" || (nats && e.NATS.sec.Describe() == "no TLS, no credentials") {
		log.Warn("connections without authentication: anyone who can reach the services can read and write; see README, Security (--kafka-sasl, --nats-nkey-file, ...)")
	}
}
