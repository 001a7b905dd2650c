package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ffc-stream/ffc/internal/embedded"
)

// endpoints are the addresses of the services.
type endpoints struct {
	brokers              []string
	natsURL              string
	s3                   string
	accessKey, secretKey string
}

// Service names of the faults.
const (
	svcKafka = "kafka"
	svcNATS  = "nats"
	svcS3    = "s3"
)

// services are the stack the run uses, and how it breaks them.
type services interface {
	endpoints() endpoints
	// fault breaks service svc for outage and repairs it; it returns when
	// the service is back, with how it was broken.
	fault(ctx context.Context, svc string, outage time.Duration) (string, error)
	close() error
}

// waitOutage waits d (the schedule's outage), or until ctx ends.
func waitOutage(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// embeddedServices are internal/embedded servers in this process: NATS
// and kfake with data folders of their own (restarted on their ports),
// and gofakes3 behind an S3 gate of this program (an outage: 503).
type embeddedServices struct {
	natsDir   string
	natsPort  int
	nats      *embedded.NATS
	kafkaDir  string
	kafkaPort int
	kafka     *embedded.Kafka
	s3        *embedded.S3
	gate      *s3Gate
	log       *slog.Logger
}

func startEmbedded(dir string, log *slog.Logger) (_ *embeddedServices, err error) {
	e := &embeddedServices{natsDir: filepath.Join(dir, "nats"), kafkaDir: filepath.Join(dir, "kafka"), log: log}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.close())
		}
	}()
	if e.nats, err = embedded.StartNATS(embedded.NATSOptions{StoreDir: e.natsDir}); err != nil {
		return nil, err
	}
	u, err := url.Parse(e.nats.URL())
	if err != nil {
		return nil, fmt.Errorf("embedded nats url: %w", err)
	}
	if e.natsPort, err = portOf(u.Host); err != nil {
		return nil, err
	}
	if e.kafka, err = embedded.StartKafka(embedded.KafkaOptions{DataDir: e.kafkaDir}); err != nil {
		return nil, err
	}
	if e.kafkaPort, err = portOf(e.kafka.Brokers()[0]); err != nil {
		return nil, err
	}
	if e.s3, err = embedded.StartS3(embedded.S3Options{}); err != nil {
		return nil, err
	}
	if e.gate, err = startS3Gate(e.s3.Endpoint()); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *embeddedServices) endpoints() endpoints {
	ak, sk := e.s3.Credentials()
	return endpoints{brokers: e.kafka.Brokers(), natsURL: e.nats.URL(), s3: e.gate.addr(), accessKey: ak, secretKey: sk}
}

func (e *embeddedServices) fault(ctx context.Context, svc string, outage time.Duration) (string, error) {
	switch svc {
	case svcNATS:
		if err := e.nats.Close(); err != nil {
			return "", fmt.Errorf("stop embedded nats: %w", err)
		}
		werr := waitOutage(ctx, outage)
		n, err := embedded.StartNATS(embedded.NATSOptions{Port: e.natsPort, StoreDir: e.natsDir})
		if err != nil {
			return "", fmt.Errorf("restart embedded nats on port %d: %w", e.natsPort, err)
		}
		e.nats = n
		return "restart: embedded NATS shut down, started again on its port and store", werr
	case svcKafka:
		if err := e.kafka.Close(); err != nil {
			return "", fmt.Errorf("stop embedded kafka: %w", err)
		}
		werr := waitOutage(ctx, outage)
		k, err := embedded.StartKafka(embedded.KafkaOptions{Port: e.kafkaPort, DataDir: e.kafkaDir})
		if err != nil {
			return "", fmt.Errorf("restart embedded kafka on port %d: %w", e.kafkaPort, err)
		}
		e.kafka = k
		return "restart: kfake closed, started again on its port and data folder", werr
	case svcS3:
		e.gate.down.Store(true)
		werr := waitOutage(ctx, outage)
		e.gate.down.Store(false)
		return "outage: S3 answers 503 ServiceUnavailable", werr
	}
	return "", fmt.Errorf("unknown service %q", svc)
}

func (e *embeddedServices) close() error {
	var errs []error
	if e.gate != nil {
		errs = append(errs, e.gate.close())
	}
	if e.s3 != nil {
		errs = append(errs, e.s3.Close())
	}
	if e.kafka != nil {
		errs = append(errs, e.kafka.Close())
	}
	if e.nats != nil {
		errs = append(errs, e.nats.Close())
	}
	for _, d := range []string{e.natsDir, e.kafkaDir} {
		errs = append(errs, os.RemoveAll(d))
	}
	return errors.Join(errs...)
}

