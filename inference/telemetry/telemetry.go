// Package telemetry defines the inference server's Prometheus metrics on a private
// registry: the seed system's metric names (kept exactly, they are a compatibility
// contract with existing dashboards), the inference_-prefixed serving metrics, and
// collectors that read system CPU, memory and NVIDIA GPU memory at scrape time.
//
// Metrics implements the engine's Observer interface, so the engine reports queue wait,
// time to first token, inter-token latency, step timings and token counts where they
// happen, once each.
package telemetry

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Histogram buckets, in seconds unless noted. They are chosen for LLM serving, where a
// request lasts from milliseconds (a cached short answer) to minutes (a long generation
// on a busy CPU host).
var (
	// LatencyBuckets covers whole requests and queue waits: 1 ms .. 10 min.
	LatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}
	// TTFTBuckets covers time to first token: 1 ms .. 2 min.
	TTFTBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 2, 5, 10, 30, 60, 120}
	// TokenBuckets covers one decode step or the gap between two tokens: 0.25 ms .. 10 s.
	TokenBuckets = []float64{0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5, 10}
	// BatchBuckets covers decode-step batch sizes (sequences): 1 .. 256.
	BatchBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}
)

// Endpoint label values of model_inference_latency_seconds and the request metrics.
// Label values never come from user input: routes are gin's templates, or "unmatched".
const (
	EndpointInfer       = "/infer"
	EndpointCompletions = "/v1/completions"
	EndpointUnmatched   = "unmatched"
)

// Failure reasons of inference_request_failures_total.
const (
	ReasonValidation   = "validation"
	ReasonTooLarge     = "too_large"
	ReasonUnauthorized = "unauthorized"
	ReasonQueueFull    = "queue_full"
	ReasonQueueTimeout = "queue_timeout"
	ReasonDraining     = "draining"
	ReasonTimeout      = "timeout"
	ReasonCancelled    = "cancelled"
	ReasonInternal     = "internal"
)

// BuildInfo labels inference_build_info.
type BuildInfo struct {
	Version      string // application version
	Revision     string // VCS revision
	Model        string // model name
	ModelVersion string
}

// Options configures New.
type Options struct {
	Logger *slog.Logger // default slog.Default()
	// SystemCacheTTL is how long a scrape reuses system and GPU readings (default 1s).
	SystemCacheTTL time.Duration
	// DisableGPU skips NVML entirely (tests, or hosts where loading NVML is unwanted).
	DisableGPU bool
	// RateWindow is the window of inference_generated_tokens_per_second (default 10s).
	RateWindow time.Duration
}

// Metrics holds every metric of the inference server, registered on its own registry.
// All methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	InferenceLatency   *prometheus.HistogramVec // model_inference_latency_seconds{endpoint}
	TrainingLoss       prometheus.Gauge
	ValidationLoss     *prometheus.GaugeVec // {source}
	DataChecks         *prometheus.CounterVec
	ValidationChecks   *prometheus.GaugeVec
	TTFT               prometheus.Histogram
	InterTokenLatency  prometheus.Histogram
	QueueWaitH         prometheus.Histogram
	PromptTokensC      prometheus.Counter
	GeneratedTokensC   prometheus.Counter
	Requests           *prometheus.CounterVec // {endpoint,code}
	Failures           *prometheus.CounterVec // {reason}
	InFlight           prometheus.Gauge
	BatchSize          prometheus.Histogram
	StepDuration       *prometheus.HistogramVec // {kind}
	QueueDepthG        prometheus.Gauge
	RunningSequences   prometheus.Gauge
	Ready              prometheus.Gauge
	BuildInfoG         *prometheus.GaugeVec
	generatedTokenRate *rateWindow
	system             *systemCollector
	gpu                *gpuCollector
}

