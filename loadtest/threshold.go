package loadtest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// A Threshold is a pass/fail objective on a run, written
//
//	[scenario:]metric op value
//
// for example "p99<2s", "error_rate<1%", "ttft_p95<500ms", "basic:p95<=1s",
// "rps>=50". Metrics:
//
//	p50 p90 p95 p99 p999 max min mean     latency (duration)
//	service_p99 …                          latency from the actual send (duration)
//	ttft_p95 …, itl_p99 …, tpot_p50 …      streaming timings (duration)
//	error_rate                             errors / requests (a fraction, or a percentage with %)
//	rps                                    completed requests per second
//	output_tps                             output tokens per second over the run
//	requests, errors, missed_schedule      counts (missed_schedule: total only)
//
// Operators: < <= > >=. A threshold on data the run does not have (a scenario that
// sent nothing, ttft without streams) fails, saying so.
type Threshold struct {
	Raw      string  `json:"threshold"`
	Scenario string  `json:"scenario,omitempty"` // "" for all scenarios together
	Metric   string  `json:"metric"`
	Op       string  `json:"op"`
	Value    float64 `json:"value"` // seconds for durations, a fraction for error_rate
	duration bool
}

// ParseThreshold reads one threshold.
func ParseThreshold(raw string) (Threshold, error) {
	t := Threshold{Raw: strings.TrimSpace(raw)}
	expr := strings.ReplaceAll(t.Raw, " ", "")
	if sc, rest, ok := strings.Cut(expr, ":"); ok {
		if _, err := ParseScenario(sc); err != nil {
			return t, fmt.Errorf("threshold %q: %w", raw, err)
		}
		t.Scenario, expr = sc, rest
	}
	i := strings.IndexAny(expr, "<>")
	if i <= 0 {
		return t, fmt.Errorf("threshold %q: want [scenario:]metric<value (operators < <= > >=)", raw)
	}
	t.Metric, t.Op = expr[:i], expr[i:i+1]
	val := expr[i+1:]
	if strings.HasPrefix(val, "=") {
		t.Op += "="
		val = val[1:]
	}
	kind, err := metricKind(t.Metric)
	if err != nil {
		return t, fmt.Errorf("threshold %q: %w", raw, err)
	}
	if t.Metric == "missed_schedule" && t.Scenario != "" {
		return t, fmt.Errorf("threshold %q: missed_schedule is counted for the whole run only", raw)
	}
	switch kind {
	case "duration":
		d, err := time.ParseDuration(val)
		if err != nil {
			return t, fmt.Errorf("threshold %q: %q is not a duration such as 500ms or 2s", raw, val)
		}
		t.Value, t.duration = d.Seconds(), true
	case "ratio":
		if p, ok := strings.CutSuffix(val, "%"); ok {
			f, ok := parseFinite(p)
			if !ok {
				return t, fmt.Errorf("threshold %q: %q is not a percentage", raw, val)
			}
			t.Value = f / 100
		} else {
			f, ok := parseFinite(val)
			if !ok {
				return t, fmt.Errorf("threshold %q: %q is not a fraction or percentage", raw, val)
			}
			t.Value = f
		}
	default:
		f, ok := parseFinite(val)
		if !ok {
			return t, fmt.Errorf("threshold %q: %q is not a number", raw, val)
		}
		t.Value = f
	}
	return t, nil
}

