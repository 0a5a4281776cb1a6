package loadtest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A server that stalls for 1s must show the stall in the open-loop percentiles, as
// wrk2 does: with one request in flight, the 100 requests due during the stall wait,
// and their latency counts from when they were due. The uncorrected service time
// hides the stall (only the one stalled request took long).
func TestCoordinatedOmissionCorrection(t *testing.T) {
	var first atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().UnixNano()
		first.CompareAndSwap(0, now)
		if since := time.Duration(now - first.Load()); since > 500*time.Millisecond && since < 600*time.Millisecond {
			time.Sleep(time.Second) // the stall
		}
		_, _ = w.Write([]byte(`{"generated_tokens":1}`))
	}))
	defer srv.Close()
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: only(ScenarioBasic),
		Pacer: ConstantPacer{Freq: 100}, Duration: 2500 * time.Millisecond, MaxInFlight: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := sum.Total
	t.Logf("corrected p50 %s p90 %s p99 %s; service p90 %s p99 %s; missed %d",
		formatSeconds(st.Latency.P50), formatSeconds(st.Latency.P90), formatSeconds(st.Latency.P99),
		formatSeconds(st.ServiceTime.P90), formatSeconds(st.ServiceTime.P99), sum.MissedSchedule)
	if st.Latency.P99 < 0.8 {
		t.Errorf("corrected p99 %s: the 1s stall is hidden", formatSeconds(st.Latency.P99))
	}
	if st.Latency.P90 < 0.3 {
		t.Errorf("corrected p90 %s: about 100 of 250 requests were due during the stall", formatSeconds(st.Latency.P90))
	}
	if st.ServiceTime.P90 > 0.1 {
		t.Errorf("uncorrected p90 %s: expected it to hide the stall", formatSeconds(st.ServiceTime.P90))
	}
	if sum.MissedSchedule < 50 {
		t.Errorf("missed schedule %d; the stall should have delayed about 100 requests", sum.MissedSchedule)
	}
	if st.Latency.Max < 0.95 || st.Latency.Max > 1.5 {
		t.Errorf("max latency %s; want about the 1s stall", formatSeconds(st.Latency.Max))
	}
}

// The seed's weights 3:2:1:1 must show in the requests the server receives, within
// ±2.5 percentage points over 3500 requests (3 standard deviations is about 2.5).
func TestScenarioMixMatchesWeights(t *testing.T) {
	fs := &fakeServer{}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	const n = 3500
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Users: 8, SpawnRate: 1000, Requests: n,
		MinLength: 20, MaxLength: 40, RapidLength: 8, Seed: 42,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total.Requests != n || sum.StoppedBy != "requests" {
		t.Fatalf("completed %d requests, stopped by %s; want exactly %d, stopped by requests", sum.Total.Requests, sum.StoppedBy, n)
	}
	counts := map[string]int{}
	for _, r := range fs.requests() {
		switch {
		case r == "GET /metrics":
			counts["metrics"]++
		case strings.HasSuffix(r, "&max_length=8"):
			counts["rapid"]++
		case strings.Contains(r, "&max_length="):
			counts["custom_length"]++
		case strings.HasPrefix(r, "POST /infer?prompt="):
			counts["basic"]++
		default:
			t.Errorf("unexpected request %q", r)
		}
	}
	for _, tc := range []struct {
		name  string
		share float64
	}{{"basic", 3.0 / 7}, {"custom_length", 2.0 / 7}, {"rapid", 1.0 / 7}, {"metrics", 1.0 / 7}} {
		got := float64(counts[tc.name]) / n
		if !within(got, tc.share, 0.025) {
			t.Errorf("%s: %.3f of requests, want %.3f ±0.025 (counts %v)", tc.name, got, tc.share, counts)
		}
	}
	// generated_tokens from /infer bodies are counted as output tokens.
	if c := findStats(t, sum, ScenarioCustomLength); c.OutputTokens < 20*c.Requests || c.OutputTokens > 40*c.Requests {
		t.Errorf("custom_length output tokens %d for %d requests; want max_length (20..40) each", c.OutputTokens, c.Requests)
	}
}

