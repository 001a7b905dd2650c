package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/ffc-stream/ffc/internal/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// trainerLike registers the trainer's series the charts read, as
// trainers/metrics.go names them.
type trainerLike struct {
	steps    prometheus.Counter
	loss     prometheus.Gauge
	samples  *prometheus.CounterVec
	pool     prometheus.Gauge
	fresh    prometheus.Histogram
	dead     *prometheus.CounterVec
	ckptUnix prometheus.Gauge
}

func newTrainerLike(t *testing.T, reg *prometheus.Registry) *trainerLike {
	t.Helper()
	m := &trainerLike{
		steps:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ffc_trainer_steps_total", Help: "h"}),
		loss:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_loss", Help: "h"}),
		samples:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_trainer_samples_total", Help: "h"}, []string{"topic"}),
		pool:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_pool_labels", Help: "h"}),
		fresh:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ffc_trainer_freshness_seconds", Help: "h", Buckets: []float64{0.5, 1, 2, 5}}),
		dead:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ffc_trainer_dead_letters_total", Help: "h"}, []string{"reason"}),
		ckptUnix: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_checkpoint_unix_seconds", Help: "h"}),
	}
	reg.MustRegister(m.steps, m.loss, m.samples, m.pool, m.fresh, m.dead, m.ckptUnix)
	return m
}