// parseFinite parses a float that is neither NaN nor infinite.
func parseFinite(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

// ParseThresholds reads several thresholds, reporting every bad one.
func ParseThresholds(raws []string) ([]Threshold, error) {
	var out []Threshold
	var errs []error
	for _, r := range raws {
		if strings.TrimSpace(r) == "" {
			continue
		}
		t, err := ParseThreshold(r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

var percentileNames = map[string]float64{
	"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9, "max": 100, "min": 0, "mean": -1,
}

func metricKind(m string) (string, error) {
	switch m {
	case "error_rate":
		return "ratio", nil
	case "rps", "output_tps", "requests", "errors", "missed_schedule":
		return "number", nil
	}
	if _, _, ok := durationMetric(m); ok {
		return "duration", nil
	}
	return "", fmt.Errorf("unknown metric %q (want p50…p999/max/min/mean, optionally prefixed by service_, ttft_, itl_ or tpot_; error_rate; rps; output_tps; requests; errors; missed_schedule)", m)
}

// durationMetric splits a duration metric into its family ("" for latency, "service_",
// "ttft_", "itl_" or "tpot_"; at most one) and its statistic (p99, max, …); ok reports
// whether the statistic is known.
func durationMetric(m string) (family, stat string, ok bool) {
	for _, prefix := range []string{"service_", "ttft_", "itl_", "tpot_"} {
		if rest, found := strings.CutPrefix(m, prefix); found {
			family, m = prefix, rest
			break
		}
	}
	_, ok = percentileNames[m]
	return family, m, ok
}

// ThresholdResult is the outcome of one threshold.
type ThresholdResult struct {
	Threshold
	Actual float64 `json:"actual"`
	NoData bool    `json:"no_data"`
	Pass   bool    `json:"pass"`
}

// String explains the outcome, e.g. "FAIL p99<2s: p99 was 2.5s".
func (r ThresholdResult) String() string {
	verdict := "ok  "
	if !r.Pass {
		verdict = "FAIL"
	}
	if r.NoData {
		return fmt.Sprintf("%s %s: no data (the run has no %s for %s)", verdict, r.Raw, r.Metric, r.scope())
	}
	return fmt.Sprintf("%s %s: %s was %s", verdict, r.Raw, r.Metric, r.Format(r.Actual))
}

func (r ThresholdResult) scope() string {
	if r.Scenario == "" {
		return "the run"
	}
	return "scenario " + r.Scenario
}

// Format prints a value of the threshold's metric in its unit.
func (t Threshold) Format(v float64) string {
	switch {
	case t.duration:
		return formatSeconds(v)
	case t.Metric == "error_rate":
		return strconv.FormatFloat(v*100, 'f', 3, 64) + "%"
	case t.Metric == "rps" || t.Metric == "output_tps":
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Evaluate checks every threshold against s.
func Evaluate(s *Summary, ts []Threshold) []ThresholdResult {
	out := make([]ThresholdResult, 0, len(ts))
	for _, t := range ts {
		r := ThresholdResult{Threshold: t}
		v, ok := lookup(s, t)
		r.Actual, r.NoData = v, !ok
		if ok {
			switch t.Op {
			case "<":
				r.Pass = v < t.Value
			case "<=":
				r.Pass = v <= t.Value
			case ">":
				r.Pass = v > t.Value
			case ">=":
				r.Pass = v >= t.Value
			}
		}
		out = append(out, r)
	}
	return out
}

// Failed returns the results that did not pass.
func Failed(rs []ThresholdResult) []ThresholdResult {
	var out []ThresholdResult
	for _, r := range rs {
		if !r.Pass {
			out = append(out, r)
		}
	}
	return out
}

func lookup(s *Summary, t Threshold) (float64, bool) {
	st := &s.Total
	if t.Scenario != "" {
		st = nil
		for i := range s.Scenarios {
			if s.Scenarios[i].Scenario == t.Scenario {
				st = &s.Scenarios[i]
			}
		}
		if st == nil {
			return 0, false
		}
	}
	if st.Requests == 0 && t.Metric != "missed_schedule" && t.Metric != "requests" {
		return 0, false
	}
	switch t.Metric {
	case "error_rate":
		return st.ErrorRate, true
	case "rps":
		return st.Throughput, true
	case "output_tps":
		return st.TokenRate, true
	case "requests":
		return float64(st.Requests), true
	case "errors":
		return float64(st.Errors), true
	case "missed_schedule":
		return float64(s.MissedSchedule), true
	}
	family, stat, known := durationMetric(t.Metric)
	if !known {
		return 0, false
	}
	var p *Percentiles
	switch family {
	case "service_":
		p = &st.ServiceTime
	case "ttft_":
		p = st.TTFT
	case "itl_":
		p = st.ITL
	case "tpot_":
		p = st.TPOT
	default:
		p = &st.Latency
	}
	if p == nil || p.Count == 0 {
		return 0, false
	}
	return p.At(percentileNames[stat])
}

// formatSeconds prints seconds compactly: 850µs, 12.3ms, 1.25s.
func formatSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return strconv.FormatFloat(s*1e6, 'f', 0, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(s*1e3, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(s, 'f', 2, 64) + "s"
}