// In open loop one seeded generator draws every request, so the same seed sends the
// same requests (as a multiset: concurrency may reorder arrivals) and another seed does not.
func TestOpenLoopSeedReproducible(t *testing.T) {
	run := func(seed uint64) []string {
		fs := &fakeServer{}
		srv := httptest.NewServer(fs)
		defer srv.Close()
		if _, err := Run(context.Background(), Options{
			Targets: newTargets(t, srv), Pacer: ConstantPacer{Freq: 2000}, Requests: 300, Seed: seed,
		}); err != nil {
			t.Fatal(err)
		}
		got := fs.requests()
		slices.Sort(got)
		return got
	}
	a, b, c := run(5), run(5), run(6)
	if len(a) != 300 {
		t.Fatalf("server saw %d requests, want 300", len(a))
	}
	if !slices.Equal(a, b) {
		t.Error("the same seed sent different requests")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds sent the same requests")
	}
}

func TestMixSequenceDeterministic(t *testing.T) {
	o := Options{}.withDefaults()
	m, err := newMix(&o)
	if err != nil {
		t.Fatal(err)
	}
	draw := func(seed uint64) []string {
		rng := newRand(seed)
		var out []string
		for range 50 {
			s := m.build(m.pickScenario(rng), rng)
			out = append(out, s.method+" "+s.pathQuery+string(s.body))
		}
		return out
	}
	if !slices.Equal(draw(3), draw(3)) {
		t.Error("same seed, different sequence")
	}
	if slices.Equal(draw(3), draw(4)) {
		t.Error("different seeds, same sequence")
	}
}

// The streaming scenario's timings against a stub with known delays: first chunk after
// 150ms, then 6 chunks 40ms apart. Tolerances allow for scheduling on a busy machine.
func TestStreamTimings(t *testing.T) {
	fs := &fakeServer{firstDelay: 150 * time.Millisecond, gap: 40 * time.Millisecond, chunks: 6}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: only(ScenarioStream), Users: 2, SpawnRate: 100, Requests: 6,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := findStats(t, sum, ScenarioStream)
	if st.Errors != 0 || st.TTFT == nil || st.ITL == nil || st.TPOT == nil || st.StreamRate == nil {
		t.Fatalf("stream stats incomplete: %+v (errors %v)", st, st.ErrorKinds)
	}
	check := func(name string, got, want, tolLow, tolHigh float64) {
		if got < want-tolLow || got > want+tolHigh {
			t.Errorf("%s = %s, want %s (-%s/+%s)", name, formatSeconds(got), formatSeconds(want), formatSeconds(tolLow), formatSeconds(tolHigh))
		}
	}
	check("ttft p50", st.TTFT.P50, 0.150, 0.005, 0.060)
	check("itl p50", st.ITL.P50, 0.040, 0.010, 0.030)
	check("tpot p50", st.TPOT.P50, 0.040, 0.005, 0.030)
	check("latency p50", st.Latency.P50, 0.150+5*0.040, 0.010, 0.100)
	if st.ITL.Count != 6*5 {
		t.Errorf("itl count %d, want 30 (5 gaps in each of 6 streams)", st.ITL.Count)
	}
	if st.OutputTokens != 36 {
		t.Errorf("output tokens %d, want 36 (6 content events in each of 6 streams)", st.OutputTokens)
	}
	// tokens/s per request = 6 tokens / latency (about 0.35s, so about 17 tokens/s)
	if r, want := st.StreamRate.P50, 6/st.Latency.P50; !within(r, want, 0.1*want) || r > 18 {
		t.Errorf("output tokens/s per request p50 = %.1f, want 6/latency p50 = %.1f ±10%% (at most 17.1)", r, want)
	}
}

// A usage chunk's completion_tokens overrides the count of content events.
func TestStreamUsageTokens(t *testing.T) {
	fs := &fakeServer{chunks: 3, usage: true}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: only(ScenarioStream), Users: 1, Requests: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := findStats(t, sum, ScenarioStream); st.OutputTokens != 12 || st.Errors != 0 {
		t.Errorf("output tokens %d errors %d; want 12 (usage says 6 per stream) and 0", st.OutputTokens, st.Errors)
	}
}

func TestStreamProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		ct   string
	}{
		{"no DONE", "data: {\"choices\":[{\"text\":\"a\"}]}\n\n", "text/event-stream"},
		{"not JSON", "data: {oops\n\ndata: [DONE]\n\n", "text/event-stream"},
		{"error event", "data: {\"error\":{\"message\":\"overloaded\"}}\n\ndata: [DONE]\n\n", "text/event-stream"},
		{"wrong content type", "{\"text\":\"a\"}", "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			sum, err := Run(context.Background(), Options{
				Targets: newTargets(t, srv), Weights: only(ScenarioStream), Users: 1, Requests: 3,
			})
			if err != nil {
				t.Fatal(err)
			}
			st := findStats(t, sum, ScenarioStream)
			if st.Errors != 3 || st.ErrorKinds["sse_protocol"] != 3 {
				t.Errorf("errors %d by kind %v; want 3 sse_protocol", st.Errors, st.ErrorKinds)
			}
		})
	}
}

// A final "data: [DONE]" without the closing blank line still ends the stream cleanly.
func TestStreamDoneWithoutBlankLine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(": comment\nevent: x\ndata: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\ndata: [DONE]"))
	}))
	defer srv.Close()
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: only(ScenarioStream), Users: 1, Requests: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := findStats(t, sum, ScenarioStream); st.Errors != 0 || st.OutputTokens != 4 {
		t.Errorf("errors %v tokens %d; want none and 4", st.ErrorKinds, st.OutputTokens)
	}
}

func TestErrorKinds(t *testing.T) {
	// A port with nothing listening: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	overloaded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"queue full"}`, http.StatusTooManyRequests)
	}))
	defer overloaded.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
	}))
	defer slow.Close()
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer hangup.Close()

	for _, tc := range []struct {
		name, url, kind, code string
		std                   bool // net/http instead of the fast path
	}{
		{"refused", "http://" + closedAddr, "connection_refused", "none", false},
		{"status", overloaded.URL, "status", "429", false},
		{"timeout", slow.URL, "timeout", "none", false},
		{"reset", hangup.URL, "connection_reset", "none", false},
		{"refused/net-http", "http://" + closedAddr, "connection_refused", "none", true},
		{"status/net-http", overloaded.URL, "status", "429", true},
		{"timeout/net-http", slow.URL, "timeout", "none", true},
		{"reset/net-http", hangup.URL, "connection_reset", "none", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, err := NewStaticTargets(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := Run(context.Background(), Options{
				Targets: targets, Weights: only(ScenarioBasic), Users: 1, Requests: 2, Timeout: 100 * time.Millisecond,
				DisableFastPath: tc.std,
			})
			if err != nil {
				t.Fatal(err)
			}
			st := sum.Total
			if st.Errors != 2 || st.ErrorKinds[tc.kind] != 2 || st.Codes[tc.code] != 2 || st.ErrorRate != 1 {
				t.Errorf("errors %d kinds %v codes %v rate %v; want 2 %s with code %s", st.Errors, st.ErrorKinds, st.Codes, st.ErrorRate, tc.kind, tc.code)
			}
		})
	}
}

