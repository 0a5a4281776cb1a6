package telemetry

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
)

// systemCollector exports cpu_usage_percent and ram_usage_bytes, read through gopsutil
// at scrape time. Readings are cached for ttl so that frequent scrapes stay cheap, and
// CPU usage is the busy share of all cores since the previous reading (since boot for
// the first one).
type systemCollector struct {
	ttl time.Duration
	log *slog.Logger
	cpu *prometheus.Desc
	ram *prometheus.Desc

	mu       sync.Mutex
	readAt   time.Time
	lastCPU  cpu.TimesStat
	havePrev bool
	cpuPct   float64
	ramUsed  float64
	cpuOK    bool
	ramOK    bool
	warned   bool
}

func newSystemCollector(ttl time.Duration, log *slog.Logger) *systemCollector {
	return &systemCollector{
		ttl: ttl,
		log: log,
		cpu: prometheus.NewDesc("cpu_usage_percent", "System-wide CPU utilisation, percent of all cores (0-100), since the previous reading.", nil, nil),
		ram: prometheus.NewDesc("ram_usage_bytes", "System memory in use (total minus available), bytes.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *systemCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cpu
	ch <- c.ram
}

// Collect implements prometheus.Collector.
func (c *systemCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if c.readAt.IsZero() || time.Since(c.readAt) >= c.ttl {
		c.refresh()
	}
	cpuPct, cpuOK, ram, ramOK := c.cpuPct, c.cpuOK, c.ramUsed, c.ramOK
	c.mu.Unlock()
	if cpuOK {
		ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.GaugeValue, cpuPct)
	}
	if ramOK {
		ch <- prometheus.MustNewConstMetric(c.ram, prometheus.GaugeValue, ram)
	}
}

// refresh reads the system; c.mu is held.
func (c *systemCollector) refresh() {
	c.readAt = time.Now()
	var errs []any
	if times, err := cpu.Times(false); err != nil || len(times) == 0 {
		c.cpuOK = false
		errs = append(errs, slog.Any("cpu_error", err))
	} else {
		t := times[0]
		busy, total := busyTotal(t)
		if c.havePrev {
			pb, pt := busyTotal(c.lastCPU)
			if dt := total - pt; dt > 0 {
				c.cpuPct = clampPercent((busy - pb) / dt * 100)
			}
		} else if total > 0 {
			c.cpuPct = clampPercent(busy / total * 100)
		}
		c.lastCPU, c.havePrev, c.cpuOK = t, true, true
	}
	if vm, err := mem.VirtualMemory(); err != nil {
		c.ramOK = false
		errs = append(errs, slog.Any("ram_error", err))
	} else {
		c.ramUsed, c.ramOK = float64(vm.Used), true
	}
	if len(errs) > 0 && !c.warned {
		c.warned = true
		c.log.Warn("system metrics unavailable; cpu_usage_percent or ram_usage_bytes will be missing", errs...)
	}
}

func busyTotal(t cpu.TimesStat) (busy, total float64) {
	// Guest time is already included in User on Linux.
	idle := t.Idle + t.Iowait
	total = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return total - idle, total
}

func clampPercent(v float64) float64 {
	return min(max(v, 0), 100)
}
