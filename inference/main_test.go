package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/inferstack/inferstack/internal/syncbuf"

	"github.com/inferstack/inferstack/consul/consultest"
	"github.com/inferstack/inferstack/internal/promtest"
)

// The process-level tests build the real binary and run it on the bundled model.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// moduleRootT returns the repository root.
func moduleRootT(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	root := moduleRoot(wd)
	if root == "" {
		t.Fatal("cannot find the module root above", wd)
	}
	return root
}

// needModel skips when the ONNX Runtime library or the bundled model is missing.
func needModel(t *testing.T) (ortLib, modelDir string) {
	t.Helper()
	root := moduleRootT(t)
	ortLib = os.Getenv("ORT_LIB")
	if ortLib == "" {
		ortLib = filepath.Join(root, ".cache/onnxruntime-1.24.1/libonnxruntime.so.1")
	}
	if _, err := os.Stat(ortLib); err != nil {
		t.Skipf("ONNX Runtime library not found at %s: run `make ort`", ortLib)
	}
	modelDir = filepath.Join(root, "inference/model/default")
	if _, err := os.Stat(filepath.Join(modelDir, "model.onnx")); err != nil {
		t.Skipf("bundled model not found in %s", modelDir)
	}
	return ortLib, modelDir
}

func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "inference-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "inference")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is a running inference binary.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	logs *syncbuf.Buffer
	done chan struct{}
	err  error
}

var servingRE = regexp.MustCompile(`msg=ready addr=(127\.0\.0\.1:\d+)`)

// start runs the binary on a free loopback port and waits until it is ready.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	ortLib, modelDir := needModel(t)
	bin := buildBinary(t)
	args = append([]string{"--addr", "127.0.0.1:0", "--ort-lib", ortLib, "--model-dir", modelDir, "--intra-op-threads", "1"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=")
	logs := &syncbuf.Buffer{}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(logs, pw)
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, logs: logs, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case addr := <-found:
		p.url = "http://" + addr
	case <-p.done:
		t.Fatalf("server exited before ready: %v\n%s", p.err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("server not ready within 60s\n%s", logs.String())
	}
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("process still running after %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("wait: %v", p.err)
	}
	return 0
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// metric returns the value of an unlabelled (or fully written) series from /metrics.
func (p *proc) metric(name string) float64 {
	p.t.Helper()
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				p.t.Fatal(err)
			}
			return v
		}
	}
	p.t.Fatalf("%s not in /metrics", name)
	return 0
}

