package main

// Integration tests against a real `nomad agent -dev`. They skip when no nomad binary
// is on PATH (build one from a release tag of github.com/hashicorp/nomad, see
// README); the bundle test also needs the ONNX Runtime library (`make ort`) and the
// Debian prometheus binary. Each test starts its own agent on free loopback ports.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferstack/inferstack/tools/deployer/deploy"
)

// moduleRoot is the repository root, two levels up from this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type agent struct {
	addr     string // http://127.0.0.1:PORT
	hostport string
	dir      string
}

// startAgent starts `nomad agent -dev` with the project's dev configuration
// (jobs/dev/nomad-dev.hcl) plus free ports and a private data directory.
func startAgent(t *testing.T) *agent {
	t.Helper()
	nomad, err := exec.LookPath("nomad")
	if err != nil {
		t.Skip("nomad is not on PATH: build it from a release tag of github.com/hashicorp/nomad (README, \"Testing against a real Nomad\") to run the integration tests")
	}
	if testing.Short() {
		t.Skip("integration test skipped in -short mode")
	}
	dir, err := os.MkdirTemp("", "deployer-it-")
	if err != nil {
		t.Fatal(err)
	}
	httpPort, rpcPort, serfPort := freePort(t), freePort(t), freePort(t)
	override := fmt.Sprintf(`
data_dir = %q
ports {
  http = %d
  rpc  = %d
  serf = %d
}
client {
  host_volume "prometheus-data" {
    path      = %q
    read_only = false
  }
}
`, filepath.Join(dir, "data"), httpPort, rpcPort, serfPort, filepath.Join(dir, "prometheus-data"))
	if err := os.MkdirAll(filepath.Join(dir, "prometheus-data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "override.hcl"), []byte(override), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"agent", "-dev"}
	devCfg := filepath.Join(moduleRoot(t), "jobs", "dev", "nomad-dev.hcl")
	if _, err := os.Stat(devCfg); err != nil {
		t.Fatalf("the project's dev agent configuration is missing: %v", err)
	}
	args = append(args, "-config", devCfg, "-config", filepath.Join(dir, "override.hcl"))
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nomad, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agent{addr: fmt.Sprintf("http://127.0.0.1:%d", httpPort), hostport: fmt.Sprintf("127.0.0.1:%d", httpPort), dir: dir}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "agent.log")); err == nil {
				lines := strings.Split(string(b), "\n")
				t.Logf("agent log (last 40 lines):\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
		unmountUnder(t, dir) // the client mounts tmpfs secrets dirs it leaves behind
		_ = os.RemoveAll(dir)
	})
	// Ready when the client node is ready with raw_exec.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(a.addr + "/v1/nodes?resources=false")
		if err == nil {
			var nodes []struct {
				Status  string
				Drivers map[string]struct{ Healthy bool }
			}
			_ = json.NewDecoder(resp.Body).Decode(&nodes)
			resp.Body.Close()
			if len(nodes) == 1 && nodes[0].Status == "ready" && nodes[0].Drivers["raw_exec"].Healthy {
				return a
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("nomad agent not ready after 60s (log in %s)", dir)
	return nil
}

// unmountUnder unmounts every mount point below dir (deepest first).
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			points = append(points, f[1])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, 0); err != nil {
			t.Logf("unmount %s: %v", p, err)
		}
	}
}

