// Command secure makes and applies the secure material of a local
// deployment (deploy/local/services.sh with FFC_SECURE=1), from the one
// home of the roles and their privileges, internal/security:
//
//	secure init --dir D [--host H ...]    CA, certificates, passwords, nkeys, S3 keys (kept when present)
//	secure nats-authorization --dir D     nats-server authorization block (nkey users, permissions)
//	secure s3-policy ROLE                 the role's S3 policy (JSON)
//	secure kafka --dir D --brokers B      SCRAM users and ACLs, as admin over SASL_SSL
//	secure env --dir D --role R [--mtls]  export lines for ffc run as role R
//
// No secret is printed: env names files (and FFC_S3_ACCESS_KEY, which is
// not secret).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ffc-stream/ffc/internal/security"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "secure:", err)
		os.Exit(1)
	}
}

type hosts []string

func (h *hosts) String() string     { return strings.Join(*h, ",") }
func (h *hosts) Set(s string) error { *h = append(*h, s); return nil }

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want a command: init, nats-authorization, s3-policy, kafka, env")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", "", "folder of the material")
	brokers := fs.String("brokers", "", "Kafka bootstrap host:port (kafka)")
	role := fs.String("role", "", "role (env)")
	mtls := fs.Bool("mtls", false, "clients present their role's certificate")
	var hs hosts
	fs.Var(&hs, "host", "another name of the server certificate (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	m := security.Material{Dir: *dir}
	if *dir == "" && args[0] != "s3-policy" {
		return fmt.Errorf("%s: --dir is required", args[0])
	}
	switch args[0] {
	case "init":
		return m.Generate(hs...)
	case "nats-authorization":
		s, err := m.NATSAuthorization(security.DefaultNames())
		if err != nil {
			return err
		}
		fmt.Print(s)
		return nil
	case "s3-policy":
		doc, ok := security.S3Policy(fs.Arg(0))
		if !ok {
			return fmt.Errorf("s3-policy: %q has no S3 policy", fs.Arg(0))
		}
		fmt.Println(string(doc))
		return nil
	case "kafka":
		return provisionKafka(m, *brokers, *mtls)
	case "env":
		return printEnv(m, *role, *mtls)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func provisionKafka(m security.Material, brokers string, mtls bool) error {
	if brokers == "" {
		return fmt.Errorf("kafka: --brokers is required")
	}
	cl, done, err := m.AdminClient(strings.Split(brokers, ","), mtls)
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return security.ProvisionKafka(ctx, cl, m, security.DefaultNames())
}

// printEnv prints the FFC_* settings of role: file paths and names, never
// a secret.
func printEnv(m security.Material, role string, mtls bool) error {
	known := false
	for _, r := range security.Roles() {
		known = known || r == role
	}
	if !known || role == security.RoleAdmin {
		return fmt.Errorf("env: --role %q: want producer, trainer, subscriber or uploader", role)
	}
	set := func(k, v string) { fmt.Printf("export %s=%s\n", k, shellQuote(v)) }
	set("FFC_KAFKA_CA_FILE", m.CA())
	set("FFC_NATS_CA_FILE", m.CA())
	set("FFC_S3_CA_FILE", m.CA())
	set("FFC_S3_SECURE", "true")
	if mtls {
		for _, k := range []string{"KAFKA", "NATS"} {
			set("FFC_"+k+"_CERT_FILE", m.ClientCert(role))
			set("FFC_"+k+"_KEY_FILE", m.ClientKey(role))
		}
	}
	for _, r := range security.KafkaRoles() {
		if r == role {
			set("FFC_KAFKA_SASL", security.SASLScramSHA512)
			set("FFC_KAFKA_USER", role)
			set("FFC_KAFKA_PASSWORD_FILE", m.KafkaPassword(role))
		}
	}
	for _, r := range security.NATSRoles() {
		if r == role {
			set("FFC_NATS_NKEY_FILE", m.NATSSeed(role))
		}
	}
	set("FFC_S3_ACCESS_KEY", security.S3AccessKey(role))
	set("FFC_S3_SECRET_KEY_FILE", m.S3Secret(role))
	return nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