// New creates the metrics on a new private registry, with the Go and process
// collectors, the system collector (cpu_usage_percent, ram_usage_bytes) and, where an
// NVIDIA driver exists, the GPU collector.
func New(opts Options) *Metrics {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SystemCacheTTL <= 0 {
		opts.SystemCacheTTL = time.Second
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = 10 * time.Second
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		InferenceLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "model_inference_latency_seconds",
			Help:    "Time to answer a successful inference request, from arrival to the last token (queue wait included).",
			Buckets: LatencyBuckets,
		}, []string{"endpoint"}),
		TrainingLoss: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "training_loss",
			Help: "Final training loss of the served model (mean next-token cross-entropy, nats), from its config.",
		}),
		ValidationLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "validation_loss",
			Help: "Validation loss of the served model (nats): source=\"config\" from its config, source=\"startup\" recomputed at start-up on the held-out sample.",
		}, []string{"source"}),
		DataChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "data_validation_checks_total",
			Help: "Input validation checks run, by check and result (pass, fail).",
		}, []string{"check", "result"}),
		ValidationChecks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "validation_checks",
			Help: "Result of the last run of each validation check: 1 passed, 0 failed.",
		}, []string{"check"}),
		TTFT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inference_time_to_first_token_seconds",
			Help:    "Time from submitting a request to the engine until its first generated token.",
			Buckets: TTFTBuckets,
		}),
		InterTokenLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inference_inter_token_latency_seconds",
			Help:    "Time between two consecutive generated tokens of one sequence.",
			Buckets: TokenBuckets,
		}),
		QueueWaitH: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inference_queue_wait_seconds",
			Help:    "Time a request waited for a batch slot before its prefill started.",
			Buckets: LatencyBuckets,
		}),
		PromptTokensC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inference_prompt_tokens_total",
			Help: "Prompt tokens prefilled.",
		}),
		GeneratedTokensC: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "inference_generated_tokens_total",
			Help: "Tokens generated.",
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inference_requests_total",
			Help: "HTTP requests answered, by route template and status code.",
		}, []string{"endpoint", "code"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inference_request_failures_total",
			Help: "Requests that did not complete normally, by reason.",
		}, []string{"reason"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "inference_requests_in_flight",
			Help: "Inference requests being handled (queued or generating).",
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "inference_batch_size",
			Help:    "Sequences decoded together in one decode step.",
			Buckets: BatchBuckets,
		}),
		StepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "inference_step_duration_seconds",
			Help:    "Duration of one batched engine step, by kind (prefill, decode).",
			Buckets: TokenBuckets,
		}, []string{"kind"}),
		QueueDepthG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "inference_queue_depth",
			Help: "Requests waiting for a batch slot.",
		}),
		RunningSequences: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "inference_running_sequences",
			Help: "Sequences in the running batch.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "inference_ready",
			Help: "1 when the model is loaded and warmed and the server is not draining, else 0.",
		}),
		BuildInfoG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "inference_build_info",
			Help: "Always 1; labels carry the server version, VCS revision, model name and model version.",
		}, []string{"version", "revision", "model", "model_version"}),
		generatedTokenRate: newRateWindow(opts.RateWindow, time.Now),
	}
	rate := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "inference_generated_tokens_per_second",
		Help: "Generated tokens per second over the last " + strconv.Itoa(int(opts.RateWindow.Seconds())) + " seconds.",
	}, m.generatedTokenRate.Rate)
	m.system = newSystemCollector(opts.SystemCacheTTL, opts.Logger)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.InferenceLatency, m.TrainingLoss, m.ValidationLoss, m.DataChecks, m.ValidationChecks,
		m.TTFT, m.InterTokenLatency, m.QueueWaitH, m.PromptTokensC, m.GeneratedTokensC,
		m.Requests, m.Failures, m.InFlight, m.BatchSize, m.StepDuration,
		m.QueueDepthG, m.RunningSequences, m.Ready, m.BuildInfoG, rate, m.system,
	)
	if !opts.DisableGPU {
		if g := newGPUCollector(nvmlAPI{}, opts.SystemCacheTTL, opts.Logger); g != nil {
			m.gpu = g
			m.reg.MustRegister(g)
		}
	}
	// Losses are unknown until set: NaN rather than a misleading 0.
	m.TrainingLoss.Set(math.NaN())
	m.ValidationLoss.WithLabelValues("config").Set(math.NaN())
	return m
}

// Registry returns the private registry (for tests and for other packages that add
// their metrics, such as the Consul registrar).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Close releases NVML when it was initialised.
func (m *Metrics) Close() {
	if m.gpu != nil {
		m.gpu.close()
	}
}

// SetBuildInfo sets inference_build_info to 1 with the given labels.
func (m *Metrics) SetBuildInfo(b BuildInfo) {
	m.BuildInfoG.Reset()
	m.BuildInfoG.WithLabelValues(b.Version, b.Revision, b.Model, b.ModelVersion).Set(1)
}

// SetLosses sets training_loss and validation_loss{source="config"} from the model's
// config (NaN when absent).
func (m *Metrics) SetLosses(training, validation float64) {
	m.TrainingLoss.Set(training)
	m.ValidationLoss.WithLabelValues("config").Set(validation)
}

// SetStartupValidationLoss sets validation_loss{source="startup"}.
func (m *Metrics) SetStartupValidationLoss(v float64) {
	m.ValidationLoss.WithLabelValues("startup").Set(v)
}