func (p *proc) rssBytes() int64 {
	p.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		p.t.Skipf("cannot read /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	p.t.Fatal("no VmRSS")
	return 0
}

type inferOut struct {
	GeneratedText   string `json:"generated_text"`
	GeneratedTokens int    `json:"generated_tokens"`
	FinishReason    string `json:"finish_reason"`
}

func TestEndToEndSeedCurl(t *testing.T) {
	p := start(t)
	// Exactly the seed's example: POST with the prompt in the query string, no body.
	resp, err := http.Post(p.url+"/infer?prompt=What%20are%20the%20symptoms%20of", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("seed curl: %d %s", resp.StatusCode, body)
	}
	var out inferOut
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if out.GeneratedTokens < 1 || strings.TrimSpace(out.GeneratedText) == "" {
		t.Errorf("no generated text: %s", body)
	}
	t.Logf("seed curl → %q", out.GeneratedText)

	// Greedy decoding with a seed is reproducible through HTTP.
	q := "/infer?prompt=The%20patient&temperature=0&max_new_tokens=12"
	a, b := postBody(t, p.url+q), postBody(t, p.url+q)
	if a != b {
		t.Errorf("greedy generations differ:\n%s\n%s", a, b)
	}

	resp, err = http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"model_inference_latency_seconds_bucket{endpoint=\"/infer\"", "cpu_usage_percent ", "ram_usage_bytes ",
		"training_loss ", "validation_loss{source=\"config\"}", "validation_loss{source=\"startup\"}",
		"data_validation_checks_total{", "validation_checks{", "inference_build_info{", "inference_ready 1",
		"inference_time_to_first_token_seconds_bucket", "inference_step_duration_seconds_bucket{kind=\"decode\"",
		"process_resident_memory_bytes",
	} {
		if !bytes.Contains(metrics, []byte("\n"+name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// No NVIDIA driver here: the GPU metric is absent and one log line says so.
	if _, err := os.Stat("/proc/driver/nvidia"); err != nil {
		if bytes.Contains(metrics, []byte("gpu_memory_used_bytes")) {
			t.Error("gpu_memory_used_bytes exported without a GPU")
		}
		if n := strings.Count(p.logs.String(), "no NVIDIA driver found"); n != 1 {
			t.Errorf("%d log lines about the missing NVIDIA driver, want 1", n)
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(metrics)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on live /metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not found (apt-get install prometheus); skipped promtool check")
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

func postBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out inferOut
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v", url, resp.StatusCode, err)
	}
	return out.GeneratedText
}

// streamFirst starts a streamed completion and returns once its first event arrived,
// with the response to read the rest from.
func streamFirst(t *testing.T, url, body string) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return resp, r
}

func TestSIGTERMDrainsLongGenerations(t *testing.T) {
	// One slot: the other requests wait in the queue while the first runs, so they
	// are all in flight when SIGTERM arrives.
	p := start(t, "--max-batch-size", "1", "--shutdown-delay", "300ms", "--drain-timeout", "60s")
	const n = 4
	type res struct {
		status int
		text   string
		err    error
	}
	results := make(chan res, n)
	body := `{"prompt":"The","max_tokens":200,"ignore_eos":true,"temperature":0}`
	for range n - 1 {
		go func() {
			resp, err := http.Post(p.url+"/v1/completions", "application/json", strings.NewReader(body))
			if err != nil {
				results <- res{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- res{status: resp.StatusCode, text: string(b)}
		}()
	}
	stream, r := streamFirst(t, p.url, `{"prompt":"The","max_tokens":200,"ignore_eos":true,"stream":true}`)
	p.signal(syscall.SIGTERM)
	rest, err := io.ReadAll(r)
	stream.Body.Close()
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream cut by shutdown: %v, tail %q", err, tail(string(rest)))
	}
	for range n - 1 {
		r := <-results
		if r.err != nil || r.status != 200 || !strings.Contains(r.text, `"completion_tokens":200`) {
			t.Errorf("request during shutdown: %d %v %s", r.status, r.err, tail(r.text))
		}
	}
	if code := p.wait(60 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	logs := p.logs.String()
	for _, want := range []string{"draining: readiness is now false", "drained: all in-flight requests finished", "shut down cleanly"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func tail(s string) string {
	if len(s) > 200 {
		return "…" + s[len(s)-200:]
	}
	return s
}

func TestSecondSignalForcesExit(t *testing.T) {
	p := start(t, "--shutdown-delay", "30s")
	p.signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code == 0 {
		t.Error("exit code 0 after a forced exit, want non-zero")
	}
	if !strings.Contains(p.logs.String(), "forced exit") {
		t.Error("no forced-exit log line")
	}
}

func TestOverload(t *testing.T) {
	// Capacity: 2 running + 2 queued. 40 concurrent requests = 10× capacity.
	p := start(t, "--max-batch-size", "2", "--max-queue", "2", "--queue-timeout", "2s")
	req := `{"prompt":"The","max_tokens":48,"ignore_eos":true}`
	latency := func() time.Duration {
		start := time.Now()
		resp, err := http.Post(p.url+"/v1/completions", "application/json", strings.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("idle request: %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	latency() // first request pays for lazy initialisation
	base := min(latency(), latency())
	rssBefore := p.rssBytes()

	// 40 closed-loop clients (10× capacity) for 3 seconds.
	const clients, sustain = 40, 3 * time.Second
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	stopAt := time.Now().Add(sustain)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stopAt) {
				resp, err := http.Post(p.url+"/v1/completions", "application/json", strings.NewReader(req))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if (resp.StatusCode == 429 || resp.StatusCode == 503) && resp.Header.Get("Retry-After") == "" {
					t.Errorf("%d without Retry-After", resp.StatusCode)
				}
				mu.Lock()
				counts[resp.StatusCode]++
				mu.Unlock()
				if resp.StatusCode != 200 {
					// An impatient client: 20 ms, not the Retry-After second, so the
					// overload stays at 10× while the test's own loop does not eat
					// the CPU the server needs.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	rssAfter := p.rssBytes()
	t.Logf("status counts under 10× overload for %s: %v; RSS %d MiB → %d MiB", sustain, counts, rssBefore>>20, rssAfter>>20)
	for code := range counts {
		if code != 200 && code != 429 && code != 503 {
			t.Errorf("status %d under overload", code)
		}
	}
	if counts[200] == 0 || counts[429] == 0 {
		t.Errorf("want both admitted and shed requests, got %v", counts)
	}
	// The bound: the model and runtime plus bounded per-request state. 1 GiB is far
	// above what four sequences of a 17 MB model need, and far below unbounded growth.
	const rssBound = 1 << 30
	if rssAfter > rssBound {
		t.Errorf("RSS %d MiB over the %d MiB bound", rssAfter>>20, rssBound>>20)
	}
	after := min(latency(), latency())
	t.Logf("admitted-request latency: baseline %s, right after overload %s", base, after)
	if after > 3*base+100*time.Millisecond {
		t.Errorf("latency after overload %s, baseline %s", after, base)
	}
	if v := p.metric("inference_requests_in_flight"); v != 0 {
		t.Errorf("in flight after overload = %v", v)
	}
}

func TestHangUpFreesSlot(t *testing.T) {
	p := start(t, "--max-batch-size", "1")
	resp, _ := streamFirst(t, p.url, `{"prompt":"The","max_tokens":250,"ignore_eos":true,"stream":true}`)
	if v := p.metric("inference_running_sequences"); v != 1 {
		t.Errorf("running sequences while streaming = %v, want 1", v)
	}
	hangUp := time.Now()
	resp.Body.Close()
	for p.metric("inference_requests_in_flight") != 0 || p.metric("inference_running_sequences") != 0 {
		if time.Since(hangUp) > 5*time.Second {
			t.Fatalf("slot not freed 5s after the hang-up: in flight %v, running %v",
				p.metric("inference_requests_in_flight"), p.metric("inference_running_sequences"))
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("slot freed %s after the hang-up", time.Since(hangUp))
	// The one slot is free: a new request is admitted at once.
	out := postBody(t, p.url+"/infer?prompt=Hello&max_new_tokens=2")
	if out == "" && !strings.Contains(p.logs.String(), "status=200") {
		t.Error("request after the hang-up failed")
	}
	if v := p.metric(`inference_request_failures_total{reason="cancelled"}`); v != 1 {
		t.Errorf("cancelled = %v, want 1", v)
	}
}

func TestMemoryFlatOverManyRequests(t *testing.T) {
	p := start(t)
	do := func(n int) {
		for i := range n {
			resp, err := http.Post(fmt.Sprintf("%s/infer?prompt=Request%%20%d&max_new_tokens=8&ignore_eos=true", p.url, i), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, resp.StatusCode)
			}
		}
	}
	do(100) // warm: allocator pools and caches reach their steady size
	rss0, g0 := p.rssBytes(), p.metric("go_goroutines")
	do(400)
	rss1, g1 := p.rssBytes(), p.metric("go_goroutines")
	t.Logf("RSS after 100 requests %.1f MiB, after 500 %.1f MiB; goroutines %v → %v", float64(rss0)/(1<<20), float64(rss1)/(1<<20), g0, g1)
	if rss1-rss0 > 16<<20 {
		t.Errorf("RSS grew %d MiB over 400 requests", (rss1-rss0)>>20)
	}
	if g1 > g0+5 {
		t.Errorf("goroutines grew from %v to %v", g0, g1)
	}
}

func TestStartupErrors(t *testing.T) {
	ortLib, modelDir := needModel(t)
	bin := buildBinary(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing model dir", []string{"--model-dir", t.TempDir() + "/nope", "--ort-lib", ortLib}, "model-dir"},
		{"missing library", []string{"--model-dir", modelDir, "--ort-lib", t.TempDir() + "/libonnxruntime.so.1"}, "make ort"},
		{"bad flag value", []string{"--execution-provider", "tpu"}, "--execution-provider"},
		{"port in use", nil, "listen"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.name == "port in use" {
				p := start(t)
				args = []string{"--model-dir", modelDir, "--ort-lib", ortLib, "--addr", strings.TrimPrefix(p.url, "http://")}
			}
			out, err := exec.Command(bin, args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("exit %v, want non-zero; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestConsulLifecycle runs the real server against the Consul double: Consul absent
// at start (the server serves anyway), the agent appearing later (registered within
// the backoff bound), the agent restarting (registered again), a real Prometheus
// scraping the server through consul_sd, and SIGTERM (the instance leaves Consul
// while the listener still accepts, then the process drains and exits 0).
func TestConsulLifecycle(t *testing.T) {
	consulAddr := freeLoopbackAddr(t)
	p := start(t, "--consul-addr", consulAddr, "--consul-check-interval", "200ms", "--consul-resync-interval", "300ms",
		"--shutdown-delay", "1500ms", "--service-tags", "inference,metrics")
	// Consul is down: the server is ready and serving, and says it is not registered.
	if v := p.metric("inference_consul_registered"); v != 0 {
		t.Errorf("inference_consul_registered = %v with no agent", v)
	}
	postBody(t, p.url+"/infer?prompt=Hi&max_new_tokens=2") // fails the test unless 200

	agentUp := time.Now()
	dbl := consultest.New(t, consultest.WithAddress(consulAddr), consultest.WithMinCheckInterval(100*time.Millisecond))
	// Backoff: attempt n waits at most min(30s, 0.5s·2^n); the agent comes up within
	// about a second of the first attempt, so the next attempt is at most ~8s away.
	if !dbl.WaitFor(15*time.Second, func() bool { return len(dbl.ServiceIDs()) == 1 }) {
		t.Fatalf("not registered 15s after the agent came up")
	}
	t.Logf("registered %s after the agent came up", time.Since(agentUp))
	id := dbl.ServiceIDs()[0]
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.url, "http://"))
	if !dbl.WaitFor(10*time.Second, func() bool {
		s, _ := dbl.Service(id)
		return len(s.Checks) == 1 && s.Checks[0].Status == "passing"
	}) {
		s, _ := dbl.Service(id)
		t.Fatalf("check never passing: %+v", s)
	}
	svc, _ := dbl.Service(id)
	if svc.Name != "inference" || svc.Address != "127.0.0.1" || strconv.Itoa(svc.Port) != port ||
		strings.Join(svc.Tags, ",") != "inference,metrics" || svc.Meta["metrics_path"] != "/metrics" ||
		svc.Meta["model"] == "" || svc.Meta["version"] == "" || !strings.HasSuffix(svc.Checks[0].HTTP, ":"+port+"/readyz") ||
		svc.Checks[0].DeregisterCriticalServiceAfter != time.Minute {
		t.Errorf("registration %+v", svc)
	}
	if v := p.metric("inference_consul_registered"); v != 1 {
		t.Errorf("inference_consul_registered = %v while registered", v)
	}

	// The agent restarts and forgets its services: the server registers again.
	if err := dbl.Restart(); err != nil {
		t.Fatal(err)
	}
	if !dbl.WaitFor(10*time.Second, func() bool { return len(dbl.ServiceIDs()) == 1 }) {
		t.Fatal("not registered again after the agent restarted")
	}

	if promtest.Binary() != "" {
		prom := promtest.Start(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: inference
    consul_sd_configs:
      - server: %q
        refresh_interval: 1s
        services: [inference]
    relabel_configs:
      - source_labels: [__meta_consul_service_metadata_metrics_path]
        regex: (.+)
        target_label: __metrics_path__
      - source_labels: [__meta_consul_service_id]
        target_label: instance
`, consulAddr))
		tg := prom.WaitTargetUp(t, 30*time.Second, func(tg promtest.Target) bool { return tg.Labels["instance"] == id })
		t.Logf("Prometheus scrapes the server through consul_sd: %s", tg.ScrapeURL)
	} else {
		t.Log("prometheus not installed (apt-get install prometheus): skipped the consul_sd scrape")
	}

	// SIGTERM: deregistered first, while the listener still accepts.
	p.signal(syscall.SIGTERM)
	if !dbl.WaitFor(5*time.Second, func() bool { return len(dbl.ServiceIDs()) == 0 }) {
		t.Fatal("still registered after SIGTERM")
	}
	resp, err := http.Get(p.url + "/readyz")
	if err != nil {
		t.Fatalf("listener closed before the shutdown delay ended: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("readyz during shutdown delay = %d, want 503", resp.StatusCode)
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