// deployerRun runs the deployer in-process and returns its exit code and outputs.
func deployerRun(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	code := exitCode(err, &stderr)
	t.Logf("deployer %s → exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

// clientArgs point the deployer at the agent and at a Consul address where nothing
// listens.
func (a *agent) clientArgs(t *testing.T) []string {
	return []string{"--address", a.addr, "--consul-address", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
}

func itCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestIntegrationPlacementFailure: the real inference job asking for a GPU on a
// machine without one is refused at plan time with the reason, exit 3, and
// nothing is registered.
func TestIntegrationPlacementFailure(t *testing.T) {
	a := startAgent(t)
	ctx := itCtx(t, 2*time.Minute)
	args := append([]string{"up"}, a.clientArgs(t)...)
	args = append(args, "--dev", "--var", "inference.gpu_count=1",
		"--var", "inference.binary=/nonexistent/inference", "--var", "inference.model_dir=/nonexistent",
		"--var", "inference.ort_lib=/nonexistent/libonnxruntime.so.1", "inference")
	code, _, stderr := deployerRun(t, ctx, args...)
	if code != deploy.ExitPlacement {
		t.Fatalf("exit %d, want %d", code, deploy.ExitPlacement)
	}
	if !regexp.MustCompile(`no node has 1 device nvidia/gpu with memory >= \d+ \w+ \(1 node evaluated, 1 filtered by device\)`).MatchString(stderr) {
		t.Errorf("stderr does not explain the GPU placement failure")
	}
	resp, err := http.Get(a.addr + "/v1/job/inference")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("job inference registered after a placement failure (GET /v1/job/inference: %s)", resp.Status)
	}
}

// TestIntegrationRevertedDeployment: a healthy deployment, then an update whose
// check fails: Nomad reverts it, the deployer exits 4 and shows the failing check;
// logs shows the service's log; down leaves nothing running.
func TestIntegrationRevertedDeployment(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH (the fixture service is python3 -m http.server)")
	}
	a := startAgent(t)
	ctx := itCtx(t, 3*time.Minute)
	base := append(a.clientArgs(t), "--jobs-dir", "testdata/itest")
	up := append(append([]string{"up"}, base...), "--health-service", "web", "--var", "python="+python, "--timeout", "90s")

	code, stdout, _ := deployerRun(t, ctx, up...)
	if code != 0 {
		t.Fatalf("first up: exit %d", code)
	}
	if !regexp.MustCompile(`web\s+http://127\.0\.0\.1:\d+`).MatchString(stdout) {
		t.Errorf("up did not print the service address")
	}

	code, _, stderr := deployerRun(t, ctx, append(up, "--var", "check_path=/missing")...)
	if code != deploy.ExitDeployment {
		t.Fatalf("failing update: exit %d, want %d", code, deploy.ExitDeployment)
	}
	for _, want := range []string{"rolling back to job version 0", `check "ready" of service "web": failure (HTTP 404)`,
		"Nomad reverted the job: job version 2, a copy of the last stable version, is deployed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}

	code, stdout, _ = deployerRun(t, ctx, append(append([]string{"logs"}, base...), "web")...)
	if code != 0 || !strings.Contains(stdout, `"GET / HTTP/1.1" 200`) {
		t.Errorf("logs web: exit %d, want the server's access log", code)
	}

	code, _, _ = deployerRun(t, ctx, append(append([]string{"down"}, base...), "--purge")...)
	if code != 0 {
		t.Fatalf("down: exit %d", code)
	}
	assertNothingRunning(t, a)
}

// assertNothingRunning fails if any allocation on the agent is pending or running.
func assertNothingRunning(t *testing.T, a *agent) {
	t.Helper()
	resp, err := http.Get(a.addr + "/v1/allocations")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var allocs []struct{ ID, JobID, ClientStatus string }
	if err := json.NewDecoder(resp.Body).Decode(&allocs); err != nil {
		t.Fatal(err)
	}
	for _, al := range allocs {
		if al.ClientStatus == "running" || al.ClientStatus == "pending" {
			t.Errorf("allocation %s of job %s is still %s after down", al.ID, al.JobID, al.ClientStatus)
		}
	}
}

// binary returns the path of a project binary: from $INFERSTACK_BIN_DIR (`make
// build` output) when set, else built now into a temporary directory.
func binary(t *testing.T, name, pkg string) string {
	t.Helper()
	root := moduleRoot(t)
	if dir := os.Getenv("INFERSTACK_BIN_DIR"); dir != "" {
		p := filepath.Join(dir, name)
		if !fileExists(p) {
			t.Fatalf("INFERSTACK_BIN_DIR=%s has no %s", dir, name)
		}
		return p
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build %s (%v): %s", pkg, err, b)
	}
	return out
}

// prometheusBinary finds a Prometheus that supports nomad_sd_configs (2.43 or
// later; Debian bookworm's 2.42 does not): $PROMETHEUS_BIN, .cache/prometheus-*/,
// then /usr/bin/prometheus.
func prometheusBinary(t *testing.T, root string) string {
	t.Helper()
	candidates := []string{os.Getenv("PROMETHEUS_BIN")}
	cached, _ := filepath.Glob(filepath.Join(root, ".cache", "prometheus-*", "prometheus"))
	candidates = append(candidates, cached...)
	candidates = append(candidates, "/usr/bin/prometheus")
	versionRE := regexp.MustCompile(`version (\d+)\.(\d+)\.`)
	for _, c := range candidates {
		if c == "" || !fileExists(c) {
			continue
		}
		out, _ := exec.Command(c, "--version").CombinedOutput()
		m := versionRE.FindStringSubmatch(string(out))
		if m == nil {
			continue
		}
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if major > 2 || major == 2 && minor >= 43 {
			return c
		}
		t.Logf("%s is Prometheus %s.%s: too old for nomad_sd_configs", c, m[1], m[2])
	}
	t.Skip("no Prometheus >= 2.43 found (nomad_sd_configs): set PROMETHEUS_BIN or put one under .cache/prometheus-*/")
	return ""
}

func inferenceUp(pt deploy.PrometheusTarget) bool {
	return strings.Contains(pt.Job, "inference") && pt.Health == "up"
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// TestIntegrationBundle: the dev bundle (inference, Prometheus, load test) comes up
// healthy, logs shows the server's log, a load test runs and reports, and down
// leaves nothing running. Grafana is left out: no Grafana binary on this machine.
func TestIntegrationBundle(t *testing.T) {
	root := moduleRoot(t)
	ort := os.Getenv("ORT_LIB")
	if ort == "" {
		ort = filepath.Join(root, ".cache", "onnxruntime-1.24.1", "libonnxruntime.so.1")
	}
	if !fileExists(ort) {
		t.Skipf("ONNX Runtime library not found at %s: run `make ort`", ort)
	}
	prometheus := prometheusBinary(t, root)
	a := startAgent(t)
	inference := binary(t, "inference", "./inference")
	loadtest := binary(t, "loadtest", "./loadtest/cmd/loadtest")
	ctx := itCtx(t, 6*time.Minute)
	base := a.clientArgs(t)

	promPort := freePort(t)
	up := append(append([]string{"up"}, base...), "--dev", "--timeout", "4m",
		"--var", "inference.binary="+inference,
		"--var", "inference.model_dir="+filepath.Join(root, "inference", "model", "default"),
		"--var", "inference.ort_lib="+ort,
		"--var", "prometheus.binary="+prometheus,
		"--var", fmt.Sprintf("prometheus.http_port=%d", promPort),
		"--var", "prometheus.nomad_addr="+a.addr,
		"--var", "prometheus.nomad_agent="+a.hostport,
		"--var", "prometheus.raw_exec_storage_path="+filepath.Join(a.dir, "prometheus-data"),
		"--var", "loadtest.binary="+loadtest,
		"inference", "prometheus", "loadtest")
	code, stdout, _ := deployerRun(t, ctx, up...)
	if code != 0 {
		t.Fatalf("up: exit %d", code)
	}
	api := regexp.MustCompile(`API\s+(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(stdout)
	if api == nil {
		t.Fatal("up printed no API address")
	}
	if !strings.Contains(stdout, fmt.Sprintf("Prometheus   http://127.0.0.1:%d", promPort)) {
		t.Errorf("up printed no Prometheus address")
	}
	resp, err := http.Get(api[1] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s/readyz: %s", api[1], resp.Status)
	}

	code, stdout, _ = deployerRun(t, ctx, append(append([]string{"logs"}, base...), "inference")...)
	if code != 0 || !strings.Contains(stdout, strings.TrimPrefix(api[1], "http://")) {
		t.Errorf("logs inference: exit %d; want the server's log, which names its address %s", code, api[1])
	}

	code, stdout, stderr := deployerRun(t, ctx, append(append([]string{"loadtest"}, base...), "--users", "2", "--duration", "8s", "--json")...)
	if code != 0 {
		t.Fatalf("loadtest: exit %d", code)
	}
	var sum struct {
		Total struct{ Requests uint64 } `json:"total"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Total.Requests == 0 {
		t.Errorf("loadtest --json printed no summary with requests (%v)", err)
	}
	if !strings.Contains(stderr, "passed") {
		t.Errorf("loadtest stderr does not report the outcome")
	}

	// Prometheus (nomad_sd) scrapes the server: status shows the target up.
	var targets []deploy.PrometheusTarget
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		code, stdout, _ = deployerRun(t, ctx, append(append([]string{"status"}, base...), "--json")...)
		if code != 0 {
			t.Fatalf("status: exit %d", code)
		}
		var rep deploy.StatusReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("status --json: %v", err)
		}
		targets = rep.PrometheusTargets
		if slices.ContainsFunc(targets, inferenceUp) {
			break
		}
	}
	if !slices.ContainsFunc(targets, inferenceUp) {
		t.Errorf("Prometheus does not show the inference target up: %+v", targets)
	}

	code, _, _ = deployerRun(t, ctx, append(append([]string{"down"}, base...), "--purge")...)
	if code != 0 {
		t.Fatalf("down: exit %d", code)
	}
	assertNothingRunning(t, a)
}
