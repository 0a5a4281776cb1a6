package loadtest

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// errorKind classifies a failed request.
type errorKind uint8

const (
	errNone        errorKind = iota
	errStatus                // an HTTP status other than 2xx
	errTimeout               // the request timed out
	errConnRefused           // connection refused
	errConnReset             // connection reset or closed by the peer mid-exchange
	errConnection            // any other network error (DNS, unreachable, TLS)
	errSSE                   // the event stream broke the protocol or carried an error event
	errNoTarget              // the targeter had no server to offer
	errOther                 // anything else
	numErrorKinds
)

var errorKindNames = [numErrorKinds]string{"", "status", "timeout", "connection_refused", "connection_reset", "connection", "sse_protocol", "no_target", "other"}

func (k errorKind) String() string { return errorKindNames[k] }

// result is what a worker learned from one request; workers reuse it.
type result struct {
	scenario Scenario
	code     int       // HTTP status, 0 when no response
	kind     errorKind // errNone on success
	detail   string    // first words of the error, for the log
	aborted  bool      // cancelled by the stop: neither success nor error

	end     time.Duration // completion, as an offset from the run's start
	latency time.Duration // intended send → end (open loop); send → end (closed loop)
	service time.Duration // actual send → end (no coordinated-omission correction)
	tokens  int           // output tokens reported by the server

	// streaming only
	chunks int             // SSE events with non-empty text
	ttft   time.Duration   // intended send → first non-empty event
	gaps   []time.Duration // between consecutive non-empty events
	tpot   time.Duration   // (last − first non-empty event) / (tokens − 1)
}

// HDR histogram ranges: durations in microseconds from 1µs to 1h; output rates in
// milli-tokens per second up to 10⁹ (a million tokens/s). Three significant digits.
const (
	hdrMaxMicros  = int64(time.Hour / time.Microsecond)
	hdrMaxMilliTS = int64(1e9)
	hdrDigits     = 3
)

func newDurationHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, hdrMaxMicros, hdrDigits) }

func recordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 1 {
		us = 1
	}
	if us > hdrMaxMicros {
		us = hdrMaxMicros
	}
	_ = h.RecordValue(us) // in range by construction
}

// scenarioRec accumulates one scenario.
type scenarioRec struct {
	requests uint64 // completed (success + error), aborted excluded
	errors   uint64
	tokens   uint64
	streams  uint64 // successful streams with at least one content event
	codes    map[int]uint64
	kinds    [numErrorKinds]uint64
	latency  *hdrhistogram.Histogram // µs, coordinated-omission corrected in open loop
	service  *hdrhistogram.Histogram // µs, from the actual send
	ttft     *hdrhistogram.Histogram // µs
	itl      *hdrhistogram.Histogram // µs, every gap
	tpot     *hdrhistogram.Histogram // µs, one per stream
	tps      *hdrhistogram.Histogram // milli-tokens/s, one per stream
}

func newScenarioRec(stream bool) *scenarioRec {
	r := &scenarioRec{codes: map[int]uint64{}, latency: newDurationHist(), service: newDurationHist()}
	if stream {
		r.ttft, r.itl, r.tpot = newDurationHist(), newDurationHist(), newDurationHist()
		r.tps = hdrhistogram.New(1, hdrMaxMilliTS, hdrDigits)
	}
	return r
}

// recorder aggregates results; memory does not grow with the number of requests.
type recorder struct {
	start   time.Time
	metrics *Metrics

	inFlight atomic.Int64
	missed   atomic.Uint64
	users    atomic.Int64

	mu      sync.Mutex
	sc      [numScenarios]*scenarioRec
	all     *hdrhistogram.Histogram // every scenario's latency, for the status line
	ts      timeSeries
	aborted uint64
	total   uint64
	errors  uint64
}

func newRecorder(start time.Time, width time.Duration, maxBuckets int, m *Metrics) *recorder {
	r := &recorder{start: start, metrics: m, all: newDurationHist()}
	for s := range numScenarios {
		r.sc[s] = newScenarioRec(s == ScenarioStream)
	}
	r.ts = timeSeries{width: width, max: maxBuckets}
	return r
}

