package jobs

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: apt-get install prometheus")
	}
	return p
}

// promtoolLocalVersion is the Prometheus release `make prometheus` builds into .cache
// (the same as internal/promtest.LocalVersion).
const promtoolLocalVersion = "2.54.1"

// promtoolWithSD finds a promtool that knows consul_sd_configs and nomad_sd_configs:
// $PROMTOOL_BIN, the one `make prometheus` builds into .cache, or one on PATH. Debian's
// promtool (2.42) is built without Consul and Nomad service discovery.
func promtoolWithSD(t *testing.T) string {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe.yml")
	cfg := "scrape_configs:\n  - job_name: c\n    consul_sd_configs: [{server: 127.0.0.1:8500}]\n  - job_name: n\n    nomad_sd_configs: [{server: http://127.0.0.1:4646}]\n"
	if err := os.WriteFile(probe, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var candidates []string
	if p := os.Getenv("PROMTOOL_BIN"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, filepath.Join("..", ".cache", "prometheus-"+promtoolLocalVersion, "promtool"))
	if p, err := exec.LookPath("promtool"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if err := exec.Command(c, "check", "config", probe).Run(); err == nil {
			return c
		}
	}
	t.Skipf("no promtool with Consul and Nomad service discovery among %v (Debian's promtool 2.42 is built without them): "+
		"run `make prometheus` to build %s's promtool into .cache/prometheus-%s/, or set PROMTOOL_BIN", candidates, promtoolLocalVersion, promtoolLocalVersion)
	return ""
}

// renderPrometheus renders the Prometheus task's templates into a fresh task directory
// laid out as Nomad lays it out, and returns the path of prometheus.yml.
func renderPrometheus(t *testing.T, j *Job) (string, string) {
	t.Helper()
	alloc := t.TempDir()
	taskDir := filepath.Join(alloc, "prometheus", "local")
	secrets := filepath.Join(alloc, "prometheus", "secrets")
	for _, d := range []string{filepath.Join(taskDir, "rules"), filepath.Join(taskDir, "targets"), secrets} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Workload identity tokens Nomad would write.
	for _, f := range []string{"consul_token", "nomad_token"} {
		if err := os.WriteFile(filepath.Join(secrets, f), []byte("token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rt := map[string]string{
		"NOMAD_TASK_DIR":    taskDir,
		"NOMAD_SECRETS_DIR": secrets,
		"NOMAD_ALLOC_DIR":   alloc,
		"NOMAD_ADDR_http":   "127.0.0.1:9090",
	}
	catalog := map[string][]NomadService{
		"inference": {
			{ID: "_nomad-task-1", Name: "inference", AllocID: "0b4c8f8e-0000-4000-8000-000000000001", Address: "10.0.0.1", Port: 23001, Datacenter: "dc1", Node: "n1"},
			{ID: "_nomad-task-2", Name: "inference", AllocID: "0b4c8f8e-0000-4000-8000-000000000002", Address: "10.0.0.2", Port: 23002, Datacenter: "dc1", Node: "n2"},
		},
		"loadtest": {{ID: "_nomad-task-3", Name: "loadtest", AllocID: "0b4c8f8e-0000-4000-8000-000000000003", Address: "10.0.0.3", Port: 23003, Datacenter: "dc1", Node: "n3"}},
	}
	files, err := RenderTask(j.Task("prometheus", "prometheus"), rt, catalog)
	if err != nil {
		t.Fatal(err)
	}
	for rel, data := range files {
		if err := os.WriteFile(filepath.Join(taskDir, rel), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(taskDir, "prometheus.yml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatalf("the job renders no local/prometheus.yml: %v", err)
	}
	return cfg, string(b)
}

// TestPrometheusConfig renders the configuration with the production defaults (Consul)
// and with the dev var file (Nomad's catalog) and has promtool check each.
func TestPrometheusConfig(t *testing.T) {
	nomadSD, err := Evaluate("prometheus.nomad.hcl", Options{Vars: map[string]string{"service_discovery": "nomad", "service_provider": "nomad"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		job     *Job
		want    []string
		notWant []string
	}{
		{"production", evalDefault(t, "prometheus.nomad.hcl"),
			[]string{"consul_sd_configs:", `server: "127.0.0.1:8500"`, `services: ["inference"]`,
				"__meta_consul_service_metadata_metrics_path", "__meta_consul_service_id",
				"/v1/agent/metrics", "credentials_file:", `services: ["nomad", "nomad-client"]`},
			[]string{"nomad_sd_configs:"}},
		{"nomad_sd", nomadSD,
			[]string{"nomad_sd_configs:", `server: "http://127.0.0.1:4646"`, `regex: "inference"`,
				"__meta_nomad_service_id", `targets: ["127.0.0.1:4646"]`, "credentials_file:"},
			[]string{"consul_sd_configs:", "file_sd_configs:"}},
		{"dev", evalDev(t, "prometheus.nomad.hcl"),
			[]string{"file_sd_configs:", `files: ["targets/inference.json"]`, `targets: ["127.0.0.1:4646"]`, "scrape_interval: 5s"},
			[]string{"consul_sd_configs:", "nomad_sd_configs:", "credentials_file:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Debian's promtool checks the file_sd (dev) configuration; the Consul and
			// Nomad discovery ones need a full build.
			pt := promtool(t)
			if tc.name != "dev" {
				pt = promtoolWithSD(t)
			}
			cfg, text := renderPrometheus(t, tc.job)
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("rendered config lacks %q", w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(text, w) {
					t.Errorf("rendered config has %q", w)
				}
			}
			out, err := exec.Command(pt, "check", "config", cfg).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool check config: %v\n%s\n--- config:\n%s", err, out, text)
			}
			if !strings.Contains(string(out), "1 rule files found") {
				t.Errorf("promtool found no rule file:\n%s", out)
			}
			if tc.name == "dev" {
				checkTargetFile(t, filepath.Join(filepath.Dir(cfg), "targets", "inference.json"),
					[]string{"10.0.0.1:23001", "10.0.0.2:23002"}, "0b4c8f8e-0000-4000-8000-000000000001")
				checkTargetFile(t, filepath.Join(filepath.Dir(cfg), "targets", "alertmanager.json"), nil, "")
			}
			// The rules reach Prometheus byte for byte.
			want, err := fs.ReadFile(FS, "prometheus/rules/inference.rules.yml")
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(filepath.Dir(cfg), "rules", "inference.rules.yml"))
			if err != nil || string(got) != string(want) {
				t.Errorf("rendered rules differ from prometheus/rules/inference.rules.yml (%v)", err)
			}
		})
	}
}

func TestPrometheusJob(t *testing.T) {
	j := evalDefault(t, "prometheus.nomad.hcl")
	g := j.Root.Get("group", "prometheus")
	vol := g.Get("volume", "data")
	if vol == nil || str(t, vol, "type") != "host" {
		t.Fatal("no host volume for the TSDB")
	}
	task := j.Task("prometheus", "prometheus")
	if m := task.Get("volume_mount"); m == nil || str(t, m, "volume") != "data" {
		t.Error("docker task does not mount the data volume")
	}
	args := strList(t, task.Get("config"), "args")
	joined := strings.Join(args, " ")
	for _, w := range []string{"--storage.tsdb.retention.time=15d", "--storage.tsdb.retention.size=20GB", "--storage.tsdb.path=/prometheus", "--config.file=${NOMAD_TASK_DIR}/prometheus.yml"} {
		if !strings.Contains(joined, w) {
			t.Errorf("args lack %s: %s", w, joined)
		}
	}
	if n := len(task.All("template")); n != 2 {
		t.Errorf("%d templates, want the configuration and the rules", n)
	}
	for _, tb := range task.All("template") {
		if str(t, tb, "change_mode") != "signal" || str(t, tb, "change_signal") != "SIGHUP" {
			t.Errorf("template %s does not reload Prometheus with SIGHUP", str(t, tb, "destination"))
		}
	}
	dev := evalDev(t, "prometheus.nomad.hcl")
	dargs := strings.Join(strList(t, dev.Task("prometheus", "prometheus").Get("config"), "args"), " ")
	if !strings.Contains(dargs, "--storage.tsdb.path=/tmp/inferstack-dev/prometheus-data") {
		t.Errorf("dev: TSDB not in the host volume's path: %s", dargs)
	}
	if got := str(t, dev.Task("prometheus", "prometheus").Get("config"), "command"); got != "/usr/bin/prometheus" {
		t.Errorf("dev: command = %q, want the Debian binary", got)
	}
}

func TestAlertRules(t *testing.T) {
	pt := promtool(t)
	out, err := exec.Command(pt, "check", "rules", "prometheus/rules/inference.rules.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, err := filepath.Glob("prometheus/tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule unit tests in prometheus/tests (%v)", err)
	}
	out, err = exec.Command(pt, append([]string{"test", "rules"}, tests...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert of the issue exists.
	rules, err := os.ReadFile("prometheus/rules/inference.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"InferenceInstanceDown", "InferenceHighErrorRatio", "InferenceErrorBudgetBurn",
		"InferenceLatencyBudgetBurn", "InferenceTTFTBudgetBurn", "InferenceQueueSaturated",
		"InferenceRejectingRequests", "GPUMemoryNearFull", "DataValidationChecksFailing",
		"ModelValidationLossAboveBaseline"} {
		if !strings.Contains(string(rules), "alert: "+a+"\n") {
			t.Errorf("no alert %s", a)
		}
		testText := ""
		for _, f := range tests {
			b, _ := os.ReadFile(f)
			testText += string(b)
		}
		if !strings.Contains(testText, "alertname: "+a+"\n") {
			t.Errorf("alert %s has no unit test", a)
		}
	}
}

// checkTargetFile reads a rendered file_sd file and compares its targets.
func checkTargetFile(t *testing.T, path string, want []string, firstInstance string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatalf("%s is not file_sd JSON: %v\n%s", path, err, b)
	}
	var got []string
	for _, g := range groups {
		got = append(got, g.Targets...)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: targets %v, want %v", path, got, want)
	}
	if firstInstance != "" && (len(groups) == 0 || groups[0].Labels["instance"] != firstInstance) {
		t.Errorf("%s: first group's instance label is not the alloc ID %s:\n%s", path, firstInstance, b)
	}
}
