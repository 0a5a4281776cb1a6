// Package promtest starts a real Prometheus server for a test, on a free loopback
// port, with a throw-away TSDB in t.TempDir(), stopped when the test ends.
//
// The binary is, in order: $PROMETHEUS_BIN; .cache/prometheus-<LocalVersion>/prometheus
// under the module root (built by `make prometheus`: upstream Prometheus with
// Consul and Nomad service discovery); prometheus on $PATH; /usr/bin/prometheus.
// Debian's package (2.42) is built WITHOUT Consul and Nomad service discovery, so a
// configuration using consul_sd_configs or nomad_sd_configs makes Start skip the
// test with a message naming `make prometheus`, rather than fail it. With no binary
// at all, Start skips naming `apt-get install prometheus` and `make prometheus`.
package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/inferstack/inferstack/internal/syncbuf"
)

// Prometheus is a running Prometheus server.
type Prometheus struct {
	// URL is the server's base URL, "http://127.0.0.1:<port>".
	URL string
	// ConfigFile is the path of the configuration it runs with.
	ConfigFile string

	cmd  *exec.Cmd
	logs *syncbuf.Buffer
}

// LocalVersion is the Prometheus release `make prometheus` builds into .cache.
const LocalVersion = "2.54.1"

// Binary finds the Prometheus binary, or returns "" when there is none.
func Binary() string {
	if p := os.Getenv("PROMETHEUS_BIN"); p != "" {
		return p
	}
	if root := moduleRoot(); root != "" {
		p := filepath.Join(root, ".cache", "prometheus-"+LocalVersion, "prometheus")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	return ""
}

// Start writes configYAML to a file and runs Prometheus with it. It skips the
// test when Prometheus is not installed, fails it when Prometheus does not become
// ready within 30s, and stops Prometheus (SIGTERM, then SIGKILL) in t.Cleanup.
// Prometheus's log is printed when the test fails.
func Start(t testing.TB, configYAML string) *Prometheus {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("prometheus not found: run `make prometheus` (builds " + LocalVersion + " with Consul/Nomad SD into .cache), or `apt-get install prometheus`, or set PROMETHEUS_BIN")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(configYAML), 0o600); err != nil {
		t.Fatalf("promtest: write config: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := &Prometheus{URL: "http://" + addr, ConfigFile: cfg, logs: &syncbuf.Buffer{}}
	p.cmd = exec.Command(bin,
		"--config.file="+cfg,
		"--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.enable-lifecycle",
		"--log.level=info",
	)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("promtest: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logs.String())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			if m := missingSD.FindStringSubmatch(p.logs.String()); m != nil {
				t.Skipf("%s was built without %s (Debian's package leaves out Consul and Nomad service discovery): "+
					"run `make prometheus` to build %s with them into .cache, or set PROMETHEUS_BIN", bin, m[1], LocalVersion)
			}
			t.Fatalf("promtest: prometheus exited early:\n%s", p.logs.String())
		default:
		}
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("promtest: prometheus not ready after 30s:\n%s", p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Logs returns what Prometheus has logged so far.
func (p *Prometheus) Logs() string { return p.logs.String() }

// Target is one entry of /api/v1/targets' activeTargets.
type Target struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
	ScrapePool       string            `json:"scrapePool"`
	ScrapeURL        string            `json:"scrapeUrl"`
	LastError        string            `json:"lastError"`
	Health           string            `json:"health"` // "up", "down" or "unknown"
}

// Sample is one element of an instant query's vector result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

func (p *Prometheus) get(ctx context.Context, path string, q url.Values) (json.RawMessage, error) {
	u := p.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var ar apiResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, fmt.Errorf("decode %s (HTTP %d): %w", path, resp.StatusCode, err)
	}
	if ar.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, ar.ErrorType, ar.Error)
	}
	return ar.Data, nil
}

// Targets returns the active targets.
func (p *Prometheus) Targets(ctx context.Context) ([]Target, error) {
	data, err := p.get(ctx, "/api/v1/targets", url.Values{"state": {"active"}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode targets: %w", err)
	}
	return d.ActiveTargets, nil
}

// Query runs an instant query and returns its vector result (a scalar comes back
// as one sample without labels).
func (p *Prometheus) Query(ctx context.Context, promql string) ([]Sample, error) {
	data, err := p.get(ctx, "/api/v1/query", url.Values{"query": {promql}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode query result: %w", err)
	}
	switch d.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &vec); err != nil {
			return nil, fmt.Errorf("decode vector: %w", err)
		}
		out := make([]Sample, 0, len(vec))
		for _, v := range vec {
			f, err := parseValue(v.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Metric: v.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var sc [2]any
		if err := json.Unmarshal(d.Result, &sc); err != nil {
			return nil, fmt.Errorf("decode scalar: %w", err)
		}
		f, err := parseValue(sc[1])
		if err != nil {
			return nil, err
		}
		return []Sample{{Value: f}}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %q is not supported by promtest", promql, d.ResultType)
	}
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}

// WaitTarget polls the targets until one satisfies match and is up, and returns
// it. On timeout it returns an error describing the targets it last saw.
func (p *Prometheus) WaitTarget(ctx context.Context, timeout time.Duration, match func(Target) bool) (Target, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last []Target
	var lastErr error
	for {
		ts, err := p.Targets(ctx)
		if err == nil {
			last, lastErr = ts, nil
			for _, t := range ts {
				if match(t) && t.Health == "up" {
					return t, nil
				}
			}
		} else if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			b, _ := json.MarshalIndent(last, "", "  ")
			return Target{}, fmt.Errorf("no matching target up within %v (last error: %v); targets: %s", timeout, lastErr, b)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitTargetUp is WaitTarget for a test: it fails the test on timeout.
func (p *Prometheus) WaitTargetUp(t testing.TB, timeout time.Duration, match func(Target) bool) Target {
	t.Helper()
	tg, err := p.WaitTarget(context.Background(), timeout, match)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	return tg
}

// WaitQuery polls an instant query until ok accepts its result, and returns it.
func (p *Prometheus) WaitQuery(ctx context.Context, timeout time.Duration, promql string, ok func([]Sample) bool) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last []Sample
	var lastErr error
	for {
		s, err := p.Query(ctx, promql)
		if err == nil {
			if ok(s) {
				return s, nil
			}
			last = s
		} else if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("query %q not satisfied within %v (last result %v, last error %v)", promql, timeout, last, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// missingSD matches Prometheus's config error for a service discovery it lacks.
var missingSD = regexp.MustCompile(`field (\w+_sd_configs) not found in type config\.ScrapeConfig`)

// moduleRoot walks up from the working directory to the directory with go.mod.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: not a TCP address")
	}
	return addr.Port, nil
}
