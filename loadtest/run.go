package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Run executes the load test described by o until its duration or request count is
// reached or ctx is cancelled (a signal), then lets in-flight requests finish for up
// to o.StopGrace and returns the summary. An error means the options were invalid;
// failed requests are results, not errors.
func Run(ctx context.Context, o Options) (*Summary, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	m, err := newMix(&o)
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	client := o.Client
	var ft *fastTransport
	if client == nil {
		client = NewHTTPClient(max(o.MaxInFlight, o.Users), o.Timeout)
		if !o.DisableFastPath {
			ft = &fastTransport{dialer: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}, timeout: o.Timeout, conns: newConnSet()}
		}
	}

	// stopCtx ends issuing; reqCtx ends in-flight requests StopGrace later.
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	if o.Duration > 0 {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithTimeout(stopCtx, o.Duration)
		defer cancel()
	}
	reqCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	if ft != nil {
		stopAfter := context.AfterFunc(reqCtx, ft.conns.abort)
		defer stopAfter()
	}
	graceDone := make(chan struct{})
	go func() {
		defer close(graceDone)
		<-stopCtx.Done()
		select {
		case <-time.After(o.StopGrace):
			abort()
		case <-reqCtx.Done():
		}
	}()

	start := time.Now()
	r := &runner{o: &o, mix: m, client: client, ft: ft, rec: newRecorder(start, o.BucketWidth, o.MaxBuckets, o.Metrics),
		start: start, stop: stop, reqCtx: reqCtx}
	if o.AuthToken != "" {
		r.auth = "Bearer " + o.AuthToken
	}
	rate0 := 0.0
	if o.Pacer != nil {
		rate0 = o.Pacer.Rate(0)
	}
	if o.Metrics != nil {
		o.Metrics.Users.Set(0)
		o.Metrics.TargetRate.Set(rate0)
		o.Metrics.InFlight.Set(0)
	}
	r.rec.sample(0, rate0)

	tickDone := make(chan struct{})
	var tickWG sync.WaitGroup
	tickWG.Add(1)
	go func() {
		defer tickWG.Done()
		r.tick(tickDone)
	}()

	o.Logger.Info("load test starting", "mode", r.mode(), "weights", o.Weights.String(), "seed", o.Seed,
		"duration", o.Duration, "requests", o.Requests)
	if o.Pacer != nil {
		r.openLoop(stopCtx)
	} else {
		r.closedLoop(stopCtx)
	}
	elapsed := time.Since(start)
	// Why issuing ended, decided before stop(): a pacer that ends its own schedule
	// returns with stopCtx still live ("done").
	by := stoppedBy(ctx, stopCtx, r.limitReached.Load())
	stop()  // release the grace goroutine's wait on stopCtx (the schedule may have ended by itself)
	abort() // everything has returned; end the grace period
	if o.Client == nil {
		client.CloseIdleConnections()
	}
	<-graceDone
	close(tickDone)
	tickWG.Wait()
	if o.Metrics != nil {
		o.Metrics.Users.Set(0)
		o.Metrics.TargetRate.Set(0)
	}
	sum := r.rec.summary(r.mode(), elapsed, by)
	sum.Seed = o.Seed
	sum.Weights = o.Weights
	o.Logger.Info("load test finished", "requests", sum.Total.Requests, "errors", sum.Total.Errors, "elapsed", elapsed.Round(time.Millisecond))
	return sum, nil
}

func stoppedBy(parent, stopCtx context.Context, limit bool) string {
	switch {
	case limit:
		return "requests"
	case parent.Err() != nil:
		return "signal"
	case stopCtx.Err() != nil:
		return "duration"
	}
	return "done"
}

type runner struct {
	o      *Options
	mix    *mix
	client *http.Client
	ft     *fastTransport
	rec    *recorder
	start  time.Time
	stop   context.CancelFunc
	reqCtx context.Context
	auth   string // Authorization header value ("" = none)

	issued       atomic.Uint64
	limitReached atomic.Bool
}

func (r *runner) mode() string {
	if r.o.Pacer != nil {
		return "open"
	}
	return "closed"
}

// take reserves one request against the count limit; false means stop.
func (r *runner) take() bool {
	if r.o.Requests == 0 {
		return true
	}
	if r.issued.Add(1) > r.o.Requests {
		r.limitReached.Store(true)
		r.stop()
		return false
	}
	return true
}

