package security_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ffc-stream/ffc/internal/embedded"
	"github.com/ffc-stream/ffc/internal/security"
	"github.com/ffc-stream/ffc/internal/testutil"
)

// target is a secure stack: its material and addresses. realS3 says the
// object store enforces users and policies (MinIO does, the embedded
// gofakes3 does not).
type target struct {
	m       security.Material
	brokers []string
	natsURL string
	s3      string
	realS3  bool
	sfx     string // unique suffix of the test's names
}

// targets returns the embedded secure stack and, when the real services
// are configured (FFC_REQUIRE_REAL=1 or FFC_KAFKA_BROKERS set), a private
// secure instance of them: deploy/local/services.sh with FFC_SECURE=1 on
// free ports, stopped and purged at the end.
func targets(t *testing.T) map[string]func(*testing.T) target {
	out := map[string]func(*testing.T) target{"embedded": embeddedTarget}
	if os.Getenv("FFC_REQUIRE_REAL") == "1" || os.Getenv("FFC_KAFKA_BROKERS") != "" {
		out["real"] = realTarget
	}
	return out
}

func suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func embeddedTarget(t *testing.T) target {
	t.Helper()
	m := security.Material{Dir: filepath.Join(t.TempDir(), "secure")}
	if err := m.Generate(); err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Start(embedded.StackOptions{Secure: &embedded.Secure{Material: m}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return target{m: m, brokers: st.Kafka.Brokers(), natsURL: st.NATS.URL(), s3: st.S3.Endpoint(), sfx: suffix()}
}

// realTarget starts (once per test) a private secure instance of the
// real services.
func realTarget(t *testing.T) target {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "services")
	set := map[string]string{"FFC_SECURE": "1", "FFC_SERVICES_DIR": dir,
		"FFC_KAFKA_PORT": strconv.Itoa(ports[0]), "FFC_KAFKA_CONTROLLER_PORT": strconv.Itoa(ports[1]),
		"FFC_NATS_PORT": strconv.Itoa(ports[2]), "FFC_NATS_MONITOR_PORT": strconv.Itoa(ports[3]),
		"FFC_MINIO_PORT": strconv.Itoa(ports[4]), "FFC_MINIO_CONSOLE_PORT": strconv.Itoa(ports[5])}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); set[k] == "" && !strings.HasPrefix(k, "FFC_S3_") {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	script := filepath.Join(root, "deploy", "local", "services.sh")
	sh := func(ctx context.Context, args ...string) error {
		cmd := exec.CommandContext(ctx, script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("services.sh %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	t.Cleanup(func() {
		if err := sh(context.Background(), "down", "--purge"); err != nil {
			t.Error(err)
		}
	})
	if err := sh(testutil.Context(t), "up"); err != nil {
		t.Fatal(err)
	}
	return target{m: security.Material{Dir: filepath.Join(dir, "secure")}, brokers: []string{"127.0.0.1:" + set["FFC_KAFKA_PORT"]},
		natsURL: "tls://127.0.0.1:" + set["FFC_NATS_PORT"], s3: "127.0.0.1:" + set["FFC_MINIO_PORT"], realS3: true, sfx: suffix()}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freePorts returns n loopback ports nothing listens on.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
