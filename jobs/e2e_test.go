package jobs_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferstack/inferstack/internal/syncbuf"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/inferstack/inferstack/consul/consultest"
	"github.com/inferstack/inferstack/grafana"
	"github.com/inferstack/inferstack/internal/promtest"
	"github.com/inferstack/inferstack/jobs"
)

// TestEndToEndDashboards is the bundle's end-to-end check: the real inference server
// registers itself in the Consul double; the real Prometheus runs with the configuration
// and rules the Nomad job renders (consul_sd_configs, production relabeling); the real
// load generator drives traffic and exposes its own metrics (registered in the double,
// as Nomad registers the loadtest job's service); then every query of every dashboard
// panel must return data from Prometheus, and every rule group must evaluate cleanly.
//
// Panels marked NeedsGPU are exempt only when the server reports no GPU (no
// gpu_memory_total_bytes in its /metrics, as on a machine without an NVIDIA driver).
func TestEndToEndDashboards(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ortLib := os.Getenv("ORT_LIB")
	if ortLib == "" {
		ortLib = filepath.Join(root, ".cache", "onnxruntime-1.24.1", "libonnxruntime.so.1")
	}
	if _, err := os.Stat(ortLib); err != nil {
		t.Skipf("ONNX Runtime library not found at %s: run `make ort`", ortLib)
	}
	if promtest.Binary() == "" {
		t.Skip("prometheus not found: run `make prometheus` (Prometheus with Consul service discovery), or set PROMETHEUS_BIN")
	}

	bin := buildBinaries(t, root)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dbl := consultest.New(t, consultest.WithMinCheckInterval(100*time.Millisecond))

	// The server, registering itself in the double.
	serverAddr := freeAddr(t)
	server := startProcess(ctx, t, "inference", filepath.Join(bin, "inference"),
		"--addr", serverAddr,
		"--model-dir", filepath.Join(root, "inference", "model", "default"),
		"--ort-lib", ortLib,
		"--execution-provider", "cpu",
		"--max-batch-size", "4",
		"--max-queue", "16",
		"--consul-addr", dbl.Addr(),
		"--service-name", "inference",
		"--shutdown-delay", "0s",
		"--drain-timeout", "5s",
	)
	serverURL := "http://" + serverAddr
	waitHTTP(t, serverURL+"/readyz", 3*time.Minute, server)
	if !dbl.WaitFor(30*time.Second, func() bool { return len(dbl.ServiceIDs()) > 0 }) {
		t.Fatalf("the server did not register in the Consul double\n%s", server.logs())
	}

	// The load generator, its metrics registered in the double as Nomad would register
	// the loadtest job's service.
	ltMetrics := freeAddr(t)
	lt := startProcess(ctx, t, "loadtest", filepath.Join(bin, "loadtest"),
		"--target", serverURL,
		"--users", "3",
		"--spawn-rate", "10",
		"--duration", "90s",
		"--weights", "basic=3,custom_length=2,rapid=1,metrics=1,stream=2",
		"--max-length", "24",
		"--stream-length", "16",
		"--metrics-addr", ltMetrics,
		"--status", "off",
	)
	host, port, _ := net.SplitHostPort(ltMetrics)
	p, _ := strconv.Atoi(port)
	cc, err := consulapi.NewClient(&consulapi.Config{Address: dbl.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cc.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
		ID: "loadtest-e2e", Name: "loadtest", Address: host, Port: p, Tags: []string{"metrics"},
	}); err != nil {
		t.Fatalf("register loadtest service: %v", err)
	}

	// Failures the load does not produce by itself: invalid requests and a client that
	// goes away mid-generation.
	provokeFailures(t, serverURL)

	// Prometheus with what the job renders for production (Consul), pointed at the double.
	prom := promtest.Start(t, renderedPrometheusConfig(t, dbl.Addr()))
	prom.WaitTargetUp(t, 60*time.Second, func(tg promtest.Target) bool { return tg.Labels["job"] == "inference" })
	prom.WaitTargetUp(t, 60*time.Second, func(tg promtest.Target) bool { return tg.Labels["job"] == "loadtest" })

	// Enough samples for rates and quantiles over the dashboards' interval.
	const rateInterval = "30s"
	for _, q := range []string{
		`sum(increase(inference_requests_total{endpoint=~"/infer|/v1/completions"}[30s])) > 5`,
		`sum(increase(loadtest_requests_total[30s])) > 5`,
		`sum(increase(inference_time_to_first_token_seconds_count[30s])) > 2`,
	} {
		if _, err := prom.WaitQuery(ctx, 90*time.Second, q, func(s []promtest.Sample) bool { return len(s) > 0 }); err != nil {
			t.Fatalf("waiting for %s: %v\nserver log:\n%s\nloadtest log:\n%s", q, err, server.logs(), lt.logs())
		}
	}

	hasGPU := metricsContain(t, serverURL+"/metrics", "gpu_memory_total_bytes")
	var empty []string
	for _, pq := range grafana.Queries() {
		expr := grafana.ExpandForTest(pq.Expr, rateInterval)
		res, err := prom.Query(ctx, expr)
		if err != nil {
			t.Errorf("%s / %s: %s: %v", pq.Dashboard, pq.Panel, expr, err)
			continue
		}
		if len(res) == 0 && !(pq.NeedsGPU && !hasGPU) {
			empty = append(empty, fmt.Sprintf("%s / %s: %s", pq.Dashboard, pq.Panel, expr))
		}
	}
	if len(empty) > 0 {
		t.Errorf("%d dashboard queries returned no data:\n  %s", len(empty), strings.Join(empty, "\n  "))
	}
	t.Logf("%d dashboard queries checked (GPU present: %v)", len(grafana.Queries()), hasGPU)

	// The alert rules load and evaluate without errors against real series.
	body := getBody(t, prom.URL+"/api/v1/rules")
	if !strings.Contains(body, `"name":"inference-alerts"`) || strings.Contains(body, `"health":"err"`) {
		t.Errorf("rule groups missing or failing: %s", body)
	}
}