// s3Gate is a reverse proxy in front of the embedded S3 server that
// answers 503 while down is set.
type s3Gate struct {
	down atomic.Bool
	ln   net.Listener
	srv  *http.Server
	tr   *http.Transport
	done chan error
}

func startS3Gate(target string) (*s3Gate, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("s3 gate: %w", err)
	}
	g := &s3Gate{ln: ln, tr: &http.Transport{MaxIdleConnsPerHost: 32}, done: make(chan error, 1)}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	proxy.Transport = g.tr
	g.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.down.Load() {
			w.Header().Set("Content-Type", "application/xml")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>chaos: S3 outage</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { g.done <- g.srv.Serve(ln) }()
	return g, nil
}

func (g *s3Gate) addr() string { return g.ln.Addr().String() }

func (g *s3Gate) close() error {
	err := g.srv.Close()
	if serr := <-g.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	g.tr.CloseIdleConnections()
	return err
}

// realServices are Apache Kafka, NATS and MinIO run by
// deploy/local/services.sh: an instance of their own (private) or those
// of the FFC_* environment (shared).
type realServices struct {
	script  string
	env     []string // services.sh's environment
	private bool
	ends    endpoints
	log     *slog.Logger
}

// startReal prepares the real stack; a private one is started under dir
// on free ports.
func startReal(ctx context.Context, root, dir, mode string, log *slog.Logger) (*realServices, error) {
	r := &realServices{script: filepath.Join(root, "deploy", "local", "services.sh"), env: os.Environ(), private: mode == "private", log: log}
	if !r.private {
		b, n, s := os.Getenv("FFC_KAFKA_BROKERS"), os.Getenv("FFC_NATS_URL"), os.Getenv("FFC_S3_ENDPOINT")
		if b == "" || n == "" || s == "" {
			return nil, errors.New("--services shared: FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT must be set (eval \"$(deploy/local/services.sh env)\")")
		}
		r.ends = endpoints{brokers: strings.Split(b, ","), natsURL: n, s3: s,
			accessKey: os.Getenv("FFC_S3_ACCESS_KEY"), secretKey: os.Getenv("FFC_S3_SECRET_KEY")}
		return r, nil
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	const ak, sk = "ffcchaos", "ffcchaos-secret"
	set := map[string]string{
		"FFC_SERVICES_DIR": filepath.Join(dir, "services"),
		"FFC_KAFKA_PORT":   strconv.Itoa(ports[0]), "FFC_KAFKA_CONTROLLER_PORT": strconv.Itoa(ports[1]),
		"FFC_NATS_PORT": strconv.Itoa(ports[2]), "FFC_NATS_MONITOR_PORT": strconv.Itoa(ports[3]),
		"FFC_MINIO_PORT": strconv.Itoa(ports[4]), "FFC_MINIO_CONSOLE_PORT": strconv.Itoa(ports[5]),
		"FFC_S3_ACCESS_KEY": ak, "FFC_S3_SECRET_KEY": sk,
	}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); set[k] == "" {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	r.env = env
	r.ends = endpoints{brokers: []string{"127.0.0.1:" + set["FFC_KAFKA_PORT"]}, natsURL: "nats://127.0.0.1:" + set["FFC_NATS_PORT"],
		s3: "127.0.0.1:" + set["FFC_MINIO_PORT"], accessKey: ak, secretKey: sk}
	if err := r.sh(ctx, "up"); err != nil {
		return nil, errors.Join(err, r.close())
	}
	return r, nil
}

// sh runs services.sh with args.
func (r *realServices) sh(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, r.script, args...)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	r.log.Info("services.sh", "args", strings.Join(args, " "), "output", strings.TrimSpace(string(out)))
	if err != nil {
		return fmt.Errorf("services.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (r *realServices) endpoints() endpoints { return r.ends }

func (r *realServices) fault(ctx context.Context, svc string, outage time.Duration) (string, error) {
	name := map[string]string{svcKafka: "kafka", svcNATS: "nats", svcS3: "minio"}[svc]
	if name == "" {
		return "", fmt.Errorf("unknown service %q", svc)
	}
	how := "restart: services.sh down " + name + ", up " + name
	if err := r.sh(ctx, "down", name); err != nil {
		return how, err
	}
	werr := waitOutage(ctx, outage)
	// Bring it back even when the run is being cancelled.
	if err := r.sh(context.WithoutCancel(ctx), "up", name); err != nil {
		return how, err
	}
	return how, werr
}

func (r *realServices) close() error {
	if !r.private {
		return nil
	}
	return r.sh(context.Background(), "down", "--purge")
}

// portOf is the port of host:port.
func portOf(hostport string) (int, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, fmt.Errorf("address %s: %w", hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("address %s: %w", hostport, err)
	}
	return n, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
