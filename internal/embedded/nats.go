package embedded

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configures the embedded NATS server.
type NATSOptions struct {
	// Host to listen on; default 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a random free port.
	Port int
	// StoreDir holds JetStream data. Empty means a fresh temporary folder
	// that Close removes.
	StoreDir string
	// MaxStore caps JetStream file storage in bytes; 0 means 1 GiB.
	MaxStore int64
	// ReadyTimeout bounds how long Start waits; default 60 s (a busy host
	// starts slowly).
	ReadyTimeout time.Duration
	// Secure, when set, requires TLS and the nkey users of the roles.
	Secure *Secure
}

// NATS is a running embedded NATS server with JetStream enabled.
type NATS struct {
	srv     *server.Server
	tempDir string
}

// StartNATS starts a NATS server with JetStream and waits until it accepts
// connections.
func StartNATS(opts NATSOptions) (*NATS, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if opts.MaxStore == 0 {
		opts.MaxStore = 1 << 30
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	n := &NATS{}
	if opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "ffc-nats-*")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: create store dir: %w", err)
		}
		opts.StoreDir, n.tempDir = dir, dir
	} else if err := os.MkdirAll(opts.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded nats: create store dir: %w", err)
	}
	sopts := &server.Options{
		ServerName:         "ffc-embedded",
		Host:               opts.Host,
		Port:               opts.Port,
		JetStream:          true,
		StoreDir:           opts.StoreDir,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  opts.MaxStore,
		NoSigs:             true,
		NoLog:              true,
		HTTPPort:           0,
	}
	if opts.Secure != nil {
		if err := opts.Secure.natsOpts(sopts); err != nil {
			n.removeTemp()
			return nil, err
		}
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		n.removeTemp()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	n.srv = srv
	go srv.Start()
	if !srv.ReadyForConnections(opts.ReadyTimeout) {
		srv.Shutdown()
		n.removeTemp()
		return nil, fmt.Errorf("embedded nats: not ready for connections after %s", opts.ReadyTimeout)
	}
	return n, nil
}

// URL is the client URL, e.g. nats://127.0.0.1:41234.
func (n *NATS) URL() string { return n.srv.ClientURL() }

// Clients is the number of client connections the server holds. A
// connection leaves it only once the server has processed everything the
// client sent, so tests wait on it to know a killed client's last
// messages are in.
func (n *NATS) Clients() int { return n.srv.NumClients() }

// Close shuts the server down and removes a temporary store folder.
func (n *NATS) Close() error {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	return n.removeTemp()
}

func (n *NATS) removeTemp() error {
	if n.tempDir == "" {
		return nil
	}
	err := os.RemoveAll(n.tempDir)
	n.tempDir = ""
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("embedded nats: remove store dir: %w", err)
	}
	return nil
}
