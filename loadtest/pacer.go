package loadtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// A Pacer schedules an open-loop run. Pace returns when request number hits (counting
// from 0) is due, measured from the start of the run; the runner sends it then and
// measures its latency from that intended time, not from when it actually went out.
// Rate reports the intended arrival rate, in requests per second, at elapsed time
// (for the loadtest_target_rate gauge and the report).
type Pacer interface {
	Pace(hits uint64) (due time.Duration, stop bool)
	Rate(elapsed time.Duration) float64
}

// PacerFunc adapts a schedule function to the Pacer interface. Its Rate is 0 (unknown).
type PacerFunc func(hits uint64) (time.Duration, bool)

// Pace implements Pacer.
func (f PacerFunc) Pace(hits uint64) (time.Duration, bool) { return f(hits) }

// Rate implements Pacer; a PacerFunc does not know its rate and returns 0.
func (f PacerFunc) Rate(time.Duration) float64 { return 0 }

// maxDue bounds schedules so that durations never overflow (about 292 years).
const maxDue = float64(math.MaxInt64 / 2)

// ConstantPacer sends Freq requests per second, evenly spaced, the first at time 0.
type ConstantPacer struct {
	Freq float64 // requests per second; must be > 0
}

var _ Pacer = ConstantPacer{}

// String describes the pacer, e.g. "constant 100/s".
func (cp ConstantPacer) String() string { return fmt.Sprintf("constant %g/s", cp.Freq) }

// Pace implements Pacer.
func (cp ConstantPacer) Pace(hits uint64) (time.Duration, bool) {
	return dueOrStop(cp.dueAt(float64(hits)))
}

// Rate implements Pacer.
func (cp ConstantPacer) Rate(time.Duration) float64 { return cp.Freq }

func (cp ConstantPacer) dueAt(h float64) float64 {
	if cp.Freq <= 0 || math.IsNaN(cp.Freq) {
		return math.Inf(1)
	}
	return h / cp.Freq * float64(time.Second)
}

// RampPacer raises the rate linearly from From to To requests per second over Over,
// then holds To. With Over = 0 it is a ConstantPacer at To.
type RampPacer struct {
	From float64       // rate at time 0, requests per second (>= 0)
	To   float64       // rate from Over on, requests per second (> 0)
	Over time.Duration // length of the ramp
}

var _ Pacer = RampPacer{}

// String describes the pacer, e.g. "ramp 0/s→100/s over 30s".
func (rp RampPacer) String() string {
	return fmt.Sprintf("ramp %g/s→%g/s over %s", rp.From, rp.To, rp.Over)
}

// Pace implements Pacer.
func (rp RampPacer) Pace(hits uint64) (time.Duration, bool) {
	return dueOrStop(rp.dueAt(float64(hits)))
}

// Rate implements Pacer.
func (rp RampPacer) Rate(elapsed time.Duration) float64 {
	if rp.Over <= 0 || elapsed >= rp.Over {
		return rp.To
	}
	if elapsed < 0 {
		return rp.From
	}
	return rp.From + (rp.To-rp.From)*float64(elapsed)/float64(rp.Over)
}

// dueAt inverts the cumulative arrival count H(x) = From·x + (To−From)·x²/(2·Over)
// (x in seconds, during the ramp; linear at To afterwards) and returns nanoseconds.
func (rp RampPacer) dueAt(h float64) float64 {
	if rp.To <= 0 || rp.From < 0 || math.IsNaN(rp.To) || math.IsNaN(rp.From) {
		return math.Inf(1)
	}
	if rp.Over <= 0 {
		return ConstantPacer{Freq: rp.To}.dueAt(h)
	}
	f, t, over := rp.From, rp.To, rp.Over.Seconds()
	rampHits := (f + t) * over / 2
	if h > rampHits {
		return (over + (h-rampHits)/t) * float64(time.Second)
	}
	a := (t - f) / (2 * over)
	if a == 0 {
		return h / f * float64(time.Second)
	}
	// The root of a·x² + f·x − h = 0 in a form that stays exact when f = 0 or a < 0.
	disc := math.Max(f*f+4*a*h, 0)
	den := f + math.Sqrt(disc)
	if den == 0 {
		return 0
	}
	return 2 * h / den * float64(time.Second)
}

// continuous is a schedule defined for fractional hit counts, which PoissonPacer
// warps with exponential gaps.
type continuous interface {
	Pacer
	dueAt(h float64) float64
}

// PoissonPacer sends requests as a Poisson process whose mean rate follows another
// pacer (ConstantPacer or RampPacer): gaps between arrivals are exponentially
// distributed, seeded and reproducible. Pace must be called with hits = 0, 1, 2, … in
// order, as the runner does; it is safe for concurrent use.
type PoissonPacer struct {
	mean continuous

	mu   sync.Mutex
	rng  *rand.Rand
	next uint64  // the hit number Pace expects next
	sum  float64 // unit-rate arrival time of hit next
	last float64 // dueAt(sum) for hit next−1
}

var _ Pacer = (*PoissonPacer)(nil)

// NewPoissonPacer returns a Poisson pacer around mean, which must be a ConstantPacer
// or a RampPacer.
func NewPoissonPacer(mean Pacer, seed uint64) (*PoissonPacer, error) {
	c, ok := mean.(continuous)
	if !ok {
		return nil, fmt.Errorf("poisson pacer: mean must be a ConstantPacer or RampPacer, not %T", mean)
	}
	return &PoissonPacer{mean: c, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, nil
}

// String describes the pacer, e.g. "poisson(constant 100/s)".
func (pp *PoissonPacer) String() string { return fmt.Sprintf("poisson(%v)", pp.mean) }

// Pace implements Pacer. Asking again for the last hit returns the same time.
func (pp *PoissonPacer) Pace(hits uint64) (time.Duration, bool) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if hits+1 == pp.next {
		return dueOrStop(pp.last)
	}
	if hits != pp.next {
		return 0, true // out of order: the schedule is not reproducible, so stop
	}
	if hits > 0 {
		pp.sum += pp.rng.ExpFloat64()
	}
	pp.next++
	pp.last = pp.mean.dueAt(pp.sum)
	return dueOrStop(pp.last)
}

// Rate implements Pacer: the mean rate.
func (pp *PoissonPacer) Rate(elapsed time.Duration) float64 { return pp.mean.Rate(elapsed) }

func dueOrStop(ns float64) (time.Duration, bool) {
	if math.IsNaN(ns) || ns > maxDue || ns < 0 {
		return 0, true
	}
	return time.Duration(ns), false
}
