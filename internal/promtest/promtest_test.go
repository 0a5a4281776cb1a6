package promtest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestStartScrapeQuery(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "promtest_answer", Help: "test"})
	g.Set(42)
	reg.MustRegister(g)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(target.Close)
	host := strings.TrimPrefix(target.URL, "http://")

	p := Start(t, fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: static
    static_configs:
      - targets: [%q]
        labels: {role: probe}
`, host))
	tg := p.WaitTargetUp(t, 20*time.Second, func(tg Target) bool { return tg.Labels["role"] == "probe" })
	if tg.ScrapeURL != target.URL+"/metrics" || tg.ScrapePool != "static" {
		t.Fatalf("target: %+v", tg)
	}
	s, err := p.WaitQuery(context.Background(), 20*time.Second, `promtest_answer{job="static"}`, func(s []Sample) bool { return len(s) == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if s[0].Value != 42 || s[0].Metric["role"] != "probe" {
		t.Fatalf("sample: %+v", s[0])
	}
	if sc, err := p.Query(context.Background(), "1+1"); err != nil || len(sc) != 1 || sc[0].Value != 2 {
		t.Fatalf("scalar query: %+v %v", sc, err)
	}
	if _, err := p.Query(context.Background(), "up{"); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Fatalf("bad query: want a bad_data error, got %v", err)
	}
}