// SetReady sets inference_ready.
func (m *Metrics) SetReady(ready bool) {
	if ready {
		m.Ready.Set(1)
	} else {
		m.Ready.Set(0)
	}
}

// Check records one run of a validation check: data_validation_checks_total{check,
// result} and validation_checks{check}. check must come from a fixed set, never from
// user input.
func (m *Metrics) Check(check string, passed bool) {
	if passed {
		m.DataChecks.WithLabelValues(check, "pass").Inc()
		m.ValidationChecks.WithLabelValues(check).Set(1)
		return
	}
	m.DataChecks.WithLabelValues(check, "fail").Inc()
	m.ValidationChecks.WithLabelValues(check).Set(0)
}

// Request counts one answered HTTP request.
func (m *Metrics) Request(endpoint string, code int) {
	m.Requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

// Failure counts one request that failed for reason (one of the Reason constants).
func (m *Metrics) Failure(reason string) { m.Failures.WithLabelValues(reason).Inc() }

// Latency observes a successful inference request's duration.
func (m *Metrics) Latency(endpoint string, d time.Duration) {
	m.InferenceLatency.WithLabelValues(endpoint).Observe(d.Seconds())
}

// The methods below implement engine.Observer.

// QueueWait observes the time a request waited for a slot.
func (m *Metrics) QueueWait(d time.Duration) { m.QueueWaitH.Observe(d.Seconds()) }

// FirstToken observes the time to first token.
func (m *Metrics) FirstToken(d time.Duration) { m.TTFT.Observe(d.Seconds()) }

// InterToken observes the gap between two tokens of one sequence.
func (m *Metrics) InterToken(d time.Duration) { m.InterTokenLatency.Observe(d.Seconds()) }

// Step observes one batched engine step. The batch size histogram counts decode steps
// only; prefill batches are bounded by tokens, not sequences.
func (m *Metrics) Step(kind string, batch int, _ int, d time.Duration) {
	if kind != "prefill" && kind != "decode" {
		kind = "other"
	}
	m.StepDuration.WithLabelValues(kind).Observe(d.Seconds())
	if kind == "decode" {
		m.BatchSize.Observe(float64(batch))
	}
}

// PromptTokens counts prefilled prompt tokens.
func (m *Metrics) PromptTokens(n int) { m.PromptTokensC.Add(float64(n)) }

// GeneratedTokens counts generated tokens.
func (m *Metrics) GeneratedTokens(n int) {
	m.GeneratedTokensC.Add(float64(n))
	m.generatedTokenRate.Add(n)
}

// QueueDepth sets the waiting and running gauges.
func (m *Metrics) QueueDepth(waiting, running int) {
	m.QueueDepthG.Set(float64(waiting))
	m.RunningSequences.Set(float64(running))
}

// Rejected counts a request the engine refused ("queue_full", "queue_timeout",
// "draining").
func (m *Metrics) Rejected(reason string) {
	switch reason {
	case ReasonQueueFull, ReasonQueueTimeout, ReasonDraining:
	default:
		reason = "other"
	}
	m.Failure(reason)
}

// Cancelled counts a sequence stopped because its request's context ended.
func (m *Metrics) Cancelled() { m.Failure(ReasonCancelled) }

// rateWindow counts events in one-second slots over a sliding window.
type rateWindow struct {
	mu     sync.Mutex
	now    func() time.Time
	window int64   // seconds averaged over
	slots  []int64 // window+1 slots: the full seconds averaged, plus the current one
	second []int64 // unix second each slot holds
}

func newRateWindow(window time.Duration, now func() time.Time) *rateWindow {
	n := max(int(window/time.Second), 1)
	return &rateWindow{now: now, window: int64(n), slots: make([]int64, n+1), second: make([]int64, n+1)}
}

// Add records n events now.
func (r *rateWindow) Add(n int) {
	s := r.now().Unix()
	r.mu.Lock()
	i := int(s % int64(len(r.slots)))
	if r.second[i] != s {
		r.second[i], r.slots[i] = s, 0
	}
	r.slots[i] += int64(n)
	r.mu.Unlock()
}

// Rate returns events per second over the completed window (the current, partial
// second excluded, so the value does not dip at each second's start).
func (r *rateWindow) Rate() float64 {
	s := r.now().Unix()
	n := r.window
	r.mu.Lock()
	defer r.mu.Unlock()
	var sum int64
	for i := range r.slots {
		if age := s - r.second[i]; age >= 1 && age <= n {
			sum += r.slots[i]
		}
	}
	return float64(sum) / float64(n)
}
