package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ffc-stream/ffc/centers/broadcast"
	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/stage"
	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
)

// clearEnv keeps the commands of a test off the real servers the
// environment may name (as run does).
func clearEnv(t *testing.T) {
	for _, k := range realEnv {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}

// execute runs the ffc command line args under ctx, as main does.
func execute(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	root := newRootCmd(&out, io.Discard)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// trainArgs are the flags of a small streaming trainer on st's NATS and
// S3 and the Kafka at kafka.
func trainArgs(t testing.TB, st *embedded.Stack, kafka string) []string {
	ak, sk := st.S3.Credentials()
	return []string{"train", "--kafka-brokers", kafka, "--nats-url", st.NATS.URL(),
		"--s3-endpoint", st.S3.Endpoint(), "--s3-access-key", ak, "--s3-secret-key-file", secretFile(t, sk),
		"--bucket", "ffc-connect", "--model", "connect", "--backbone", "mlp", "--dim", "16", "--batch", "4", "--pool", "16",
		"--threads", "1", "--stats-interval", "0", "--log-level", "warn"}
}

// natsS3 starts an embedded NATS and S3 (no Kafka) for the test, with
// the centers stream of trainArgs' model: a trainer interrupted while the
// server still creates it would leave the store's goroutines of a server
// that shuts down meanwhile.
func natsS3(t *testing.T) *embedded.Stack {
	t.Helper()
	st, err := embedded.Start(embedded.StackOptions{NoKafka: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	nc, err := nats.Connect(st.NATS.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := broadcast.EnsureStream(testutil.Context(t), js, "connect", 1); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestConnectTimeoutExits (fault 7: against an unreachable Kafka the
// commands retried for ever, and exited 0 on SIGTERM): produce and
// streaming train against a closed Kafka port give up after
// --connect-timeout with Kafka's error and exit status 1.
func TestConnectTimeoutExits(t *testing.T) {
	clearEnv(t)
	st := natsS3(t)
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"produce", []string{"produce", "--allow-embedded", "--kafka-brokers", testutil.ClosedAddr(t), "--stats-interval", "0", "--log-level", "warn"}, producers.ErrKafkaUnreachable},
		{"train", trainArgs(t, st, testutil.ClosedAddr(t)), trainers.ErrKafkaUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testutil.Context(t)
			err := execute(ctx, append(tc.args, "--connect-timeout", "2s")...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
			}
			if code := exitCode(ctx, err); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
		})
	}
}

// readyzBody is what /readyz serves.
type readyzBody struct {
	Ready      bool              `json:"ready"`
	Conditions []stage.Condition `json:"conditions"`
}

// readyz fetches http://addr/readyz.
func readyz(addr string) (int, readyzBody, error) {
	var body readyzBody
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := cl.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, body, err
	}
	defer res.Body.Close()
	err = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body, err
}

// TestInterruptedBeforeReady (fault 7): a command interrupted (SIGTERM,
// SIGINT: its context ends) while it still waits for an unreachable Kafka
// fails with exit status 1 and names what it waited for; /readyz said 503
// with the failing condition meanwhile.
func TestInterruptedBeforeReady(t *testing.T) {
	clearEnv(t)
	st := natsS3(t)
	for _, tc := range []struct {
		name string
		args []string
		cond string
	}{
		{"produce", []string{"produce", "--allow-embedded", "--kafka-brokers", testutil.ClosedAddr(t), "--stats-interval", "0", "--log-level", "warn"}, producers.CondKafka},
		{"train", trainArgs(t, st, testutil.ClosedAddr(t)), trainers.CondKafka},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metrics := testutil.ClosedAddr(t)
			ctx, cancel := context.WithCancel(testutil.Context(t))
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- execute(ctx, append(tc.args, "--connect-timeout", "1h", "--metrics-addr", metrics)...) }()
			testutil.WaitFor(t, "/readyz to report "+tc.cond+" failing", func() error {
				code, body, err := readyz(metrics)
				if err != nil {
					return err
				}
				for _, c := range body.Conditions {
					// Past the initial state: an attempt to reach Kafka failed.
					if c.Name == tc.cond && !c.OK && c.Reason != "not connected yet" && code == http.StatusServiceUnavailable && !body.Ready {
						return nil
					}
				}
				return fmt.Errorf("status %d, %+v", code, body)
			})
			cancel()
			err := <-done
			if !errors.Is(err, errNotReady) {
				t.Fatalf("interrupted while Kafka is unreachable: %v, want %v", err, errNotReady)
			}
			if code := exitCode(ctx, err); code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
		})
	}
}

// TestCleanStopExitsZero: a healthy produce stopped by SIGTERM (its
// context ends) returns nil, exit status 0; /readyz said 200 before.
func TestCleanStopExitsZero(t *testing.T) {
	clearEnv(t)
	metrics := testutil.ClosedAddr(t)
	ctx, cancel := context.WithCancel(testutil.Context(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- execute(ctx, "produce", "--allow-embedded", "--stats-interval", "0", "--log-level", "warn", "--metrics-addr", metrics)
	}()
	testutil.WaitFor(t, "/readyz to say ready", func() error {
		code, body, err := readyz(metrics)
		if err == nil && (code != http.StatusOK || !body.Ready || len(body.Conditions) == 0) {
			err = fmt.Errorf("status %d, %+v", code, body)
		}
		return err
	})
	cancel()
	err := <-done
	if code := exitCode(ctx, err); err != nil || code != 0 {
		t.Errorf("stopped after a healthy start: %v, exit status %d; want nil, 0", err, code)
	}
}

func TestExitCode(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(live)
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"success", live, nil, 0},
		{"clean stop", ended, nil, 0},
		{"failure", live, errors.New("stage failed"), 1},
		{"failure after the signal", ended, errors.New("stage failed"), 1},
		{"interrupted", ended, fmt.Errorf("producer: not ready: %w", context.Canceled), 130},
		{"interrupted, waiting for kafka", ended, errors.Join(fmt.Errorf("x %w", errNotReady), context.Canceled), 1},
		{"cancelled from inside", live, context.Canceled, 1},
	} {
		if got := exitCode(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: exitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}
