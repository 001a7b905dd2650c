package metricsrv

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ffc-stream/ffc/internal/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServesAndStops(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(3)
	s, err := New(Options{Addr: "127.0.0.1:0", Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	if err := stage.WaitReady(context.Background(), "metrics", s, done); err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := cl.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(b), "ffc_test_total 3") {
		t.Errorf("/metrics lacks the counter:\n%s", b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := cl.Get("http://" + s.Addr() + "/metrics"); err == nil {
		t.Error("still serving after Close")
	}
}

func TestErrors(t *testing.T) {
	if _, err := New(Options{Gatherer: prometheus.NewRegistry()}); err == nil {
		t.Error("no address accepted")
	}
	if _, err := New(Options{Addr: ":0"}); err == nil {
		t.Error("no gatherer accepted")
	}
	s, err := New(Options{Addr: "256.0.0.1:1", Gatherer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Run on a bad address: %v", err)
	}
}

// TestReadyz serves the health conditions: 503 while one fails, 200 once
// it recovers, as JSON.
func TestReadyz(t *testing.T) {
	h := &stage.Health{}
	h.Set("storage", false, "bucket unreachable")
	s, err := New(Options{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), Health: []*stage.Health{h}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	defer func() { s.Close(); <-done }()
	if err := stage.WaitReady(context.Background(), "metrics", s, done); err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (int, bool, []stage.Condition) {
		res, err := cl.Get("http://" + s.Addr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Ready      bool              `json:"ready"`
			Conditions []stage.Condition `json:"conditions"`
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, body.Ready, body.Conditions
	}
	if code, ready, conds := get(); code != http.StatusServiceUnavailable || ready || len(conds) != 1 || conds[0].Reason != "bucket unreachable" {
		t.Errorf("failing: %d %v %+v", code, ready, conds)
	}
	if !h.Set("storage", true, "") || h.Set("storage", true, "") {
		t.Error("Set reports a change only when the state changes")
	}
	if code, ready, _ := get(); code != http.StatusOK || !ready {
		t.Errorf("recovered: %d %v", code, ready)
	}
}

// TestExtraHandler: Options.Handler serves the other paths; /metrics and
// /readyz stay the server's own.
func TestExtraHandler(t *testing.T) {
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "extra "+r.URL.Path)
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_test_total", Help: "A test counter."}))
	s, err := New(Options{Addr: "127.0.0.1:0", Gatherer: reg, Handler: extra})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	defer func() { s.Close(); <-done }()
	if err := stage.WaitReady(context.Background(), "metrics", s, done); err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for path, want := range map[string]string{"/": "extra /", "/dashboard/x": "extra /dashboard/x", "/readyz": `"ready":true`, "/metrics": "ffc_test_total 0"} {
		res, err := cl.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: %q, want %q", path, b, want)
		}
	}
}