// buildBinaries builds the real server and load generator into a temporary folder.
func buildBinaries(t *testing.T, root string) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./inference", "./loadtest/cmd/loadtest")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./inference ./loadtest/cmd/loadtest: %v\n%s", err, out)
	}
	return bin
}

// TestJobFlagsMatchBinaries: every flag the inference job passes, and every LOADTEST_
// variable the loadtest job sets, exists in the real binaries' -h output.
func TestJobFlagsMatchBinaries(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinaries(t, root)
	help := func(name string) string {
		out, _ := exec.Command(filepath.Join(bin, name), "-h").CombinedOutput()
		return string(out)
	}

	inferenceHelp := help("inference")
	for _, vars := range []map[string]string{nil, {"consul_token_source": "workload_identity", "model_artifact": "https://example.com/m.tgz"}} {
		j, err := jobs.Evaluate("inference.nomad.hcl", jobs.Options{Vars: vars})
		if err != nil {
			t.Fatal(err)
		}
		args := j.Task("server", "server").Get("config").Attrs["args"]
		for it := args.ElementIterator(); it.Next(); {
			_, v := it.Element()
			if a := v.AsString(); strings.HasPrefix(a, "--") && !strings.Contains(inferenceHelp, "\n  -"+strings.TrimPrefix(a, "--")+" ") {
				t.Errorf("the inference job passes %s, which `inference -h` does not list", a)
			}
		}
	}

	loadtestHelp := help("loadtest")
	j, err := jobs.Evaluate("loadtest.nomad.hcl", jobs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := j.Task("loadtest", "loadtest").Get("env").StringMap()
	if err != nil {
		t.Fatal(err)
	}
	env["LOADTEST_TARGET"] = "rendered by the discovery = \"nomad\" template"
	for k := range env {
		if strings.HasPrefix(k, "LOADTEST_") && !strings.Contains(loadtestHelp, "[$"+k+"]") {
			t.Errorf("the loadtest job sets %s, which `loadtest -h` does not list", k)
		}
	}
}

// renderedPrometheusConfig renders the Prometheus job's configuration the way Nomad
// would with service_discovery = "consul", pointed at the double, and writes its rules
// next to it. promtest writes the configuration into its own folder, so rule_files is
// made absolute; nothing else is changed.
func renderedPrometheusConfig(t *testing.T, consulAddr string) string {
	t.Helper()
	j, err := jobs.Evaluate("prometheus.nomad.hcl", jobs.Options{Vars: map[string]string{
		"service_discovery":   "consul",
		"consul_http_addr":    consulAddr,
		"consul_token_source": "none",
		"scrape_interval":     "1s",
		"evaluation_interval": "1s",
	}})
	if err != nil {
		t.Fatal(err)
	}
	taskDir := t.TempDir()
	files, err := jobs.RenderTask(j.Task("prometheus", "prometheus"), map[string]string{
		"NOMAD_TASK_DIR":    taskDir,
		"NOMAD_SECRETS_DIR": filepath.Join(taskDir, "secrets"),
		"NOMAD_ALLOC_DIR":   taskDir,
		"NOMAD_ADDR_http":   "127.0.0.1:9090",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rulesDir := filepath.Join(taskDir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, data := range files {
		if strings.HasPrefix(rel, "rules/") {
			if err := os.WriteFile(filepath.Join(taskDir, rel), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg, ok := files["prometheus.yml"]
	if !ok || !strings.Contains(cfg, "  - rules/*.yml\n") {
		t.Fatalf("rendered files %v lack prometheus.yml with rule_files rules/*.yml", keys(files))
	}
	return strings.Replace(cfg, "  - rules/*.yml\n", "  - "+rulesDir+"/*.yml\n", 1)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// provokeFailures sends requests that must fail validation, and one whose client goes
// away while it generates (a cancellation).
func provokeFailures(t *testing.T, base string) {
	t.Helper()
	for _, body := range []string{`{"prompt": 42}`, `not json`, `{"prompt": "x", "max_length": -5}`} {
		resp, err := http.Post(base+"/infer", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST /infer: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("POST /infer %s: status %d, want 4xx", body, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/completions",
		strings.NewReader(`{"prompt": "The symptoms of", "max_tokens": 200, "stream": true, "ignore_eos": true}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
}

func metricsContain(t *testing.T, url, name string) bool {
	t.Helper()
	return strings.Contains(getBody(t, url), "\n"+name+"{")
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type process struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer // stdout and stderr
	done chan struct{}
}

func (p *process) logs() string { return p.out.String() }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProcess runs a binary until the test ends (SIGTERM, then SIGKILL after 10s) and
// prints its output if the test fails.
func startProcess(ctx context.Context, t *testing.T, name, path string, args ...string) *process {
	t.Helper()
	p := &process{done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, path, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(os.Interrupt) }
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.logs())
		}
	})
	return p
}

func waitHTTP(t *testing.T, url string, timeout time.Duration, p *process) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("process exited before %s answered:\n%s", url, p.logs())
		}
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not ready after %v:\n%s", url, timeout, p.logs())
}
