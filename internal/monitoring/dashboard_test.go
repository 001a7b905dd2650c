package monitoring

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/ffc-stream/ffc/internal/testutil"
	"github.com/ffc-stream/ffc/producers"
	"github.com/ffc-stream/ffc/trainers"
	"github.com/ffc-stream/ffc/trainers/settings"
)

// deployDir is deploy/monitoring, from this package's folder.
const deployDir = "../../deploy/monitoring"

// tool returns the path of a Prometheus binary; without it the test is
// skipped, or fails under FFC_REQUIRE_REAL=1.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("FFC_REQUIRE_REAL") == "1" {
		t.Fatalf("FFC_REQUIRE_REAL=1 but %s is not installed (apt-get install prometheus): %v", name, err)
	}
	t.Skipf("%s not installed (apt-get install prometheus): %v", name, err)
	return ""
}

// names is a Registerer that records the names of the series registered
// on it, whether or not they have a sample yet.
type names map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n names) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var err error
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			err = errors.Join(err, errors.New("no name in "+d.String()))
			continue
		}
		n[m[1]] = true
	}
	return err
}

func (n names) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := n.Register(c); err != nil {
			panic(err)
		}
	}
}

func (n names) Unregister(prometheus.Collector) bool { return false }

// registered are the series names the trainer and the producer register
// when they are created (before they connect to anything).
func registered(t *testing.T) names {
	t.Helper()
	n := names{}
	if _, err := trainers.New(trainers.Config{Brokers: []string{"localhost:9092"}, Model: "m", Backend: nil, S3: &minio.Client{}, Bucket: "b",
		Settings: settings.Defaults(settings.Streaming), Registry: n, ConsumeOnly: true}); err != nil {
		t.Fatalf("trainer: %v", err)
	}
	if _, err := producers.New(producers.Config{Brokers: []string{"localhost:9092"}, S3: &minio.Client{}, Bucket: "b", Registry: n}); err != nil {
		t.Fatalf("producer: %v", err)
	}
	return n
}

// dashboard is what the test reads of the Grafana dashboard.
type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

var metricName = regexp.MustCompile(`\bffc_[a-z0-9_]+`)

// TestDashboardUsesRegisteredSeries: every ffc_* series the dashboard's
// PromQL names (a histogram's _bucket, _sum, _count included) is one the
// trainer or the producer registers, and the dashboard shows the series
// the pipeline is watched by.
func TestDashboardUsesRegisteredSeries(t *testing.T) {
	reg := registered(t)
	for _, must := range []string{"ffc_trainer_consumer_lag", "ffc_trainer_checkpoint_age_seconds", "ffc_trainer_step_seconds", "ffc_producer_lag_messages"} {
		if !reg[must] {
			t.Fatalf("%s is not registered: the recorder misses series (%d seen)", must, len(reg))
		}
	}
	d := readDashboard(t)
	used := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			found := metricName.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: %q names no ffc series", p.Title, tg.Expr)
			}
			for _, name := range found {
				base := name
				for _, sfx := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, sfx); ok && reg[b] && !reg[name] {
						base = b
					}
				}
				if !reg[base] {
					t.Errorf("panel %q: %s is registered by neither the trainer nor the producer", p.Title, name)
				}
				used[base] = true
			}
		}
	}
	for _, want := range []string{"ffc_trainer_loss", "ffc_trainer_samples_total", "ffc_trainer_pool_labels", "ffc_trainer_consumer_lag",
		"ffc_trainer_step_seconds", "ffc_trainer_freshness_seconds", "ffc_trainer_dead_letters_total", "ffc_trainer_checkpoint_age_seconds",
		"ffc_producer_lag_messages"} {
		if !used[want] {
			t.Errorf("the dashboard shows no %s", want)
		}
	}
}

// TestDashboardPromQL: each query of the dashboard parses (promtool check
// rules, on a recording rule per query; Grafana's $__rate_interval given
// as 1m and the job variables as a regexp).
func TestDashboardPromQL(t *testing.T) {
	promtool := tool(t, "promtool")
	d := readDashboard(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	r := strings.NewReplacer("$__rate_interval", "1m", "$trainer_job", ".*", "$producer_job", ".*")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr, err := json.Marshal(r.Replace(tg.Expr)) // a JSON string is a YAML string
			if err != nil {
				t.Fatal(err)
			}
			n++
			rules.WriteString("      - record: ffc:dashboard_query_" + strconv.Itoa(n) + "\n        expr: " + string(expr) + "\n")
			if strings.Contains(r.Replace(tg.Expr), "$") {
				t.Errorf("panel %q: %q uses a variable the test does not know", p.Title, tg.Expr)
			}
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(testutil.Context(t), promtool, "check", "rules", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS: "+strconv.Itoa(n)+" rules found") {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, rules.String())
	}
}

// TestScrapeConfigs: the Prometheus configurations pass promtool check
// config. prometheus-k8s.yml uses Kubernetes discovery, which Debian's
// build leaves out: there it is only parsed as YAML with its job.
func TestScrapeConfigs(t *testing.T) {
	promtool := tool(t, "promtool")
	for _, name := range []string{"prometheus.yml", "prometheus-k8s.yml"} {
		f := filepath.Join(deployDir, name)
		out, err := exec.CommandContext(testutil.Context(t), promtool, "check", "config", f).CombinedOutput()
		switch {
		case err == nil:
			if !strings.Contains(string(out), "SUCCESS") {
				t.Errorf("promtool check config %s: %s", name, out)
			}
		case name == "prometheus-k8s.yml" && strings.Contains(string(out), "field kubernetes_sd_configs not found"):
			t.Logf("%s: this promtool has no Kubernetes discovery (%s); checking the YAML only", name, strings.TrimSpace(string(out)))
			checkK8sConfig(t, f)
		default:
			t.Errorf("promtool check config %s: %v\n%s", name, err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(deployDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{`"producer:9464"`, `"trainer:9464"`} { // deploy/compose's --metrics-addr
		if !strings.Contains(string(b), target) {
			t.Errorf("prometheus.yml does not scrape %s", target)
		}
	}
}

// relabel is what the test reads of a relabelling rule.
type relabel struct {
	SourceLabels []string `yaml:"source_labels"`
	Action       string   `yaml:"action"`
	Regex        string   `yaml:"regex"`
}

// checkK8sConfig checks what it can of the Kubernetes configuration
// without Kubernetes discovery: YAML whose one job discovers the pods of
// the namespace ffc and keeps those annotated for scraping.
func checkK8sConfig(t *testing.T, f string) {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
			SD      []struct {
				Role       string `yaml:"role"`
				Namespaces struct {
					Names []string `yaml:"names"`
				} `yaml:"namespaces"`
			} `yaml:"kubernetes_sd_configs"`
			Relabel []relabel `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	if len(c.ScrapeConfigs) != 1 || len(c.ScrapeConfigs[0].SD) != 1 {
		t.Fatalf("%s: %+v, want one job with one Kubernetes discovery", f, c)
	}
	job := c.ScrapeConfigs[0]
	if sd := job.SD[0]; sd.Role != "pod" || !slices.Equal(sd.Namespaces.Names, []string{"ffc"}) {
		t.Errorf("%s: discovery %+v, want the pods of the namespace ffc", f, sd)
	}
	if !slices.ContainsFunc(job.Relabel, func(r relabel) bool {
		return r.Action == "keep" && r.Regex == "true" && slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_annotation_prometheus_io_scrape"})
	}) {
		t.Errorf("%s: no keep on the annotation prometheus.io/scrape: \"true\"", f)
	}
}