// Cancelling the context (SIGTERM in the CLI) stops issuing at once and returns the
// summary; requests still in flight after the grace period are counted as aborted.
func TestCancelStopsWithSummary(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("max_length") == "8" { // rapid requests hang
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	sum, err := Run(ctx, Options{
		Targets: newTargets(t, srv), Weights: Weights{ScenarioBasic: 1, ScenarioRapid: 1}, Users: 4, SpawnRate: 1000,
		Duration: time.Minute, StopGrace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("stop took %v; want about 300ms + 200ms grace", took)
	}
	if sum.StoppedBy != "signal" || sum.Aborted != 4 {
		t.Errorf("stopped by %q with %d aborted; want signal and 4 (every user hung on a rapid request)", sum.StoppedBy, sum.Aborted)
	}
	if sum.Total.Errors != 0 {
		t.Errorf("aborted requests counted as errors: %v", sum.Total.ErrorKinds)
	}
}

func TestMetricsExported(t *testing.T) {
	fs := &fakeServer{chunks: 3, gap: time.Millisecond}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: Weights{ScenarioBasic: 1, ScenarioStream: 1}, Pacer: ConstantPacer{Freq: 500},
		Requests: 100, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	basic, stream := findStats(t, sum, ScenarioBasic), findStats(t, sum, ScenarioStream)
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("basic", "200")); got != float64(basic.Requests) {
		t.Errorf("loadtest_requests_total{basic,200} = %v, want %d", got, basic.Requests)
	}
	if got := testutil.ToFloat64(m.OutputTokens.WithLabelValues("stream")); got != float64(stream.OutputTokens) {
		t.Errorf("loadtest_output_tokens_total{stream} = %v, want %d", got, stream.OutputTokens)
	}
	if got := testutil.ToFloat64(m.InFlight); got != 0 {
		t.Errorf("loadtest_in_flight = %v after the run", got)
	}
	names := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"loadtest_requests_total", "loadtest_request_duration_seconds", "loadtest_time_to_first_token_seconds",
		"loadtest_inter_token_latency_seconds", "loadtest_output_tokens_total", "loadtest_users", "loadtest_target_rate",
		"loadtest_missed_schedule_total", "loadtest_in_flight", "loadtest_errors_total"} {
		if !names[n] {
			t.Errorf("metric %s not exported (have %v)", n, names)
		}
	}
}

func TestTimeSeriesBounded(t *testing.T) {
	r := newRecorder(time.Now(), time.Second, 100, nil)
	res := result{scenario: ScenarioBasic, code: 200, latency: 10 * time.Millisecond}
	for sec := range 10000 {
		res.end = time.Duration(sec) * time.Second
		r.record(&res)
	}
	if n := len(r.ts.buckets); n > 100 {
		t.Errorf("%d buckets, cap 100", n)
	}
	if r.ts.width != 128*time.Second {
		t.Errorf("bucket width %v after 10000s with 100 buckets; want 128s", r.ts.width)
	}
	var total uint64
	for _, b := range r.ts.buckets {
		total += b.requests
	}
	if total != 10000 {
		t.Errorf("buckets hold %d requests, want 10000", total)
	}
	if q := r.ts.buckets[3].quantile(.99); !within(q.Seconds(), 0.010, 0.0006) {
		t.Errorf("bucket p99 %v, want 10ms ±5%%", q)
	}
}

