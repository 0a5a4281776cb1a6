package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkClosedLoop measures the generator's cost per request against an in-process
// trivial server (the server's cost is included; use bench/compare.sh for the
// per-core comparison with wrk and Locust):
//
//	go test -run '^$' -bench ClosedLoop -benchmem ./loadtest
func BenchmarkClosedLoop(b *testing.B) {
	for _, bc := range []struct {
		name string
		w    Weights
	}{{"get_metrics", only(ScenarioMetrics)}, {"post_infer", only(ScenarioBasic)}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(`{"text":"ok","generated_tokens":1}`))
			}))
			defer srv.Close()
			targets, _ := NewStaticTargets(srv.URL)
			b.ReportAllocs()
			b.ResetTimer()
			sum, err := Run(context.Background(), Options{Targets: targets, Weights: bc.w, Users: 8, SpawnRate: 1e6, Requests: uint64(b.N)})
			if err != nil {
				b.Fatal(err)
			}
			if sum.Total.Errors > 0 {
				b.Fatalf("errors: %v", sum.Total.ErrorKinds)
			}
		})
	}
}
