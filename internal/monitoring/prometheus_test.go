package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// TestPrometheusScrapesTrainer: a trainer on the embedded stack serves
// /metrics as `ffc train --metrics-addr` does; a real Prometheus scraping
// it every second answers queries for its consumer lag per partition,
// its step-time histogram and its checkpoint age (which agrees with the
// time of its last checkpoint).
func TestPrometheusScrapesTrainer(t *testing.T) {
	bin := tool(t, "prometheus")
	metrics := startTrainer(t)
	api := startPrometheus(t, bin, metrics)
	for _, q := range []struct {
		query string
		ok    func(labels map[string]string, v float64) bool
	}{
		{"ffc_trainer_consumer_lag", func(l map[string]string, v float64) bool { return l["partition"] != "" && l["topic"] != "" && v >= 0 }},
		{"ffc_trainer_step_seconds_count", func(_ map[string]string, v float64) bool { return v >= 2 }},
		{`ffc_trainer_step_seconds_bucket{le="+Inf"}`, func(_ map[string]string, v float64) bool { return v >= 2 }},
		{"ffc_trainer_checkpoint_age_seconds", func(_ map[string]string, v float64) bool { return v >= 0 }},
		// The age agrees with the time of the last checkpoint (a scrape
		// interval apart, give or take a busy machine).
		{"abs(ffc_trainer_checkpoint_age_seconds - (time() - ffc_trainer_checkpoint_unix_seconds)) < 5 and ffc_trainer_checkpoint_unix_seconds > 0",
			func(_ map[string]string, v float64) bool { return v < 5 }},
	} {
		api.waitResult(t, q.query, q.ok)
	}
}

// promAPI is a running Prometheus.
type promAPI struct {
	base   string
	exited <-chan struct{}
	out    *syncBuffer
}

// startPrometheus runs bin on a free loopback port, scraping metrics (a
// host:port) every second, until the test ends, and waits until it is
// ready.
func startPrometheus(t *testing.T, bin, metrics string) *promAPI {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ffc-trainer\n    static_configs:\n      - targets: [%q]\n", metrics)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testutil.ClosedAddr(t)
	out := &syncBuffer{}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	p := &promAPI{base: "http://" + addr, exited: exited, out: out}
	p.poll(t, "Prometheus ready", func() error {
		res, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", res.Status)
		}
		return nil
	})
	return p
}

// poll waits (testutil.WaitFor) until check returns nil; it fails the
// test at once when Prometheus exits.
func (p *promAPI) poll(t *testing.T, what string, check func() error) {
	t.Helper()
	testutil.WaitFor(t, what, func() error {
		select {
		case <-p.exited:
			t.Fatalf("prometheus exited while waiting for %s:\n%s", what, p.out.String())
		default:
		}
		return check()
	})
}

// waitResult queries /api/v1/query until a sample of query satisfies ok.
func (p *promAPI) waitResult(t *testing.T, query string, ok func(map[string]string, float64) bool) {
	t.Helper()
	p.poll(t, "a result of "+query, func() error {
		res, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(query))
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var body struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			return fmt.Errorf("%s: %w", res.Status, err)
		}
		if body.Status != "success" {
			return fmt.Errorf("%s: %s", body.Status, body.Error)
		}
		for _, r := range body.Data.Result {
			s, _ := r.Value[1].(string)
			v, err := strconv.ParseFloat(s, 64)
			if err == nil && ok(r.Metric, v) {
				t.Logf("%s: %v = %v", query, r.Metric, v)
				return nil
			}
		}
		return fmt.Errorf("no matching sample in %+v", body.Data.Result)
	})
}

// syncBuffer is a bytes.Buffer for a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
