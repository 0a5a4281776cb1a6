package consul

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferstack/inferstack/internal/syncbuf"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferstack/inferstack/consul/consultest"
)

func testLogger() (*slog.Logger, *syncbuf.Buffer) {
	buf := &syncbuf.Buffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// readyServer is a local readiness endpoint (and /metrics), as the server has.
func readyServer(t *testing.T) (host string, port int) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready")) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return h, n
}

func baseConfig(consulAddr, host string, port int) Config {
	return Config{
		Address:        consulAddr,
		ServiceName:    "inference",
		ServiceID:      "inference-test-1",
		AdvertiseAddr:  host,
		Port:           port,
		Tags:           []string{"inference", "metrics", "tiny-model"},
		Meta:           map[string]string{"model": "tiny-model", "model_version": "3", "version": "1.2.3"},
		CheckInterval:  100 * time.Millisecond,
		CheckTimeout:   time.Second,
		ResyncInterval: 200 * time.Millisecond,
		BackoffMin:     20 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
	}
}

func startRun(t *testing.T, r *Registrar) (cancel func(), done <-chan struct{}) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ch := make(chan struct{})
	go func() { r.Run(ctx); close(ch) }()
	t.Cleanup(func() { stop(); <-ch })
	return stop, ch
}

func TestRegistrationAppearsWithPassingCheck(t *testing.T) {
	t.Parallel()
	dbl := consultest.New(t, consultest.WithMinCheckInterval(10*time.Millisecond))
	host, port := readyServer(t)
	reg := prometheus.NewRegistry()
	logger, _ := testLogger()
	r, err := NewRegistrar(baseConfig(dbl.Addr(), host, port), logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, r)

	var snap consultest.ServiceSnapshot
	if !dbl.WaitFor(5*time.Second, func() bool {
		var ok bool
		snap, ok = dbl.Service("inference-test-1")
		return ok && len(snap.Checks) == 1 && snap.Checks[0].Status == consultest.StatusPassing
	}) {
		t.Fatalf("no registration with a passing check: %+v", snap)
	}
	if snap.Name != "inference" || snap.Address != host || snap.Port != port ||
		strings.Join(snap.Tags, ",") != "inference,metrics,tiny-model" {
		t.Fatalf("registration: %+v", snap)
	}
	wantMeta := map[string]string{"metrics_path": "/metrics", "model": "tiny-model", "model_version": "3", "version": "1.2.3"}
	for k, v := range wantMeta {
		if snap.Meta[k] != v {
			t.Errorf("meta %s = %q, want %q (all: %v)", k, snap.Meta[k], v, snap.Meta)
		}
	}
	ck := snap.Checks[0]
	wantURL := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/readyz"
	if ck.Type != "http" || ck.HTTP != wantURL || ck.Interval != 100*time.Millisecond ||
		ck.Timeout != time.Second || ck.DeregisterCriticalServiceAfter != time.Minute {
		t.Fatalf("check: %+v, want HTTP %s", ck, wantURL)
	}
	if !r.Registered() {
		t.Fatal("Registered() is false")
	}
	if got := testutil.ToFloat64(r.registeredGauge); got != 1 {
		t.Fatalf("%s = %v, want 1", MetricRegistered, got)
	}
	if n, err := testutil.GatherAndCount(reg, MetricRegistered, MetricRegistrationErrors); err != nil || n != 2 {
		t.Fatalf("metrics on the registry: %d, %v", n, err)
	}
}

func TestConsulAbsentAtStartThenAppears(t *testing.T) {
	t.Parallel()
	// An address where nothing listens yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	host, port := readyServer(t)
	cfg := baseConfig(addr, host, port)
	r, err := NewRegistrar(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, r)

	// Several attempts fail while the agent is absent.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(r.errorsTotal) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.ToFloat64(r.errorsTotal); n < 3 {
		t.Fatalf("registration errors = %v, want >= 3 while Consul is absent", n)
	}
	if r.Registered() || testutil.ToFloat64(r.registeredGauge) != 0 {
		t.Fatal("registered without an agent")
	}

	started := time.Now()
	dbl := consultest.New(t, consultest.WithAddress(addr))
	// Bound: the retry sleeping when the agent appears ends within BackoffMax,
	// then one request; allow 1s for a loaded machine.
	bound := cfg.BackoffMax + time.Second
	if !dbl.WaitFor(bound, func() bool { _, ok := dbl.Service(cfg.ServiceID); return ok }) {
		t.Fatalf("not registered within %v of the agent starting", bound)
	}
	t.Logf("registered %v after the agent started (bound %v)", time.Since(started), bound)
	if !dbl.WaitFor(time.Second, r.Registered) {
		t.Fatal("Registered() stayed false")
	}
}

func TestReRegistersAfterAgentRestart(t *testing.T) {
	t.Parallel()
	dbl := consultest.New(t)
	host, port := readyServer(t)
	cfg := baseConfig(dbl.Addr(), host, port)
	r, err := NewRegistrar(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, r)
	if !dbl.WaitFor(5*time.Second, func() bool { _, ok := dbl.Service(cfg.ServiceID); return ok }) {
		t.Fatal("not registered")
	}

	for i := 0; i < 2; i++ {
		if err := dbl.Restart(); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		if _, ok := dbl.Service(cfg.ServiceID); ok {
			t.Fatal("the double kept the service across Restart")
		}
		// Bound: the next comparison (ResyncInterval) notices, then one register
		// call; allow 1s for a loaded machine.
		bound := cfg.ResyncInterval + time.Second
		if !dbl.WaitFor(bound, func() bool { _, ok := dbl.Service(cfg.ServiceID); return ok }) {
			t.Fatalf("restart %d: not registered again within %v", i+1, bound)
		}
		t.Logf("restart %d: registered again after %v (bound %v)", i+1, time.Since(restarted), bound)
	}
}

