package loadtest

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Summary is the result of a run: totals, per-scenario statistics and a time series.
// Durations are in seconds in JSON.
type Summary struct {
	Mode           string    `json:"mode"`       // "open" or "closed"
	StoppedBy      string    `json:"stopped_by"` // "duration", "requests", "signal" or "done"
	Seed           uint64    `json:"seed"`
	Weights        Weights   `json:"weights"`
	Started        time.Time `json:"started"`
	Elapsed        Seconds   `json:"elapsed_seconds"`
	Aborted        uint64    `json:"aborted"`         // in flight at the stop and cancelled after the grace period
	MissedSchedule uint64    `json:"missed_schedule"` // open loop: requests that waited for a free in-flight slot
	Total          Stats     `json:"total"`
	Scenarios      []Stats   `json:"scenarios"` // scenarios with a weight or a request, in report order
	Series         Series    `json:"series"`
}

// ReachedNoServer reports whether the run sent requests and none of them reached a
// server: every one failed for want of a target or a connection.
func (s *Summary) ReachedNoServer() bool {
	t := s.Total
	if t.Requests == 0 {
		return false
	}
	var n uint64
	for _, k := range []errorKind{errNoTarget, errConnRefused, errConnection} {
		n += t.ErrorKinds[k.String()]
	}
	return n == t.Requests
}

// Stats describes one scenario, or all together.
type Stats struct {
	Scenario     string            `json:"scenario"` // "total" for all
	Requests     uint64            `json:"requests"` // completed: answered or failed
	Errors       uint64            `json:"errors"`
	ErrorRate    float64           `json:"error_rate"`          // Errors / Requests
	Throughput   float64           `json:"requests_per_second"` // Requests / elapsed
	OutputTokens uint64            `json:"output_tokens"`
	TokenRate    float64           `json:"output_tokens_per_second"` // OutputTokens / elapsed
	Codes        map[string]uint64 `json:"codes"`                    // HTTP status ("none": no response) → count
	ErrorKinds   map[string]uint64 `json:"error_kinds,omitempty"`
	Latency      Percentiles       `json:"latency"`      // from the intended send time (open loop)
	ServiceTime  Percentiles       `json:"service_time"` // from the actual send time (uncorrected)
	TTFT         *Percentiles      `json:"ttft,omitempty"`
	ITL          *Percentiles      `json:"itl,omitempty"`
	TPOT         *Percentiles      `json:"tpot,omitempty"`
	StreamRate   *Percentiles      `json:"stream_tokens_per_second,omitempty"` // per-request output tokens/s (not seconds)
}

// Percentiles summarises an HDR histogram. Values are seconds, except in
// Stats.StreamRate where they are tokens per second.
type Percentiles struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// At returns the value at percentile p (50, 90, 95, 99, 99.9, 100 for max, 0 for min, -1 for the mean).
func (p Percentiles) At(q float64) (float64, bool) {
	switch q {
	case -1:
		return p.Mean, true
	case 0:
		return p.Min, true
	case 50:
		return p.P50, true
	case 90:
		return p.P90, true
	case 95:
		return p.P95, true
	case 99:
		return p.P99, true
	case 99.9:
		return p.P999, true
	case 100:
		return p.Max, true
	}
	return 0, false
}

// Series is the run over time. Buckets start BucketSeconds wide; long runs merge
// neighbours, so the width may have doubled.
type Series struct {
	BucketSeconds float64 `json:"bucket_seconds"`
	Points        []Point `json:"points"`
}

