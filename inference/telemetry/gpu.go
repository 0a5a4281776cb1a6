package telemetry

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
)

// errNoNVML means no NVIDIA management library exists on this host.
var errNoNVML = errors.New("NVIDIA management library (libnvidia-ml.so.1) not found")

// gpuMemory is one GPU's memory reading.
type gpuMemory struct {
	Index       int
	UUID        string
	Used, Total uint64
}

// gpuAPI is the slice of NVML the collector uses; tests substitute a fake.
type gpuAPI interface {
	Init() error
	Read() ([]gpuMemory, error)
	Shutdown()
}

// nvmlAPI reads GPUs through go-nvml.
type nvmlAPI struct{}

func (nvmlAPI) Init() error {
	switch ret := nvml.Init(); ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return errNoNVML
	default:
		return fmt.Errorf("nvml init: %s", nvml.ErrorString(ret))
	}
}

func (nvmlAPI) Read() ([]gpuMemory, error) {
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %s", nvml.ErrorString(ret))
	}
	out := make([]gpuMemory, 0, n)
	for i := range n {
		dev, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml device %d: %s", i, nvml.ErrorString(ret))
		}
		uuid, ret := dev.GetUUID()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml device %d uuid: %s", i, nvml.ErrorString(ret))
		}
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml device %d memory: %s", i, nvml.ErrorString(ret))
		}
		out = append(out, gpuMemory{Index: i, UUID: uuid, Used: mem.Used, Total: mem.Total})
	}
	return out, nil
}

func (nvmlAPI) Shutdown() { _ = nvml.Shutdown() }

// gpuCollector exports gpu_memory_used_bytes{gpu,uuid} and
// gpu_memory_total_bytes{gpu,uuid}, read at scrape time and cached for ttl.
type gpuCollector struct {
	api  gpuAPI
	ttl  time.Duration
	log  *slog.Logger
	used *prometheus.Desc
	tot  *prometheus.Desc

	mu       sync.Mutex
	readAt   time.Time
	readings []gpuMemory
	failing  bool
}

// newGPUCollector initialises NVML and returns nil, after one log line, when it is
// unavailable (no NVIDIA driver on this host): the GPU metrics are then absent.
func newGPUCollector(api gpuAPI, ttl time.Duration, log *slog.Logger) *gpuCollector {
	if err := api.Init(); err != nil {
		if errors.Is(err, errNoNVML) {
			log.Info("no NVIDIA driver found; gpu_memory_used_bytes and gpu_memory_total_bytes are not exported")
		} else {
			log.Warn("NVML unavailable; gpu_memory_used_bytes and gpu_memory_total_bytes are not exported", slog.Any("error", err))
		}
		return nil
	}
	labels := []string{"gpu", "uuid"}
	return &gpuCollector{
		api:  api,
		ttl:  ttl,
		log:  log,
		used: prometheus.NewDesc("gpu_memory_used_bytes", "GPU memory in use, bytes, per GPU (NVML).", labels, nil),
		tot:  prometheus.NewDesc("gpu_memory_total_bytes", "GPU memory installed, bytes, per GPU (NVML).", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.tot
}

// Collect implements prometheus.Collector.
func (c *gpuCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.readAt.IsZero() || time.Since(c.readAt) >= c.ttl {
		c.readAt = time.Now()
		r, err := c.api.Read()
		switch {
		case err != nil && !c.failing:
			c.failing = true
			c.log.Warn("reading GPU memory failed; GPU metrics missing until it recovers", slog.Any("error", err))
			c.readings = nil
		case err != nil:
			c.readings = nil
		default:
			if c.failing {
				c.log.Info("reading GPU memory recovered")
			}
			c.failing, c.readings = false, r
		}
	}
	readings := c.readings
	c.mu.Unlock()
	for _, g := range readings {
		idx := strconv.Itoa(g.Index)
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(g.Used), idx, g.UUID)
		ch <- prometheus.MustNewConstMetric(c.tot, prometheus.GaugeValue, float64(g.Total), idx, g.UUID)
	}
}

func (c *gpuCollector) close() { c.api.Shutdown() }
