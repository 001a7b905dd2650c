package security_test

import (
	"bufio"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"

	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestSecure runs the checks on each secure stack: what has no
// credentials or speaks plaintext is refused, each role can do its own
// work and nothing else, and forged centers are rejected.
func TestSecure(t *testing.T) {
	for name, mk := range targets(t) {
		t.Run(name, func(t *testing.T) {
			tg := mk(t)
			t.Run("refused", func(t *testing.T) { testRefused(t, tg) })
			t.Run("kafka-privileges", func(t *testing.T) { testKafkaPrivileges(t, tg) })
			t.Run("nats-privileges", func(t *testing.T) { testNATSPrivileges(t, tg) })
			// The embedded S3 server (gofakes3) checks no signature: it
			// has no users or policies, only MinIO's are tested.
			if tg.realS3 {
				t.Run("s3-privileges", func(t *testing.T) { testS3Privileges(t, tg) })
			}
			t.Run("forged-centers", func(t *testing.T) { testForgedCenters(t, tg) })
			t.Run("pipeline", func(t *testing.T) { testPipeline(t, tg) })
		})
	}
}

// kafkaClient is a Kafka client with sec, closed with the test.
func kafkaClient(t *testing.T, tg target, sec security.Kafka) *kafka.Client {
	t.Helper()
	tr, err := sec.Transport("ffc-security-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &kafka.Client{Addr: kafka.TCP(tg.brokers...), Timeout: 20 * time.Second, Transport: tr}
}

func role(t *testing.T, tg target, r string) security.Kafka {
	t.Helper()
	sec, err := tg.m.KafkaClient(r, false)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func testRefused(t *testing.T, tg target) {
	ctx := testutil.Context(t)
	ca := security.TLS{Enabled: true, CAFile: tg.m.CA()}
	wrong := role(t, tg, security.RoleProducer)
	wrong.Password += "x"
	for name, sec := range map[string]security.Kafka{
		"plaintext":      {SASL: security.SASLScramSHA512, User: "producer", Password: role(t, tg, security.RoleProducer).Password},
		"no credentials": {TLS: ca},
		"wrong password": wrong,
	} {
		if _, err := kafkaClient(t, tg, sec).Metadata(ctx, &kafka.MetadataRequest{}); err == nil {
			t.Errorf("kafka, %s: metadata answered, want refused", name)
		}
	}
	caOnly, err := security.NATS{TLS: ca}.Options()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(tg.natsURL, caOnly...); err == nil {
		nc.Close()
		t.Error("nats: a client with no credentials connected")
	}
	if pong := natsPlaintext(t, tg.natsURL); pong {
		t.Error("nats: a plaintext client got PONG from the TLS listener")
	}
	// HTTP to the HTTPS listener.
	plain, err := minio.New(tg.s3, &minio.Options{Creds: credentials.NewStaticV4("ffc-uploader", "x", "")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.ListBuckets(ctx); err == nil {
		t.Error("s3: plain HTTP answered by the HTTPS listener")
	}
	if tg.realS3 {
		for name, creds := range map[string]*credentials.Credentials{
			"anonymous":  credentials.NewStaticV4("", "", ""),
			"wrong key":  credentials.NewStaticV4(security.S3AccessKey(security.RoleUploader), "not-the-secret", ""),
			"subscriber": s3Creds(t, tg, security.RoleSubscriber),
		} {
			if _, err := s3Client(t, tg, creds).ListBuckets(ctx); err == nil {
				t.Errorf("s3, %s: listing answered, want refused", name)
			}
		}
	}
}

// natsPlaintext speaks the NATS protocol without TLS to the server and
// reports whether it answered the PING.
func natsPlaintext(t *testing.T, natsURL string) bool {
	t.Helper()
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("nats INFO does not require TLS: %s", info)
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		return false // closed already
	}
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, "PONG") {
			return true
		}
		if err != nil {
			return false // the server closed the connection
		}
	}
}

func s3Creds(t *testing.T, tg target, r string) *credentials.Credentials {
	t.Helper()
	sec, err := tg.m.S3Client(r)
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewStaticV4(sec.AccessKey, sec.SecretKey, "")
}

func s3Client(t *testing.T, tg target, creds *credentials.Credentials) *minio.Client {
	t.Helper()
	tr, err := security.S3{TLS: security.TLS{CAFile: tg.m.CA()}}.Transport()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	mc, err := minio.New(tg.s3, &minio.Options{Creds: creds, Secure: true, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}
