package telemetry

import (
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferstack/inferstack/inference/engine"
)

var _ engine.Observer = (*Metrics)(nil)

func TestRateWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRateWindow(10*time.Second, func() time.Time { return now })
	r.Add(50)
	if got := r.Rate(); got != 0 {
		t.Errorf("rate counts the current, partial second: %v", got)
	}
	now = now.Add(time.Second)
	r.Add(30)
	if got := r.Rate(); got != 5 {
		t.Errorf("rate after one full second = %v, want 50/10", got)
	}
	now = now.Add(time.Second)
	if got := r.Rate(); got != 8 {
		t.Errorf("rate = %v, want (50+30)/10", got)
	}
	now = now.Add(9 * time.Second) // the 50 has left the window
	if got := r.Rate(); got != 3 {
		t.Errorf("rate = %v, want 30/10", got)
	}
	now = now.Add(time.Minute)
	if got := r.Rate(); got != 0 {
		t.Errorf("rate after a quiet minute = %v", got)
	}
}

func TestObserver(t *testing.T) {
	m := New(Options{DisableGPU: true})
	m.QueueWait(10 * time.Millisecond)
	m.FirstToken(50 * time.Millisecond)
	m.InterToken(5 * time.Millisecond)
	m.Step("decode", 4, 4, 3*time.Millisecond)
	m.Step("prefill", 2, 30, 9*time.Millisecond)
	m.PromptTokens(30)
	m.GeneratedTokens(4)
	m.QueueDepth(3, 4)
	m.Rejected("queue_full")
	m.Rejected("something new")
	m.Cancelled()
	checks := []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.PromptTokensC, 30},
		{m.GeneratedTokensC, 4},
		{m.QueueDepthG, 3},
		{m.RunningSequences, 4},
		{m.Failures.WithLabelValues(ReasonQueueFull), 1},
		{m.Failures.WithLabelValues("other"), 1},
		{m.Failures.WithLabelValues(ReasonCancelled), 1},
	}
	for i, c := range checks {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("check %d: %v, want %v", i, got, c.want)
		}
	}
	// Only decode steps feed the batch size histogram.
	if n := histogramCount(t, m, "inference_batch_size"); n != 1 {
		t.Errorf("inference_batch_size count %d, want 1", n)
	}
	if n := testutil.CollectAndCount(m.StepDuration); n != 2 {
		t.Errorf("inference_step_duration_seconds series %d, want 2", n)
	}
}

func histogramCount(t *testing.T, m *Metrics, name string) uint64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

func TestChecksAndLosses(t *testing.T) {
	m := New(Options{DisableGPU: true})
	m.Check("prompt_present", true)
	m.Check("prompt_present", false)
	m.Check("prompt_present", true)
	if got := testutil.ToFloat64(m.DataChecks.WithLabelValues("prompt_present", "pass")); got != 2 {
		t.Errorf("pass = %v", got)
	}
	if got := testutil.ToFloat64(m.ValidationChecks.WithLabelValues("prompt_present")); got != 1 {
		t.Errorf("validation_checks = %v, want 1 after a pass", got)
	}
	if got := testutil.ToFloat64(m.TrainingLoss); !math.IsNaN(got) {
		t.Errorf("training_loss before SetLosses = %v, want NaN", got)
	}
	m.SetLosses(2.5, 2.75)
	m.SetStartupValidationLoss(2.8)
	m.SetBuildInfo(BuildInfo{Version: "v1", Revision: "abc", Model: "tiny", ModelVersion: "1"})
	want := `
# HELP validation_loss Validation loss of the served model (nats): source="config" from its config, source="startup" recomputed at start-up on the held-out sample.
# TYPE validation_loss gauge
validation_loss{source="config"} 2.75
validation_loss{source="startup"} 2.8
`
	if err := testutil.CollectAndCompare(m.ValidationLoss, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.BuildInfoG.WithLabelValues("v1", "abc", "tiny", "1")); got != 1 {
		t.Errorf("build info = %v", got)
	}
}

func TestSystemCollector(t *testing.T) {
	c := newSystemCollector(time.Hour, slog.New(slog.DiscardHandler))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if v, ok := got["cpu_usage_percent"]; !ok || v < 0 || v > 100 {
		t.Errorf("cpu_usage_percent = %v (present %v), want 0..100", v, ok)
	}
	if v := got["ram_usage_bytes"]; v < 1<<20 {
		t.Errorf("ram_usage_bytes = %v, want at least 1 MiB on any real host", v)
	}
}

type fakeGPU struct {
	initErr error
	mu      sync.Mutex
	reads   int
	readErr error
}

func (f *fakeGPU) Init() error { return f.initErr }
func (f *fakeGPU) Shutdown()   {}
func (f *fakeGPU) Read() ([]gpuMemory, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.readErr != nil {
		return nil, f.readErr
	}
	return []gpuMemory{{Index: 0, UUID: "GPU-a", Used: 100, Total: 1000}, {Index: 1, UUID: "GPU-b", Used: 5, Total: 1000}}, nil
}

func TestGPUCollector(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if c := newGPUCollector(&fakeGPU{initErr: errNoNVML}, time.Hour, log); c != nil {
		t.Fatal("collector created without NVML")
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Errorf("want exactly one log line without NVML, got %q", logs.String())
	}
	f := &fakeGPU{}
	c := newGPUCollector(f, time.Hour, log)
	want := `
# HELP gpu_memory_used_bytes GPU memory in use, bytes, per GPU (NVML).
# TYPE gpu_memory_used_bytes gauge
gpu_memory_used_bytes{gpu="0",uuid="GPU-a"} 100
gpu_memory_used_bytes{gpu="1",uuid="GPU-b"} 5
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "gpu_memory_used_bytes"); err != nil {
		t.Error(err)
	}
	testutil.CollectAndCount(c)
	if f.reads != 1 {
		t.Errorf("NVML read %d times within the cache TTL, want 1", f.reads)
	}
	f2 := &fakeGPU{readErr: errors.New("GPU fell off the bus")}
	c2 := newGPUCollector(f2, 0, log)
	if n := testutil.CollectAndCount(c2); n != 0 {
		t.Errorf("%d series while reads fail, want 0", n)
	}
}

// TestNVML covers the real NVML path: without a driver Init must report the library
// as missing (and the collector stays absent); with one, every GPU must be exported
// with used ≤ total.
func TestNVML(t *testing.T) {
	api := nvmlAPI{}
	err := api.Init()
	if err != nil {
		if !errors.Is(err, errNoNVML) {
			t.Errorf("Init without a driver: %v, want errNoNVML", err)
		}
		if m := New(Options{Logger: slog.New(slog.DiscardHandler)}); m.gpu != nil {
			t.Error("GPU collector registered without NVML")
		}
		return
	}
	defer api.Shutdown()
	gpus, err := api.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 {
		t.Fatal("NVML initialised but reports no GPU")
	}
	for _, g := range gpus {
		t.Logf("GPU %d %s: %d of %d MiB used", g.Index, g.UUID, g.Used>>20, g.Total>>20)
		if g.UUID == "" || g.Total == 0 || g.Used > g.Total {
			t.Errorf("implausible reading %+v", g)
		}
	}
	m := New(Options{Logger: slog.New(slog.DiscardHandler)})
	defer m.Close()
	if n := testutil.CollectAndCount(m.Registry(), "gpu_memory_used_bytes", "gpu_memory_total_bytes"); n != 2*len(gpus) {
		t.Errorf("%d GPU series, want %d", n, 2*len(gpus))
	}
}