func TestOptionsValidation(t *testing.T) {
	targets, _ := NewStaticTargets("http://127.0.0.1:1")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no target", Options{}, "no target"},
		{"negative weight", Options{Targets: targets, Weights: Weights{ScenarioBasic: -1, ScenarioRapid: 1}}, "weight of basic"},
		{"length range", Options{Targets: targets, MinLength: 50, MaxLength: 10}, "length range"},
		{"think", Options{Targets: targets, ThinkMin: time.Second, ThinkMax: time.Millisecond}, "think time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// A last bucket shorter than half a width folds into the one before, so a run that
// ends just after a bucket boundary shows no spurious rate spike.
func TestSeriesFoldsShortTail(t *testing.T) {
	r := newRecorder(time.Now(), time.Second, 100, nil)
	for _, end := range []time.Duration{500 * time.Millisecond, 1200 * time.Millisecond, 1700 * time.Millisecond, 2050 * time.Millisecond} {
		r.record(&result{scenario: ScenarioBasic, code: 200, end: end, latency: time.Millisecond})
	}
	s := r.summary("closed", 2100*time.Millisecond, "duration")
	if len(s.Series.Points) != 2 {
		t.Fatalf("%d points, want 2 (the 0.1s tail folded)", len(s.Series.Points))
	}
	last := s.Series.Points[1]
	if last.Requests != 3 || !within(last.RPS, 3/1.1, 1e-9) {
		t.Errorf("last point %+v; want 3 requests over 1.1s", last)
	}
	if first := s.Series.Points[0]; first.RPS != 1 {
		t.Errorf("first point rate %v, want 1", first.RPS)
	}
}

// A pacer that ends its own schedule ends the run at once (no duration, no request
// limit), reporting "done" rather than waiting for a signal.
func TestPacerEndingScheduleEndsRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"generated_tokens":1}`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pacer := PacerFunc(func(hits uint64) (time.Duration, bool) {
		if hits >= 5 {
			return 0, true
		}
		return time.Millisecond, false
	})
	start := time.Now()
	sum, err := Run(ctx, Options{Targets: newTargets(t, srv), Weights: only(ScenarioBasic), Pacer: pacer})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Run took %s after a 5-request schedule ended", took)
	}
	if sum.Total.Requests != 5 || sum.StoppedBy != "done" {
		t.Errorf("requests %d, stopped by %q; want 5, done", sum.Total.Requests, sum.StoppedBy)
	}
}

// With AuthToken every request carries the bearer token: the fast path (basic,
// metrics) and net/http (stream) alike.
func TestAuthTokenSentOnEveryPath(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	fs := &fakeServer{chunks: 2}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path+" "+r.Header.Get("Authorization")]++
		mu.Unlock()
		fs.ServeHTTP(w, r)
	}))
	defer srv.Close()
	sum, err := Run(context.Background(), Options{Targets: newTargets(t, srv), Users: 2, Requests: 60, AuthToken: "s3cret",
		Weights: Weights{ScenarioBasic: 1, ScenarioMetrics: 1, ScenarioStream: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total.Errors != 0 {
		t.Fatalf("%d errors: %+v", sum.Total.Errors, sum.Scenarios)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range []string{"/infer", "/metrics", "/v1/completions"} {
		if seen[p+" Bearer s3cret"] == 0 {
			t.Errorf("no %s request with the token; seen %v", p, seen)
		}
	}
	for k := range seen {
		if !strings.HasSuffix(k, " Bearer s3cret") {
			t.Errorf("a request without the token: %q", k)
		}
	}
}

// emptyTargets never has a server to offer, as Consul with no passing instance.
type emptyTargets struct{}

func (emptyTargets) Next() (Target, error) { return Target{}, ErrNoTarget }

// A closed-loop user with no target counts the attempt and waits noTargetWait instead
// of spinning (which recorded millions of attempts a second).
func TestClosedLoopNoTargetWaits(t *testing.T) {
	sum, err := Run(context.Background(), Options{Targets: emptyTargets{}, Users: 4, SpawnRate: 1000, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// 4 users, one attempt each at 0 s and 1 s.
	if sum.Total.Requests < 4 || sum.Total.Requests > 8 || sum.Total.Errors != sum.Total.Requests {
		t.Errorf("%d attempts, %d errors in 1.5 s with 4 users; want 4-8, all errors", sum.Total.Requests, sum.Total.Errors)
	}
}

// The first time-series point shows the users started in it, not the zero sampled
// before they started.
func TestSeriesUsersFromFirstBucket(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{})
	defer srv.Close()
	sum, err := Run(context.Background(), Options{Targets: newTargets(t, srv), Users: 3, SpawnRate: 100,
		Weights: only(ScenarioMetrics), Duration: 300 * time.Millisecond, ThinkMin: 10 * time.Millisecond, ThinkMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Series.Points) == 0 || sum.Series.Points[0].Users != 3 {
		t.Errorf("series %+v; want 3 users in the first point", sum.Series.Points)
	}
}

// A negative StopGrace (the CLI's --stop-grace 0) cancels in-flight requests at the stop.
func TestNoStopGrace(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	sum, err := Run(context.Background(), Options{Targets: newTargets(t, srv), Users: 2, SpawnRate: 100,
		Duration: 200 * time.Millisecond, StopGrace: -1, Weights: only(ScenarioMetrics)})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second || sum.Aborted != 2 {
		t.Errorf("took %s with %d aborted; want the 2 hanging requests cancelled at the 200ms stop", el, sum.Aborted)
	}
}

// A closed-loop user whose server refuses connections waits before trying again
// instead of spinning (which recorded ~50,000 refused attempts a second), and the
// summary says that no request reached a server.
func TestClosedLoopRefusedWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	targets, err := NewStaticTargets("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), Options{Targets: targets, Users: 2, SpawnRate: 1000, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Total.Requests < 2 || sum.Total.Requests > 6 || !sum.ReachedNoServer() {
		t.Errorf("%d attempts (kinds %v) in 1.5 s with 2 users; want 2-6, none reaching a server", sum.Total.Requests, sum.Total.ErrorKinds)
	}
}