// record adds one finished request.
func (r *recorder) record(res *result) {
	if res.aborted {
		r.mu.Lock()
		r.aborted++
		r.mu.Unlock()
		return
	}
	if r.metrics != nil {
		r.metrics.observe(res)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sc[res.scenario]
	s.requests++
	r.total++
	s.codes[res.code]++
	recordDuration(s.latency, res.latency)
	recordDuration(s.service, res.service)
	recordDuration(r.all, res.latency)
	b := r.ts.at(res.end)
	b.requests++
	b.lat[logBin(res.latency)]++
	if res.kind != errNone {
		s.errors++
		r.errors++
		s.kinds[res.kind]++
		b.errors++
		return
	}
	s.tokens += uint64(res.tokens)
	b.tokens += uint64(res.tokens)
	if res.scenario == ScenarioStream && res.chunks > 0 {
		s.streams++
		recordDuration(s.ttft, res.ttft)
		for _, g := range res.gaps {
			recordDuration(s.itl, g)
		}
		if res.tokens > 1 {
			recordDuration(s.tpot, res.tpot)
		}
		if res.latency > 0 && res.tokens > 0 {
			mts := int64(float64(res.tokens) / res.latency.Seconds() * 1000)
			_ = s.tps.RecordValue(min(max(mts, 1), hdrMaxMilliTS))
		}
	}
}

// missedSchedule counts an open-loop request that waited for a free slot.
func (r *recorder) missedSchedule(at time.Duration) {
	r.missed.Add(1)
	if r.metrics != nil {
		r.metrics.MissedSchedule.Inc()
	}
	r.mu.Lock()
	r.ts.at(at).missed++
	r.mu.Unlock()
}

func (r *recorder) addInFlight(d int64) {
	n := r.inFlight.Add(d)
	if r.metrics != nil {
		r.metrics.InFlight.Set(float64(n))
	}
}

func (r *recorder) addUsers(d int64) {
	n := r.users.Add(d)
	if r.metrics != nil {
		r.metrics.Users.Set(float64(n))
	}
	if d > 0 { // the time series shows each bucket's most users, from the first one on
		r.mu.Lock()
		b := r.ts.at(time.Since(r.start))
		b.users = max(b.users, int(n))
		r.mu.Unlock()
	}
}

// sample notes the load level for the time series (called about once a second).
func (r *recorder) sample(at time.Duration, targetRate float64) {
	r.mu.Lock()
	b := r.ts.at(at)
	b.users = max(b.users, int(r.users.Load()))
	b.targetRate = max(b.targetRate, targetRate)
	r.mu.Unlock()
}

// Progress is a snapshot of a running test, for status lines.
type Progress struct {
	Elapsed    time.Duration
	Requests   uint64  // completed so far
	Errors     uint64  // failed so far
	Rate       float64 // completions per second since the previous snapshot
	P50, P99   time.Duration
	InFlight   int64
	Users      int64
	TargetRate float64
	Missed     uint64
}

func (r *recorder) progress(now time.Time, prevRequests uint64, prevAt time.Duration) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Progress{
		Elapsed:  now.Sub(r.start),
		Requests: r.total,
		Errors:   r.errors,
		P50:      time.Duration(r.all.ValueAtQuantile(50)) * time.Microsecond,
		P99:      time.Duration(r.all.ValueAtQuantile(99)) * time.Microsecond,
		InFlight: r.inFlight.Load(),
		Users:    r.users.Load(),
		Missed:   r.missed.Load(),
	}
	if dt := (p.Elapsed - prevAt).Seconds(); dt > 0 {
		p.Rate = float64(p.Requests-prevRequests) / dt
	}
	return p
}

// Time series: fixed-width buckets; when MaxBuckets would be exceeded, neighbours are
// merged and the width doubles, so memory stays bounded for any duration. Latency per
// bucket is kept in logarithmic bins 10% wide (percentiles over time are therefore
// within about ±5%; the summary's percentiles are exact to 3 significant digits).
const (
	logBinBase = 1.1
	numLogBins = 232 // 1.1^231 µs > 1h
)

var lnLogBinBase = math.Log(logBinBase)

func logBin(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	return min(int(math.Log(us)/lnLogBinBase), numLogBins-1)
}

// logBinValue is the geometric middle of bin i.
func logBinValue(i int) time.Duration {
	return time.Duration(math.Pow(logBinBase, float64(i)+0.5) * float64(time.Microsecond))
}

type bucket struct {
	requests, errors, tokens, missed uint64
	users                            int
	targetRate                       float64
	lat                              [numLogBins]uint32
}

func (b *bucket) merge(o *bucket) {
	b.requests += o.requests
	b.errors += o.errors
	b.tokens += o.tokens
	b.missed += o.missed
	b.users = max(b.users, o.users)
	b.targetRate = max(b.targetRate, o.targetRate)
	for i := range b.lat {
		b.lat[i] += o.lat[i]
	}
}

// quantile returns the latency at q (0..1) from the bins, 0 when empty.
func (b *bucket) quantile(q float64) time.Duration {
	var n uint64
	for _, c := range b.lat {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range b.lat {
		seen += uint64(c)
		if seen >= rank {
			return logBinValue(i)
		}
	}
	return logBinValue(numLogBins - 1)
}

type timeSeries struct {
	width   time.Duration
	max     int
	buckets []bucket
}

// at returns the bucket covering offset (negative offsets go to the first).
func (ts *timeSeries) at(offset time.Duration) *bucket {
	if offset < 0 {
		offset = 0
	}
	i := int(offset / ts.width)
	for i >= ts.max {
		ts.halve()
		i = int(offset / ts.width)
	}
	if i >= len(ts.buckets) {
		if i < cap(ts.buckets) {
			ts.buckets = ts.buckets[:i+1]
		} else {
			ts.buckets = append(ts.buckets, make([]bucket, i+1-len(ts.buckets))...)
		}
	}
	return &ts.buckets[i]
}

// halve merges neighbouring buckets and doubles the width.
func (ts *timeSeries) halve() {
	n := (len(ts.buckets) + 1) / 2
	for i := range n {
		b := ts.buckets[2*i]
		if 2*i+1 < len(ts.buckets) {
			b.merge(&ts.buckets[2*i+1])
		}
		ts.buckets[i] = b
	}
	clear(ts.buckets[n:])
	ts.buckets = ts.buckets[:n]
	ts.width *= 2
}
