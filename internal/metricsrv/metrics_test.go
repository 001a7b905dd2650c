package metricsrv

import (
	"context"
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
