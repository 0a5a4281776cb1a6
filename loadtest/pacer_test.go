package loadtest

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestConstantPacerSpacing(t *testing.T) {
	p := ConstantPacer{Freq: 200}
	for _, tc := range []struct {
		hits uint64
		want time.Duration
	}{{0, 0}, {1, 5 * time.Millisecond}, {200, time.Second}, {1000, 5 * time.Second}} {
		got, stop := p.Pace(tc.hits)
		if stop || got != tc.want {
			t.Errorf("Pace(%d) = %v, %v; want %v, false", tc.hits, got, stop, tc.want)
		}
	}
	if _, stop := (ConstantPacer{}).Pace(0); !stop {
		t.Error("a zero rate must stop the run")
	}
}

// The ramp's schedule must match the integral of its rate: at time x into a ramp from
// f to t over T, f·x + (t−f)·x²/(2T) requests are due.
func TestRampPacerFollowsIntegral(t *testing.T) {
	for _, rp := range []RampPacer{
		{From: 0, To: 100, Over: 10 * time.Second},
		{From: 50, To: 150, Over: 4 * time.Second},
		{From: 200, To: 100, Over: 2 * time.Second},
	} {
		expected := func(x float64) float64 {
			T := rp.Over.Seconds()
			if x <= T {
				return rp.From*x + (rp.To-rp.From)*x*x/(2*T)
			}
			return (rp.From+rp.To)*T/2 + rp.To*(x-T)
		}
		for _, h := range []uint64{1, 10, 99, 250, 500, 1000} {
			due, stop := rp.Pace(h)
			if stop {
				t.Fatalf("%v: Pace(%d) stopped", rp, h)
			}
			if got := expected(due.Seconds()); math.Abs(got-float64(h)) > 1e-6*float64(h)+1e-6 {
				t.Errorf("%v: hit %d due at %v, where the integral gives %.6f", rp, h, due, got)
			}
		}
		if got := rp.Rate(rp.Over / 2); !within(got, (rp.From+rp.To)/2, 1e-9) {
			t.Errorf("%v: rate at half the ramp = %g", rp, got)
		}
		if got := rp.Rate(2 * rp.Over); got != rp.To {
			t.Errorf("%v: rate after the ramp = %g, want %g", rp, got, rp.To)
		}
	}
}

func TestPoissonPacerRateAndReproducibility(t *testing.T) {
	const n = 100000
	a, _ := NewPoissonPacer(ConstantPacer{Freq: 1000}, 7)
	b, _ := NewPoissonPacer(ConstantPacer{Freq: 1000}, 7)
	c, _ := NewPoissonPacer(ConstantPacer{Freq: 1000}, 8)
	var last time.Duration
	var sumSq float64
	differs := false
	for i := uint64(0); i < n; i++ {
		da, _ := a.Pace(i)
		db, _ := b.Pace(i)
		dc, _ := c.Pace(i)
		if da != db {
			t.Fatalf("same seed, hit %d: %v != %v", i, da, db)
		}
		differs = differs || da != dc
		if da < last {
			t.Fatalf("hit %d due at %v, before hit %d at %v", i, da, i-1, last)
		}
		gap := (da - last).Seconds()
		sumSq += gap * gap
		last = da
	}
	if !differs {
		t.Error("different seeds gave the same schedule")
	}
	// Mean gap 1ms within 2% (100k samples: the standard error is 0.3%).
	mean := last.Seconds() / (n - 1)
	if !within(mean, 1e-3, 2e-5) {
		t.Errorf("mean gap %.6fs, want 0.001s ±2%%", mean)
	}
	// Exponential gaps: E[gap²] = 2/λ², i.e. a coefficient of variation of 1.
	if cv2 := sumSq/(n-1)/(mean*mean) - 1; !within(cv2, 1, 0.05) {
		t.Errorf("squared coefficient of variation %.3f, want 1 ±0.05 (exponential gaps)", cv2)
	}
	if d, stop := a.Pace(n - 1); stop || d != last {
		t.Errorf("asking again for the last hit: %v, %v; want %v", d, stop, last)
	}
	if _, stop := a.Pace(n + 5); !stop {
		t.Error("skipping hits must stop the pacer")
	}
	if _, err := NewPoissonPacer(PacerFunc(func(uint64) (time.Duration, bool) { return 0, true }), 1); err == nil {
		t.Error("a PacerFunc cannot be the mean of a Poisson pacer")
	}
}

// An open-loop rate must be held against a real server: the server counts arrivals per
// 500ms window, and each window and the total must be within tolerance of the rate.
// Tolerance: ±2% on the total, ±15% per window (scheduling jitter on a shared CI machine).
func TestOpenLoopHoldsRate(t *testing.T) {
	const rate, dur = 400.0, 2 * time.Second
	var mu sync.Mutex
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		_, _ = w.Write([]byte(`{"generated_tokens":1}`))
	}))
	defer srv.Close()
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: only(ScenarioBasic),
		Pacer: ConstantPacer{Freq: rate}, Duration: dur,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := rate * dur.Seconds()
	if got := float64(sum.Total.Requests); !within(got, want, 0.02*want) {
		t.Errorf("completed %v requests in %v at %v/s; want %v ±2%%", got, dur, rate, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) == 0 {
		t.Fatal("no request arrived")
	}
	start := arrivals[0]
	windows := make([]int, 4)
	for _, a := range arrivals {
		if i := int(a.Sub(start) / (500 * time.Millisecond)); i < len(windows) {
			windows[i]++
		}
	}
	for i, n := range windows[:3] { // the last window may be cut by the stop
		if !within(float64(n), rate/2, 0.15*rate/2) {
			t.Errorf("window %d (500ms) saw %d arrivals; want %v ±15%% (all windows: %v)", i, n, rate/2, windows)
		}
	}
	if sum.MissedSchedule != 0 {
		t.Errorf("missed schedule %d against an idle server", sum.MissedSchedule)
	}
}
