package security

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// NATS are a NATS client's security settings: TLS, and at most one way to
// authenticate (a creds file, an nkey seed file, or a user and password).
// The zero value connects without TLS or credentials.
type NATS struct {
	TLS TLS
	// CredsFile is a JWT user credentials file (nsc, decentralized auth).
	CredsFile string
	// NKeyFile holds a user nkey seed (SU...).
	NKeyFile string
	User     string
	Password string
}

// Check reports settings that cannot work: more than one way to
// authenticate, or a user without a password.
func (n NATS) Check() error {
	ways := 0
	for _, set := range []bool{n.CredsFile != "", n.NKeyFile != "", n.User != "" || n.Password != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		return errors.New("nats: give one of a creds file, an nkey seed file, or a user and password")
	}
	if (n.User == "") != (n.Password == "") {
		return errors.New("nats: a user needs a password, and a password a user")
	}
	return nil
}

// Describe says what the settings do, with no secret in it: for logs.
func (n NATS) Describe() string {
	var parts []string
	if n.TLS.On() {
		parts = append(parts, "TLS")
	}
	switch {
	case n.CredsFile != "":
		parts = append(parts, "creds file "+n.CredsFile)
	case n.NKeyFile != "":
		parts = append(parts, "nkey "+n.NKeyFile)
	case n.User != "":
		parts = append(parts, "user "+n.User)
	}
	if len(parts) == 0 {
		return "no TLS, no credentials"
	}
	return strings.Join(parts, ", ")
}

// Options returns the nats.go options of the settings.
func (n NATS) Options() ([]nats.Option, error) {
	if err := n.Check(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	cfg, err := n.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if cfg != nil {
		opts = append(opts, nats.Secure(cfg))
	}
	switch {
	case n.CredsFile != "":
		opts = append(opts, nats.UserCredentials(n.CredsFile))
	case n.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed %s: %w", n.NKeyFile, err)
		}
		opts = append(opts, o)
	case n.User != "":
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	}
	return opts, nil
}