// Point is one time-series bucket. Latency percentiles here are approximate (±5%).
type Point struct {
	T          float64 `json:"t"` // bucket start, seconds since the run started
	Requests   uint64  `json:"requests"`
	Errors     uint64  `json:"errors"`
	Tokens     uint64  `json:"tokens"`
	Missed     uint64  `json:"missed"`
	RPS        float64 `json:"rps"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	Users      int     `json:"users"`
	TargetRate float64 `json:"target_rate"`
}

// Seconds is a duration that marshals as seconds.
type Seconds time.Duration

// MarshalJSON writes seconds as a number.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Seconds(), 'f', -1, 64), nil
}

// UnmarshalJSON reads seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}

// MarshalJSON writes the weights as {"basic": 3, …}.
func (w Weights) MarshalJSON() ([]byte, error) {
	m := make(map[string]int, numScenarios)
	for i, v := range w {
		m[scenarioNames[i]] = v
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads {"basic": 3, …}.
func (w *Weights) UnmarshalJSON(b []byte) error {
	var m map[string]int
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*w = Weights{}
	for k, v := range m {
		s, err := ParseScenario(k)
		if err != nil {
			return err
		}
		w[s] = v
	}
	return nil
}

func durationPercentiles(h *hdrhistogram.Histogram) Percentiles {
	return percentiles(h, 1e6) // µs → s
}

// percentiles reads h, dividing its values by div (1e6: µs → s; 1e3: milli-tokens/s → tokens/s).
func percentiles(h *hdrhistogram.Histogram, div float64) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	v := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / div }
	return Percentiles{
		Count: h.TotalCount(),
		Min:   float64(h.Min()) / div,
		Mean:  h.Mean() / div,
		P50:   v(50),
		P90:   v(90),
		P95:   v(95),
		P99:   v(99),
		P999:  v(99.9),
		Max:   float64(h.Max()) / div,
	}
}

func optional(h *hdrhistogram.Histogram, div float64) *Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	p := percentiles(h, div)
	return &p
}

func (r *recorder) summary(mode string, elapsed time.Duration, stoppedBy string) *Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &Summary{
		Mode:           mode,
		StoppedBy:      stoppedBy,
		Started:        r.start.UTC().Truncate(time.Millisecond),
		Elapsed:        Seconds(elapsed),
		Aborted:        r.aborted,
		MissedSchedule: r.missed.Load(),
	}
	total := newScenarioRec(true)
	for i, sc := range r.sc {
		if sc.requests == 0 {
			continue
		}
		s.Scenarios = append(s.Scenarios, sc.stats(Scenario(i).String(), elapsed))
		total.add(sc)
	}
	s.Total = total.stats("total", elapsed)

	s.Series.BucketSeconds = r.ts.width.Seconds()
	buckets := r.ts.buckets
	var tail *bucket // a last bucket shorter than half a width folds into the one before
	if n := len(buckets); n >= 2 && elapsed-time.Duration(n-1)*r.ts.width < r.ts.width/2 {
		tail = &buckets[n-1]
		buckets = buckets[:n-1]
	}
	for i := range buckets {
		b := buckets[i]
		start := time.Duration(i) * r.ts.width
		width := r.ts.width
		if i == len(buckets)-1 {
			if tail != nil {
				b.merge(tail)
			}
			width = max(elapsed-start, time.Millisecond) // the last bucket may be partial or extended
		}
		p := Point{
			T: start.Seconds(), Requests: b.requests, Errors: b.errors, Tokens: b.tokens, Missed: b.missed,
			P50: b.quantile(.5).Seconds(), P90: b.quantile(.9).Seconds(), P99: b.quantile(.99).Seconds(),
			Users: b.users, TargetRate: b.targetRate, RPS: float64(b.requests) / width.Seconds(),
		}
		s.Series.Points = append(s.Series.Points, p)
	}
	return s
}

// add merges o into r (for the totals).
func (r *scenarioRec) add(o *scenarioRec) {
	r.requests += o.requests
	r.errors += o.errors
	r.tokens += o.tokens
	r.streams += o.streams
	for k, v := range o.codes {
		r.codes[k] += v
	}
	for i, v := range o.kinds {
		r.kinds[i] += v
	}
	r.latency.Merge(o.latency)
	r.service.Merge(o.service)
	if o.ttft != nil {
		r.ttft.Merge(o.ttft)
		r.itl.Merge(o.itl)
		r.tpot.Merge(o.tpot)
		r.tps.Merge(o.tps)
	}
}

func (r *scenarioRec) stats(name string, elapsed time.Duration) Stats {
	st := Stats{
		Scenario:     name,
		Requests:     r.requests,
		Errors:       r.errors,
		OutputTokens: r.tokens,
		Codes:        map[string]uint64{},
		Latency:      durationPercentiles(r.latency),
		ServiceTime:  durationPercentiles(r.service),
		TTFT:         optional(r.ttft, 1e6),
		ITL:          optional(r.itl, 1e6),
		TPOT:         optional(r.tpot, 1e6),
		StreamRate:   optional(r.tps, 1e3),
	}
	if r.requests > 0 {
		st.ErrorRate = float64(r.errors) / float64(r.requests)
	}
	if sec := elapsed.Seconds(); sec > 0 {
		st.Throughput = float64(r.requests) / sec
		st.TokenRate = float64(r.tokens) / sec
	}
	for _, c := range slices.Sorted(maps.Keys(r.codes)) {
		key := "none"
		if c > 0 {
			key = strconv.Itoa(c)
		}
		st.Codes[key] = r.codes[c]
	}
	for k, v := range r.kinds {
		if v > 0 {
			if st.ErrorKinds == nil {
				st.ErrorKinds = map[string]uint64{}
			}
			st.ErrorKinds[errorKind(k).String()] = v
		}
	}
	return st
}
