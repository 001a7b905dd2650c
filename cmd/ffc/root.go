package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ffc-stream/ffc/internal/config"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// app holds what the commands share once the root has parsed its flags.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger

	configFile string
	logLevel   string
	logFormat  string
	// sources says where each flag of the command being run got its value
	// (config.FromFlag, FromEnv, FromFile, FromDefault).
	sources config.Applied
}

const rootLong = `ffc trains embedding models over very many identities with the FFC method:
a fixed-size dynamic class pool filled by a moving-average gallery network
replaces the N×D classifier, so memory and step time do not grow with N.

Configuration. Every flag can be given three ways, highest precedence first:
  1. on the command line:       --kafka-brokers 127.0.0.1:19092
  2. in the environment:        FFC_KAFKA_BROKERS=127.0.0.1:19092
     (FFC_ + the flag name in upper case, dashes as underscores)
  3. in a YAML file (--config or FFC_CONFIG), keyed by flag name; a key named
     after a command holds settings for that command only:
       kafka-brokers: [127.0.0.1:19092]
       nats-url: nats://127.0.0.1:14222
       demo:
         follow: true
Flags not set any of these ways keep their defaults.

Services. Commands that need Kafka, NATS or S3 take their addresses from
--kafka-brokers, --nats-url and --s3-endpoint (with --s3-access-key,
--s3-secret-key-file, --s3-secure). Any that is not given is started
in-process on a random loopback port (the embedded default).

Security. TLS, SASL and credentials: --kafka-tls, --kafka-ca-file,
--kafka-sasl, --kafka-user, --kafka-password-file; --nats-ca-file,
--nats-nkey-file, --nats-creds-file; --s3-ca-file (see each command's
--help). A secret comes from a file or the environment (FFC_S3_SECRET_KEY,
FFC_KAFKA_PASSWORD, FFC_NATS_PASSWORD), never from the command line, and
is never logged.`

// newRootCmd builds the ffc command tree.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "ffc",
		Short:         "Train embedding models over millions of identities with FFC, streaming",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "YAML configuration file (env FFC_CONFIG); keys are flag names")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "text", "log format on stderr: text or json")

	root.AddCommand(newVersionCmd(a), newDemoCmd(a), newProduceCmd(a), newTrainCmd(a), newEvalCmd(a), newCurveCmd(a), newDataCmd(), newCentersCmd(a), newIDsCmd(a), newExportCmd(a), newEmbedCmd(a))
	return root
}

// setup applies environment and file configuration to the command being
// run and builds the logger.
func (a *app) setup(cmd *cobra.Command) error {
	file := a.configFile
	if !cmd.Flags().Changed("config") {
		if v, ok := os.LookupEnv(config.EnvName("config")); ok {
			file = v
		}
	}
	applied, err := config.Apply(cmd, config.Options{File: file})
	if err != nil {
		return err
	}
	if err := refuseSecretFlags(cmd, applied); err != nil {
		return err
	}
	a.sources = applied
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(a.logFormat) {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, hopts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, hopts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", a.logFormat)
	}
	for name, src := range applied {
		if src == config.FromEnv || src == config.FromFile {
			f := cmd.Flags().Lookup(name)
			value := f.Value.String()
			if isSecret(f) {
				value = "(secret, not shown)"
			}
			a.log.Debug("setting", "flag", name, "from", string(src), "value", value)
		}
	}
	return nil
}

// checkModes refuses a flag given on the command line that does not apply
// to mode, and warns about one set from the environment or the file.
func (a *app) checkModes(cmd *cobra.Command, mode settings.Mode) error {
	src := map[string]settings.Source{}
	for k, v := range a.sources {
		src[k] = string(v)
	}
	warnings, err := settings.CheckModes(cmd.Flags(), mode, src)
	for _, w := range warnings {
		a.log.Warn(w)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	return nil
}