// tick feeds progress and the time-series load levels once per ProgressEvery.
func (r *runner) tick(done <-chan struct{}) {
	t := time.NewTicker(r.o.ProgressEvery)
	defer t.Stop()
	var prevN uint64
	var prevAt time.Duration
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			at := now.Sub(r.start)
			rate := 0.0
			if r.o.Pacer != nil {
				rate = r.o.Pacer.Rate(at)
				if r.o.Metrics != nil {
					r.o.Metrics.TargetRate.Set(rate)
				}
			}
			r.rec.sample(at, rate)
			if r.o.Progress != nil {
				p := r.rec.progress(now, prevN, prevAt)
				p.TargetRate = rate
				prevN, prevAt = p.Requests, p.Elapsed
				r.o.Progress(p)
			}
		}
	}
}

// send performs one request, records it and returns its result (valid until the
// worker's next request).
func (r *runner) send(w *worker, s *spec, intended time.Time) *result {
	t, err := r.o.Targets.Next()
	r.rec.addInFlight(1)
	var res *result
	if err != nil {
		now := time.Now()
		res = &w.res
		*res = result{scenario: s.scenario, kind: classify(err), detail: err.Error(),
			end: now.Sub(r.start), latency: now.Sub(intended), gaps: res.gaps[:0]}
	} else {
		res = w.do(r.reqCtx, t, s, r.start, intended)
	}
	r.rec.addInFlight(-1)
	r.rec.record(res)
	if res.kind != errNone && res.kind != errStatus {
		r.o.Logger.Debug("request failed", "scenario", s.scenario.String(), "kind", res.kind.String(), "err", res.detail)
	}
	return res
}

// openLoop sends requests when the pacer says they are due, from a pool of up to
// MaxInFlight workers. The scenario sequence comes from one seeded generator, so a
// seed reproduces it exactly.
func (r *runner) openLoop(ctx context.Context) {
	type job struct {
		s        spec
		intended time.Time
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	workers := 0
	rng := newRand(r.o.Seed)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	workerLoop := func(first job) {
		defer wg.Done()
		w := newWorker(r.client, r.ft, r.auth)
		defer w.close()
		j := first
		for {
			r.send(w, &j.s, j.intended)
			var ok bool
			if j, ok = <-jobs; !ok {
				return
			}
		}
	}

loop:
	for hits := uint64(0); ; hits++ {
		due, stop := r.o.Pacer.Pace(hits)
		if stop {
			break
		}
		intended := r.start.Add(due)
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		if !r.take() {
			break
		}
		sc := r.mix.pickScenario(rng)
		j := job{s: r.mix.build(sc, rng), intended: intended}
		select {
		case jobs <- j:
			continue
		default:
		}
		if workers < r.o.MaxInFlight {
			workers++
			wg.Add(1)
			go workerLoop(j)
			continue
		}
		r.rec.missedSchedule(time.Since(r.start))
		select {
		case jobs <- j:
		case <-ctx.Done():
			break loop
		}
	}
	close(jobs)
	wg.Wait()
}

// noTargetWait is how long a closed-loop user waits after an attempt that reached no
// server (no passing Consul instance, connection refused or failed) before it tries
// again.
const noTargetWait = time.Second

// closedLoop runs Users users, started at SpawnRate per second. Each user has its own
// seeded generator (seed, user number), so its sequence of requests is reproducible.
func (r *runner) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	every := time.Duration(float64(time.Second) / r.o.SpawnRate)
	next := time.Now()
spawn:
	for u := range r.o.Users {
		if u > 0 {
			next = next.Add(every)
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					break spawn
				case <-time.After(d):
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		r.rec.addUsers(1)
		go func() {
			defer wg.Done()
			defer r.rec.addUsers(-1)
			r.user(ctx, uint64(u))
		}()
	}
	wg.Wait()
}

func (r *runner) user(ctx context.Context, id uint64) {
	rng := rand.New(rand.NewPCG(r.o.Seed, id+1))
	w := newWorker(r.client, r.ft, r.auth)
	defer w.close()
	var think *time.Timer
	for ctx.Err() == nil && r.take() {
		sc := r.mix.pickScenario(rng)
		s := r.mix.build(sc, rng)
		res := r.send(w, &s, time.Now())
		var d time.Duration
		switch {
		case res.kind == errNoTarget || res.kind == errConnRefused || res.kind == errConnection:
			// Nothing reached a server (no target, or it cannot be connected to): wait
			// for it to come back instead of spinning (each attempt is still counted,
			// once per user per noTargetWait).
			d = noTargetWait
		case sc == ScenarioRapid || r.o.ThinkMax <= 0:
			continue
		default:
			d = r.o.ThinkMin
			if span := r.o.ThinkMax - r.o.ThinkMin; span > 0 {
				d += time.Duration(rng.Int64N(int64(span) + 1))
			}
		}
		if think == nil {
			think = time.NewTimer(d)
		} else {
			think.Reset(d)
		}
		select {
		case <-ctx.Done():
			think.Stop()
			return
		case <-think.C:
		}
	}
}
