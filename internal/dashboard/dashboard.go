// Package dashboard owns the live dashboard page of the commands: a
// sampler that reads the Prometheus registry the trainer and the producer
// fill (ffc_trainer_*, ffc_producer_*) every interval into a short ring of
// chart points, and the HTTP handler that serves the embedded page (/),
// its script and style (/dashboard/...) and those points as JSON
// (/dashboard/api/series). The metrics server (internal/metricsrv) mounts
// the handler next to /metrics.
//
// A series the registry lacks (an older trainer, a producer alone) leaves
// its chart empty; it never fails the page.
//
// It imports nothing of the pipeline.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ffc-stream/ffc/internal/stage"
)

//go:embed web
var webFS embed.FS

// Options configures a Dashboard.
type Options struct {
	// Gatherer is the registry the charts read.
	Gatherer prometheus.Gatherer
	// Interval between samples (default 1 s); the page polls as often.
	Interval time.Duration
	// Keep is how many samples the ring holds (default 600: ten minutes
	// at 1 s), so that a page opened late has history.
	Keep int
	Log  *slog.Logger
}

// Dashboard samples the registry while Run runs and serves the page.
type Dashboard struct {
	stage.Lifecycle
	opts Options
	mux  *http.ServeMux

	mu    sync.Mutex
	ring  []snapshot // oldest first once full: ring[next:] then ring[:next]
	next  int
	prev  map[string]map[string]float64 // raw counters of the rate charts
	prevT time.Time
}

// snapshot is one sample: chart id → line → value.
type snapshot struct {
	t    time.Time
	vals map[string]map[string]float64
}

// New validates opts; it samples nothing until Run.
func New(opts Options) (*Dashboard, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("dashboard: no gatherer")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Keep <= 0 {
		opts.Keep = 600
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{opts: opts, prev: map[string]map[string]float64{}}
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	d.mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard/", http.FileServerFS(static)))
	d.mux.HandleFunc("GET /dashboard/api/series", d.serveSeries)
	return d, nil
}

// ServeHTTP serves the page, its assets and the series.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.mux.ServeHTTP(w, r) }

// Run samples the registry every interval until ctx ends; it is ready
// after the first sample.
func (d *Dashboard) Run(ctx context.Context) error {
	ctx, end, err := d.Begin(ctx)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	defer end()
	d.sampleLogged(time.Now())
	d.SetReady()
	tick := time.NewTicker(d.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			d.sampleLogged(now)
		}
	}
}

// Close stops Run and waits for it.
func (d *Dashboard) Close() error {
	d.Stop()
	return nil
}

func (d *Dashboard) sampleLogged(now time.Time) {
	if err := d.sample(now); err != nil {
		d.opts.Log.Warn("dashboard: gathering the metrics", "err", err)
	}
}

// sample gathers the registry once and appends a snapshot to the ring. A
// partial gathering (one collector failing) still records what it got.
func (d *Dashboard) sample(now time.Time) error {
	fams, gerr := d.opts.Gatherer.Gather()
	m := index(fams)
	vals := make(map[string]map[string]float64, len(charts))
	d.mu.Lock()
	defer d.mu.Unlock()
	dt := now.Sub(d.prevT).Seconds()
	for _, c := range charts {
		lines := c.extract(m, now)
		if c.rate {
			raw := lines
			lines = rates(d.prev[c.id], raw, dt, !d.prevT.IsZero())
			d.prev[c.id] = raw
		}
		for k, v := range lines {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				delete(lines, k)
			}
		}
		vals[c.id] = lines
	}
	d.prevT = now
	s := snapshot{t: now, vals: vals}
	if len(d.ring) < d.opts.Keep {
		d.ring = append(d.ring, s)
	} else {
		d.ring[d.next] = s
		d.next = (d.next + 1) % d.opts.Keep
	}
	return gerr
}

// rates turns counters into per-second rates against the previous sample;
// a counter seen for the first time or reset gives no point.
func rates(prev, cur map[string]float64, dt float64, havePrev bool) map[string]float64 {
	out := map[string]float64{}
	if !havePrev || dt <= 0 {
		return out
	}
	for k, v := range cur {
		if p, ok := prev[k]; ok && v >= p {
			out[k] = (v - p) / dt
		}
	}
	return out
}

// Series is what /dashboard/api/series returns.
type Series struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	// WindowSeconds is how far back the ring goes: the page keeps as much.
	WindowSeconds float64 `json:"window_seconds"`
	// Now is the time of the latest sample (unix ms); the page asks for
	// the points after it next (?since=).
	Now    int64   `json:"now"`
	Charts []Chart `json:"charts"`
}

// Chart is one chart's points, line by line, in the order of the page.
type Chart struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Unit  string `json:"unit"`
	Help  string `json:"help"`
	Lines []Line `json:"lines"`
}

// Line is one line of a chart: [unix ms, value] points, oldest first.
type Line struct {
	Name   string       `json:"name"`
	Points [][2]float64 `json:"points"`
}

// Series returns the samples after since (unix ms; 0: all the ring holds).
func (d *Dashboard) Series(since int64) Series {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := Series{IntervalSeconds: d.opts.Interval.Seconds(), WindowSeconds: d.opts.Interval.Seconds() * float64(d.opts.Keep), Now: since}
	ordered := append(append([]snapshot(nil), d.ring[d.next:]...), d.ring[:d.next]...)
	for _, c := range charts {
		ch := Chart{ID: c.id, Title: c.title, Unit: c.unit, Help: c.help, Lines: []Line{}}
		at := map[string]int{}
		for _, s := range ordered {
			ms := s.t.UnixMilli()
			if ms <= since {
				continue
			}
			for _, name := range sortedKeys(s.vals[c.id]) {
				i, ok := at[name]
				if !ok {
					i = len(ch.Lines)
					at[name] = i
					ch.Lines = append(ch.Lines, Line{Name: name})
				}
				ch.Lines[i].Points = append(ch.Lines[i].Points, [2]float64{float64(ms), s.vals[c.id][name]})
			}
		}
		out.Charts = append(out.Charts, ch)
	}
	if n := len(ordered); n > 0 && ordered[n-1].t.UnixMilli() > since {
		out.Now = ordered[n-1].t.UnixMilli()
	}
	return out
}

func (d *Dashboard) serveSeries(w http.ResponseWriter, r *http.Request) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			http.Error(w, "since: not a unix time in ms", http.StatusBadRequest)
			return
		}
		since = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(d.Series(since)); err != nil {
		d.opts.Log.Debug("dashboard: writing the series", "err", err)
	}
}
