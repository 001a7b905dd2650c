package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ffc-stream/ffc/internal/testutil"
)

// dashboardCharts are the charts the page must draw with data during a
// demo run.
var dashboardCharts = []string{"loss", "samples", "pool", "lag", "freshness", "dead_letters", "checkpoint_age"}

// chromium returns the headless browser to drive: $FFC_CHROMIUM, else the
// first of the usual names on PATH ("" when none).
func chromium() string {
	if p := os.Getenv("FFC_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestDashboardInChromium runs the demo on the embedded stack until a real
// headless Chromium has drawn every chart of its dashboard with data, saves
// a screenshot (in the test's folder, and in $FFC_ARTIFACTS_DIR when set),
// then interrupts the demo, whose dashboard and metrics server must stop
// without error. Skipped without a Chromium, except under
// FFC_REQUIRE_REAL=1 (CI).
func TestDashboardInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		if os.Getenv("FFC_REQUIRE_REAL") == "1" {
			t.Fatal("FFC_REQUIRE_REAL=1 but no chromium on PATH (apt-get install chromium, or set FFC_CHROMIUM)")
		}
		t.Skip("no chromium on PATH (apt-get install chromium, or set FFC_CHROMIUM)")
	}
	url, stop := startDemoForDashboard(t)
	shot := watchDashboard(t, bin, url)
	paths := []string{filepath.Join(t.TempDir(), "dashboard.png")}
	if dir := os.Getenv("FFC_ARTIFACTS_DIR"); dir != "" {
		paths = append(paths, filepath.Join(dir, "dashboard.png"))
	}
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	stop()
}

// startDemoForDashboard starts 'ffc demo --follow' in-process and returns
// the dashboard's URL, read from its progress on stderr, and a function
// that interrupts the demo and waits for it to end.
func startDemoForDashboard(t *testing.T) (string, func()) {
	t.Helper()
	for _, k := range realEnv {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
	// --new-at 0: the new IDs stream in at once, so that freshness has
	// points; --checkpoint-every 5: a checkpoint early.
	args := []string{"demo", "--json", "--follow", "--synthetic", "--synthetic-ids", "200", "--backbone", "mlp", "--new-ids", "5", "--new-at", "0",
		"--remove-ids", "0", "--checkpoint-every", "5", "--data-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:0", "--log-level", "warn"}
	var out, errb syncBuffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	ctx, cancel := context.WithCancel(testutil.Context(t))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		err := <-done
		// Ctrl-C stops the stages in order, the embedded servers last:
		// the trainer's final checkpoint reaches them, and the summary
		// of what ran is written.
		if err != nil {
			t.Errorf("demo interrupted: %v\n%s", err, errb.String())
			return
		}
		var sum demoSummary
		if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
			t.Errorf("summary after the interrupt: %v\n%s", err, out.String())
		} else if sum.Checkpoints == 0 || sum.Steps == 0 {
			t.Errorf("summary after the interrupt: %d steps, %d checkpoints; want the final checkpoint", sum.Steps, sum.Checkpoints)
		}
	}
	t.Cleanup(stop)
	re := regexp.MustCompile(`demo: live dashboard on (http://\S+/) `)
	var url string
	testutil.WaitFor(t, "the dashboard's address on the demo's stderr", func() error {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("demo ended before serving its dashboard: %v\n%s", err, errb.String())
		default:
		}
		m := re.FindStringSubmatch(errb.String())
		if m == nil {
			return errors.New("not printed yet")
		}
		url = m[1]
		return nil
	})
	return url, stop
}

// chartState is what the page shows of one chart.
type chartState struct {
	Points    int `json:"points"`
	Longest   int `json:"longest"` // points of the longest line
	Polylines int `json:"polylines"`
}

// nextState is a promise of the page's state after its next update (or
// after 5 s without one): its own report (#status) and the drawing itself
// (the polylines of each chart).
const nextState = `new Promise(resolve => {
	const st = document.getElementById('status');
	const state = () => JSON.stringify({status: st.textContent,
		charts: Object.fromEntries([...document.querySelectorAll('section.chart')].map(s =>
			[s.dataset.chart, {points: Number(s.dataset.points), longest: Number(s.dataset.longest),
				polylines: s.querySelectorAll('svg polyline').length}]))});
	const o = new MutationObserver(() => { o.disconnect(); resolve(state()); });
	o.observe(st, {childList: true, characterData: true, subtree: true});
	setTimeout(() => { o.disconnect(); resolve(state()); }, 5000);
})`

// watchDashboard opens url in headless Chromium, waits until every chart
// of dashboardCharts has drawn points, and returns a PNG of the page.
func watchDashboard(t *testing.T, bin, url string) []byte {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.WindowSize(1400, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(testutil.Context(t), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("chromium: open %s: %v", url, err)
	}
	var last string
	testutil.WaitFor(t, "every chart of the dashboard drawn with data", func() error {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](nextState, chromedp.EvalAwaitPromise))
		if err != nil {
			return fmt.Errorf("chromium: %w", err)
		}
		last = got
		return chartsDrawn(got)
	})
	t.Logf("dashboard: %s", last)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil || len(shot) < 8 || string(shot[1:4]) != "PNG" {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(shot))
	}
	if err := chromedp.Cancel(ctx); err != nil {
		t.Errorf("closing chromium: %v", err)
	}
	return shot
}

// chartsDrawn checks the page's state: no fetch error, and every chart
// with a line of two points at least, both in its own report and drawn.
func chartsDrawn(probe string) error {
	var p struct {
		Status string                `json:"status"`
		Charts map[string]chartState `json:"charts"`
	}
	if err := json.Unmarshal([]byte(probe), &p); err != nil {
		return fmt.Errorf("page state %q: %w", probe, err)
	}
	var status struct {
		Polls  int            `json:"polls"`
		Error  string         `json:"error"`
		Charts map[string]int `json:"charts"`
	}
	if err := json.Unmarshal([]byte(p.Status), &status); err != nil {
		return fmt.Errorf("#status %q: %w", p.Status, err)
	}
	if status.Error != "" {
		return fmt.Errorf("the page reports %q", status.Error)
	}
	var missing []string
	for _, id := range dashboardCharts {
		c := p.Charts[id]
		if c.Longest < 2 || c.Polylines == 0 || status.Charts[id] != c.Points {
			missing = append(missing, fmt.Sprintf("%s %+v (status %d)", id, c, status.Charts[id]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("after %d polls, charts without data: %s", status.Polls, strings.Join(missing, "; "))
	}
	return nil
}