func mustNew(t *testing.T, opts Options) *Dashboard {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// chart returns the chart id of s, failing when it is missing.
func chart(t *testing.T, s Series, id string) Chart {
	t.Helper()
	for _, c := range s.Charts {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no chart %q in %+v", id, s)
	return Chart{}
}

// lines returns name → values of a chart.
func lines(c Chart) map[string][]float64 {
	out := map[string][]float64{}
	for _, l := range c.Lines {
		for _, p := range l.Points {
			out[l.Name] = append(out[l.Name], p[1])
		}
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestChartsFromTheTrainerSeries: every chart reads its series; counters
// become rates, the loss waits for the first step, the checkpoint's time
// becomes an age, and a missing series (consumer lag) leaves its chart
// empty without failing.
func TestChartsFromTheTrainerSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTrainerLike(t, reg)
	d := mustNew(t, Options{Gatherer: reg})
	t0 := time.Unix(1_700_000_000, 0)
	m.samples.WithLabelValues("byid").Add(100)
	m.pool.Set(7)
	if err := d.sample(t0); err != nil {
		t.Fatal(err)
	}
	m.steps.Add(3)
	m.loss.Set(2.5)
	m.samples.WithLabelValues("byid").Add(40)
	m.samples.WithLabelValues("instance").Add(10) // new: no rate yet
	m.pool.Set(9)
	m.fresh.Observe(0.7)
	m.fresh.Observe(1.5)
	m.dead.WithLabelValues("decode").Add(2)
	m.ckptUnix.Set(float64(t0.Unix()))
	if err := d.sample(t0.Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s := d.Series(0)
	if len(s.Charts) != len(charts) || s.Now != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("series: %d charts, now %d", len(s.Charts), s.Now)
	}
	if got := lines(chart(t, s, "loss")); len(got) != 1 || len(got["loss"]) != 1 || got["loss"][0] != 2.5 {
		t.Errorf("loss %v, want one point 2.5 (none before the first step)", got)
	}
	if got := lines(chart(t, s, "samples")); len(got) != 2 || !near(got["byid"][0], 20) || !near(got["total"][0], 25) || len(got["total"]) != 1 {
		t.Errorf("samples/s %v, want byid at 40/2 s, total at 50/2 s, instance not yet", got)
	}
	if got := lines(chart(t, s, "pool")); len(got["labels"]) != 2 || got["labels"][0] != 7 || got["labels"][1] != 9 {
		t.Errorf("pool %v, want 7 then 9", got)
	}
	if c := chart(t, s, "lag"); len(c.Lines) != 0 {
		t.Errorf("lag %+v without a lag series, want no line", c.Lines)
	}
	if got := lines(chart(t, s, "freshness")); len(got["p50"]) != 1 || !(0.5 <= got["p50"][0] && got["p50"][0] <= 1) || !(1 <= got["p99"][0] && got["p99"][0] <= 2) {
		t.Errorf("freshness %v, want p50 in (0.5, 1], p99 in (1, 2]", got)
	}
	if got := lines(chart(t, s, "dead_letters")); len(got["total"]) != 2 || got["total"][0] != 0 || got["total"][1] != 2 || got["trainer decode"][0] != 2 {
		t.Errorf("dead letters %v, want total 0 then 2, and the decode reason", got)
	}
	if got := lines(chart(t, s, "checkpoint_age")); len(got["age"]) != 1 || !near(got["age"][0], 2) {
		t.Errorf("checkpoint age %v, want one point of 2 s", got)
	}
	if c := chart(t, s, "samples"); c.Lines[0].Name != "total" {
		t.Errorf("samples lines %+v, want total first", c.Lines)
	}
}

// TestNewerSeriesPreferred: the trainer's consumer lag per partition and
// its checkpoint age gauge replace the producer's lag and the computed
// age when the registry has them.
func TestNewerSeriesPreferred(t *testing.T) {
	reg := prometheus.NewRegistry()
	plag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ffc_producer_lag_messages", Help: "h", ConstLabels: prometheus.Labels{"shard": "0/1"}}, []string{"topic"})
	plag.WithLabelValues("byid").Set(12)
	ckpt := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_checkpoint_unix_seconds", Help: "h"})
	ckpt.Set(1000)
	reg.MustRegister(plag, ckpt)
	d := mustNew(t, Options{Gatherer: reg})
	now := time.Unix(1010, 0)
	if err := d.sample(now); err != nil {
		t.Fatal(err)
	}
	s := d.Series(0)
	if got := lines(chart(t, s, "lag")); len(got) != 1 || got["byid (producer)"][0] != 12 {
		t.Errorf("lag %v, want the producer's byid lag", got)
	}
	if got := lines(chart(t, s, "checkpoint_age")); got["age"][0] != 10 {
		t.Errorf("age %v, want 10 s from the checkpoint's time", got)
	}
	clag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ffc_trainer_consumer_lag", Help: "h"}, []string{"topic", "partition"})
	clag.WithLabelValues("byid", "0").Set(3)
	clag.WithLabelValues("byid", "1").Set(4)
	age := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_checkpoint_age_seconds", Help: "h"})
	age.Set(4.5)
	reg.MustRegister(clag, age)
	if err := d.sample(now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	s = d.Series(now.UnixMilli())
	if got := lines(chart(t, s, "lag")); len(got) != 2 || got["byid/0"][0] != 3 || got["byid/1"][0] != 4 {
		t.Errorf("lag %v, want the trainer's lag per partition", got)
	}
	if got := lines(chart(t, s, "checkpoint_age")); len(got["age"]) != 1 || got["age"][0] != 4.5 {
		t.Errorf("age %v, want the age gauge", got)
	}
}

// TestRingAndSince: the ring keeps the last Keep samples, oldest first,
// and since returns only the newer ones.
func TestRingAndSince(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ffc_trainer_pool_labels", Help: "h"})
	reg.MustRegister(g)
	d := mustNew(t, Options{Gatherer: reg, Keep: 3})
	t0 := time.Unix(2000, 0)
	for i := range 5 {
		g.Set(float64(i))
		if err := d.sample(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if got := lines(chart(t, d.Series(0), "pool"))["labels"]; len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Errorf("ring %v, want 2, 3, 4", got)
	}
	s := d.Series(t0.Add(3 * time.Second).UnixMilli())
	if got := lines(chart(t, s, "pool"))["labels"]; len(got) != 1 || got[0] != 4 || s.Now != t0.Add(4*time.Second).UnixMilli() {
		t.Errorf("since the 4th sample: %v (now %d), want 4 only", got, s.Now)
	}
	if s := d.Series(s.Now); len(chart(t, s, "pool").Lines) != 0 || s.Now != t0.Add(4*time.Second).UnixMilli() {
		t.Errorf("nothing newer: %+v", s)
	}
	if s.WindowSeconds != 3 || s.IntervalSeconds != 1 {
		t.Errorf("window %v s, interval %v s, want 3 and 1", s.WindowSeconds, s.IntervalSeconds)
	}
}

func TestQuantile(t *testing.T) {
	b := func(ub float64, n uint64) *dto.Bucket { return &dto.Bucket{UpperBound: &ub, CumulativeCount: &n} }
	n := uint64(10)
	h := &dto.Histogram{SampleCount: &n, Bucket: []*dto.Bucket{b(1, 0), b(2, 5), b(4, 10), b(math.Inf(1), 10)}}
	if q := quantile(0.5, h); q != 2 {
		t.Errorf("p50 %v, want 2", q)
	}
	if q := quantile(0.75, h); q != 3 {
		t.Errorf("p75 %v, want 3 (halfway in (2, 4])", q)
	}
	n2 := uint64(4)
	past := &dto.Histogram{SampleCount: &n2, Bucket: []*dto.Bucket{b(1, 1), b(math.Inf(1), 4)}}
	if q := quantile(0.99, past); q != 1 {
		t.Errorf("p99 past the last bound %v, want that bound", q)
	}
}

// TestServes: the page, its script and the series over HTTP; a bad since
// is refused and other paths are not found.
func TestServes(t *testing.T) {
	reg := prometheus.NewRegistry()
	newTrainerLike(t, reg).pool.Set(5)
	d := mustNew(t, Options{Gatherer: reg})
	srv := httptest.NewServer(d)
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(b)
	}
	if code, body := get("/"); code != http.StatusOK || !strings.Contains(body, `src="dashboard/app.js"`) || !strings.Contains(body, `id="status"`) {
		t.Errorf("/: %d\n%s", code, body)
	}
	if code, body := get("/dashboard/app.js"); code != http.StatusOK || !strings.Contains(body, "dashboard/api/series") {
		t.Errorf("app.js: %d", code)
	}
	if code, _ := get("/dashboard/style.css"); code != http.StatusOK {
		t.Errorf("style.css: %d", code)
	}
	if code, _ := get("/dashboard/api/series?since=soon"); code != http.StatusBadRequest {
		t.Errorf("bad since: %d, want 400", code)
	}
	if code, _ := get("/elsewhere"); code != http.StatusNotFound {
		t.Errorf("/elsewhere: %d, want 404", code)
	}
	if err := d.sample(time.Now()); err != nil {
		t.Fatal(err)
	}
	code, body := get("/dashboard/api/series")
	var s Series
	if err := json.Unmarshal([]byte(body), &s); err != nil || code != http.StatusOK {
		t.Fatalf("series: %d %v\n%s", code, err, body)
	}
	if got := lines(chart(t, s, "pool")); len(got["labels"]) != 1 || got["labels"][0] != 5 {
		t.Errorf("served pool %v, want 5", got)
	}
}

// TestRunSamplesUntilClosed: Run is ready after its first sample and
// returns on Close; an empty registry gives empty charts, no error.
func TestRunSamplesUntilClosed(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("no gatherer accepted")
	}
	d := mustNew(t, Options{Gatherer: prometheus.NewRegistry(), Interval: time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	if err := stage.WaitReady(context.Background(), "dashboard", d, done); err != nil {
		t.Fatal(err)
	}
	s := d.Series(0)
	if s.Now == 0 || len(s.Charts) != len(charts) {
		t.Errorf("after the first sample: %+v", s)
	}
	for _, c := range s.Charts {
		if len(c.Lines) != 0 {
			t.Errorf("%s: %+v from an empty registry", c.ID, c.Lines)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
