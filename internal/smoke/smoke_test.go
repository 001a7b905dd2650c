package smoke

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// target is one set of servers the suite runs against.
type target struct {
	name    string
	brokers []string
	natsURL string
	s3      S3Target
}

// targets returns the embedded stack (always) and, service by service, the
// real servers named by FFC_KAFKA_BROKERS, FFC_NATS_URL and FFC_S3_ENDPOINT
// (with FFC_S3_ACCESS_KEY, FFC_S3_SECRET_KEY, FFC_S3_SECURE=true for TLS).
// Set FFC_REQUIRE_REAL=1 to fail instead of skipping when they are unset.
func targets(t *testing.T) []target {
	t.Helper()
	stack, err := embedded.Start(embedded.StackOptions{})
	if err != nil {
		t.Fatalf("start embedded stack: %v", err)
	}
	t.Cleanup(func() {
		if err := stack.Close(); err != nil {
			t.Errorf("close embedded stack: %v", err)
		}
	})
	ak, sk := stack.S3.Credentials()
	ts := []target{{
		name:    "embedded",
		brokers: stack.Kafka.Brokers(),
		natsURL: stack.NATS.URL(),
		s3:      S3Target{Endpoint: stack.S3.Endpoint(), AccessKey: ak, SecretKey: sk},
	}}
	real := target{name: "real"}
	if b := os.Getenv("FFC_KAFKA_BROKERS"); b != "" {
		real.brokers = strings.Split(b, ",")
	}
	real.natsURL = os.Getenv("FFC_NATS_URL")
	if e := os.Getenv("FFC_S3_ENDPOINT"); e != "" {
		real.s3 = S3Target{Endpoint: e, AccessKey: os.Getenv("FFC_S3_ACCESS_KEY"), SecretKey: os.Getenv("FFC_S3_SECRET_KEY"), Secure: os.Getenv("FFC_S3_SECURE") == "true"}
	}
	ts = append(ts, real)
	return ts
}

// skipOrFail handles a real service that is not configured.
func skipOrFail(t *testing.T, what, env string) {
	t.Helper()
	msg := fmt.Sprintf("real %s not configured: set %s (deploy/local/services.sh up; eval \"$(deploy/local/services.sh env)\")", what, env)
	if os.Getenv("FFC_REQUIRE_REAL") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestSmoke(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name+"/kafka", func(t *testing.T) {
			if len(tg.brokers) == 0 {
				skipOrFail(t, "Kafka", "FFC_KAFKA_BROKERS")
			}
			ctx := testutil.Context(t)
			rep, err := Kafka(ctx, tg.brokers, KafkaOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s kafka at %v: %s", tg.name, tg.brokers, rep)
			if rep.Partitions != 8 || rep.Consumed != 200 || rep.Resumed != 200 {
				t.Errorf("report %+v: want 8 partitions, 200 consumed, 200 resumed", rep)
			}
		})
		t.Run(tg.name+"/nats", func(t *testing.T) {
			if tg.natsURL == "" {
				skipOrFail(t, "NATS", "FFC_NATS_URL")
			}
			ctx := testutil.Context(t)
			rep, err := NATS(ctx, tg.natsURL, NATSOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s nats at %s: %s", tg.name, tg.natsURL, rep)
			if rep.Retained != 5 || rep.Replayed != 5 || rep.Published != 15 {
				t.Errorf("report %+v: want 15 published, 5 retained, 5 replayed", rep)
			}
		})
		t.Run(tg.name+"/s3", func(t *testing.T) {
			if tg.s3.Endpoint == "" {
				skipOrFail(t, "S3", "FFC_S3_ENDPOINT")
			}
			ctx := testutil.Context(t)
			rep, err := S3(ctx, tg.s3, S3Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s s3 at %s: %s", tg.name, tg.s3.Endpoint, rep)
			if rep.ListPages < 4 || rep.Got != 25 || rep.Deleted != 25 {
				t.Errorf("report %+v: want ≥4 list pages, 25 got, 25 deleted", rep)
			}
		})
	}
}

// TestChecksFail makes sure the checks report unreachable servers instead
// of passing.
func TestChecksFail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := Kafka(ctx, []string{"127.0.0.1:1"}, KafkaOptions{}); err == nil {
		t.Error("kafka check passed against a closed port")
	}
	if _, err := Kafka(ctx, nil, KafkaOptions{}); err == nil {
		t.Error("kafka check passed with no brokers")
	}
	if _, err := NATS(ctx, "nats://127.0.0.1:1", NATSOptions{}); err == nil {
		t.Error("nats check passed against a closed port")
	}
	if _, err := S3(ctx, S3Target{Endpoint: "127.0.0.1:1", AccessKey: "a", SecretKey: "b"}, S3Options{}); err == nil {
		t.Error("s3 check passed against a closed port")
	}
}