func TestDeregisterStopsReRegistration(t *testing.T) {
	t.Parallel()
	dbl := consultest.New(t)
	host, port := readyServer(t)
	cfg := baseConfig(dbl.Addr(), host, port)
	r, err := NewRegistrar(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	_, done := startRun(t, r)
	if !dbl.WaitFor(5*time.Second, r.Registered) {
		t.Fatal("not registered")
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := dbl.Service(cfg.ServiceID); ok {
		t.Fatal("still registered after Deregister")
	}
	if r.Registered() || testutil.ToFloat64(r.registeredGauge) != 0 {
		t.Fatal("registration state not cleared")
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after Deregister")
	}
	time.Sleep(3 * cfg.ResyncInterval)
	if _, ok := dbl.Service(cfg.ServiceID); ok {
		t.Fatal("registered again after Deregister")
	}
	// Once the agent has forgotten the instance (restart, or reaped after its check
	// stayed critical), deregistering answers 404: that is success, not a failure.
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatalf("Deregister of an instance the agent no longer has: %v", err)
	}
}

// A registration the agent rejects (400) is logged as an error and retried at the
// slowest pace (BackoffMax), not at the fastest as a transient failure would be.
func TestRejectedRegistrationBacksOffFully(t *testing.T) {
	t.Parallel()
	var attempts atomic.Int32
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		http.Error(w, "Invalid Service Meta: Value is too long", http.StatusBadRequest)
	}))
	defer agent.Close()
	cfg := baseConfig(strings.TrimPrefix(agent.URL, "http://"), "127.0.0.1", 8000)
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 300*time.Millisecond
	log, logs := testLogger()
	r, err := NewRegistrar(cfg, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := startRun(t, r)
	time.Sleep(700 * time.Millisecond)
	cancel()
	<-done
	// Fast backoff from 1 ms would make well over ten attempts in 700 ms; the full
	// 300 ms backoff makes three.
	if n := attempts.Load(); n < 1 || n > 4 {
		t.Errorf("%d registration attempts in 700ms, want 1-4 (300ms apart)", n)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "consul rejected the registration") {
		t.Errorf("logs lack the ERROR line:\n%s", logs.String())
	}
}

func TestDeregisterBeforeRunAndWithoutAgent(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	r, err := NewRegistrar(baseConfig(addr, "127.0.0.1", 8000), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.Deregister(ctx); err == nil || !strings.Contains(err.Error(), "deregister service inference-test-1") {
		t.Fatalf("want a wrapped connection error, got %v", err)
	}
	// Run after Deregister returns at once.
	done := make(chan struct{})
	go func() { r.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run kept running after Deregister")
	}
}

func TestACLTokenErrorsAndNeverLogged(t *testing.T) {
	t.Parallel()
	const good, bad = "s3cr3t-good-token-7f1e", "s3cr3t-wrong-token-90ab"
	dbl := consultest.New(t, consultest.WithACL(consultest.ACL{Tokens: map[string]consultest.Policy{
		good: {ServiceWrite: []string{"inference"}},
	}}))
	host, port := readyServer(t)

	// Wrong token: the error is surfaced (logged, counted) and the state stays 0.
	logger, logs := testLogger()
	cfg := baseConfig(dbl.Addr(), host, port)
	cfg.Token = bad
	r, err := NewRegistrar(cfg, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, r)
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(r.errorsTotal) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if testutil.ToFloat64(r.errorsTotal) < 2 || r.Registered() || testutil.ToFloat64(r.registeredGauge) != 0 {
		t.Fatalf("wrong token: errors %v, registered %v", testutil.ToFloat64(r.errorsTotal), r.Registered())
	}
	if !strings.Contains(logs.String(), "ACL not found") {
		t.Fatalf("the agent's answer is not in the log:\n%s", logs.String())
	}

	// Right token from a file: registered; still never logged.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logger2, logs2 := testLogger()
	cfg2 := baseConfig(dbl.Addr(), host, port)
	cfg2.ServiceID = "inference-test-2"
	cfg2.TokenFile = file
	r2, err := NewRegistrar(cfg2, logger2, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRun(t, r2)
	if !dbl.WaitFor(5*time.Second, r2.Registered) {
		t.Fatalf("not registered with the token file; log:\n%s", logs2.String())
	}
	if err := r2.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]string{"wrong-token log": logs.String(), "token-file log": logs2.String()} {
		if strings.Contains(l, good) || strings.Contains(l, bad) || strings.Contains(l, "s3cr3t") {
			t.Fatalf("%s contains the token:\n%s", name, l)
		}
	}
	if !strings.Contains(logs2.String(), "registered in consul") {
		t.Fatalf("token-file log has no registration line:\n%s", logs2.String())
	}

	// A missing token file is an error at construction, naming the file only.
	cfg3 := baseConfig(dbl.Addr(), host, port)
	cfg3.TokenFile = filepath.Join(t.TempDir(), "absent")
	if _, err := NewRegistrar(cfg3, nil, nil); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("missing token file: %v", err)
	}
}

func TestMetricsRegistrationConflict(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := baseConfig("127.0.0.1:1", "127.0.0.1", 8000)
	if _, err := NewRegistrar(cfg, nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRegistrar(cfg, nil, reg); err == nil || !strings.Contains(err.Error(), "register consul metrics") {
		t.Fatalf("second registrar on the same registry: %v", err)
	}
}
