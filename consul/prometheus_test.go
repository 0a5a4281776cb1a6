package consul

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inferstack/inferstack/consul/consultest"
	"github.com/inferstack/inferstack/internal/promtest"
)

// prometheusConfig discovers instances of the "inference" service through
// consul_sd and relabels from the registration's meta, as the shipped job does.
func prometheusConfig(consulAddr, token string) string {
	tok := ""
	if token != "" {
		tok = fmt.Sprintf("\n        token: %q", token)
	}
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: inference
    consul_sd_configs:
      - server: %q%s
        refresh_interval: 1s
        tags: [inference]
    relabel_configs:
      - source_labels: [__meta_consul_service_metadata_metrics_path]
        regex: (.+)
        target_label: __metrics_path__
      - source_labels: [__meta_consul_service_id]
        target_label: instance
      - source_labels: [__meta_consul_service_metadata_model]
        target_label: model
      - source_labels: [__meta_consul_service_metadata_version]
        target_label: version
      - source_labels: [__meta_consul_health]
        target_label: consul_health
`, consulAddr, tok)
}

// TestPrometheusDiscoversThroughDouble is the double's fidelity test: a real
// Prometheus finds the instance through consul_sd_configs against the double
// (agent/self, catalog/services and health/service with blocking queries) and
// scrapes it at the metrics path taken from the service meta.
//
// With ACLs on, Prometheus and the registrar each use a token with the policy of
// consul/acl/prometheus.hcl and consul/acl/inference.hcl respectively.
func TestPrometheusDiscoversThroughDouble(t *testing.T) {
	t.Parallel()
	t.Run("no ACLs", func(t *testing.T) { t.Parallel(); testPrometheusDiscovery(t, false) })
	t.Run("ACLs", func(t *testing.T) { t.Parallel(); testPrometheusDiscovery(t, true) })
}

func testPrometheusDiscovery(t *testing.T, withACL bool) {
	if promtest.Binary() == "" {
		t.Skip("prometheus not found: run `make prometheus`, or set PROMETHEUS_BIN")
	}
	const promToken, serverToken, adminToken = "prom-secret", "server-secret", "admin-secret"
	opts := []consultest.Option{consultest.WithMinCheckInterval(10 * time.Millisecond)}
	if withACL {
		opts = append(opts, consultest.WithACL(consultest.ACL{Tokens: map[string]consultest.Policy{
			promToken:   {ServiceRead: []string{"*"}, NodeRead: true, AgentRead: true},
			serverToken: {ServiceWrite: []string{"inference"}, NodeRead: true},
			adminToken:  {ServiceWrite: []string{"*"}, NodeWrite: true, AgentRead: true},
		}}))
	}
	dbl := consultest.New(t, opts...)
	tok := func(s string) string {
		if withACL {
			return s
		}
		return ""
	}

	// The instance serves metrics only at a non-default path, so up==1 proves the
	// __metrics_path__ relabelling from meta worked.
	metrics := prometheus.NewRegistry()
	probe := prometheus.NewCounter(prometheus.CounterOpts{Name: "consultest_probe_total", Help: "test"})
	metrics.MustRegister(probe)
	probe.Add(7)
	mux := http.NewServeMux()
	mux.Handle("/custom/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)

	cfg := baseConfig(dbl.Addr(), host, port)
	cfg.Meta["metrics_path"] = "/custom/metrics"
	cfg.Token = tok(serverToken)
	r, err := NewRegistrar(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, r)
	// A second service without the tag must not become a target.
	if err := registerOther(dbl.Addr(), tok(adminToken)); err != nil {
		t.Fatal(err)
	}

	prom := promtest.Start(t, prometheusConfig(dbl.Addr(), tok(promToken)))
	start := time.Now()
	tg := prom.WaitTargetUp(t, 30*time.Second, func(tg promtest.Target) bool {
		return tg.Labels["instance"] == cfg.ServiceID
	})
	t.Logf("target up %v after Prometheus started: %s", time.Since(start), tg.ScrapeURL)
	want := "http://" + net.JoinHostPort(host, p) + "/custom/metrics"
	if tg.ScrapeURL != want || tg.Labels["model"] != "tiny-model" || tg.Labels["version"] != "1.2.3" {
		t.Fatalf("target %+v, want scrape URL %s with model/version labels", tg, want)
	}
	if got := tg.DiscoveredLabels["__meta_consul_dc"]; got != "dc1" {
		t.Fatalf("__meta_consul_dc = %q (from /v1/agent/self)", got)
	}

	ctx := context.Background()
	q := fmt.Sprintf(`up{job="inference",instance=%q}`, cfg.ServiceID)
	if _, err := prom.WaitQuery(ctx, 15*time.Second, q, func(s []promtest.Sample) bool {
		return len(s) == 1 && s[0].Value == 1
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := prom.WaitQuery(ctx, 15*time.Second, `consultest_probe_total{model="tiny-model"}`, func(s []promtest.Sample) bool {
		return len(s) == 1 && s[0].Value == 7
	}); err != nil {
		t.Fatal(err)
	}
	targets, err := prom.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.DiscoveredLabels["__meta_consul_service"] != "inference" {
			t.Fatalf("untagged service became a target: %+v", tg.DiscoveredLabels)
		}
	}

	// Deregistering removes the target (the blocking health query wakes up).
	if err := r.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ts, err := prom.Targets(ctx)
		if err == nil && len(ts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target still listed 15s after deregistering: %+v (%v)", ts, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func registerOther(consulAddr, token string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+consulAddr+"/v1/agent/service/register",
		strings.NewReader(`{"Name":"other","ID":"other-1","Port":1,"Tags":["not-scraped"]}`))
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register other: HTTP %d", resp.StatusCode)
	}
	return nil
}
