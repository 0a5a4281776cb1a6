package loadtest

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults for Options; the CLI documents them as its flag defaults.
const (
	DefaultUsers        = 10               // closed-loop users
	DefaultSpawnRate    = 1.0              // closed-loop users started per second
	DefaultMaxInFlight  = 1000             // open-loop requests outstanding at once
	DefaultTimeout      = 60 * time.Second // per request, whole exchange (streaming included)
	DefaultStopGrace    = 2 * time.Second  // in-flight requests may finish this long after the stop
	DefaultMinLength    = 16               // custom_length: smallest max_length
	DefaultMaxLength    = 128              // custom_length: largest max_length
	DefaultRapidLength  = 8                // rapid: max_length
	DefaultStreamLength = 64               // stream: max_tokens
	DefaultBucketWidth  = time.Second      // time-series resolution at the start
	DefaultMaxBuckets   = 1800             // time-series buckets kept; beyond, neighbours merge
	DefaultSeed         = 1
)

// Options describes one run. The zero value of each field takes the default named on it.
type Options struct {
	Targets Targeter // where requests go (required)

	Weights      Weights  // scenario mix; all zero: DefaultWeights
	Prompts      []string // prompt set; nil: DefaultPrompts()
	MinLength    int      // custom_length draws max_length uniformly in [MinLength, MaxLength]
	MaxLength    int
	RapidLength  int    // rapid scenario's max_length
	StreamLength int    // stream scenario's max_tokens
	StreamModel  string // "model" field of the streaming request; omitted when empty
	IgnoreEOS    bool   // streaming requests ask for exactly StreamLength tokens (ignore_eos)
	Seed         uint64 // makes the request sequence reproducible (0: DefaultSeed)
	AuthToken    string // sent as "Authorization: Bearer <token>" on every request ("" = none)

	// Closed loop (Pacer == nil): Users users, started at SpawnRate per second, each
	// waiting a uniform random think time in [ThinkMin, ThinkMax] between requests
	// (none after a rapid request).
	Users     int
	SpawnRate float64
	ThinkMin  time.Duration
	ThinkMax  time.Duration

	// Open loop (Pacer != nil): requests are due when the Pacer says; latency counts
	// from that time. At most MaxInFlight are outstanding; a request due while all
	// are busy waits for one and is counted as a missed schedule.
	Pacer       Pacer
	MaxInFlight int

	Duration  time.Duration // stop issuing after this long (0: no limit)
	Requests  uint64        // stop issuing after this many requests (0: no limit)
	Timeout   time.Duration // per request
	StopGrace time.Duration // after the stop, in-flight requests get this long before they are cancelled (negative: none)

	BucketWidth time.Duration // initial time-series bucket width
	MaxBuckets  int           // time-series bucket cap

	// Client, when set, sends every request. When nil, plain-HTTP requests without a
	// body take the fast path (a raw HTTP/1.1 keep-alive connection per worker) unless
	// DisableFastPath is set, and the rest use NewHTTPClient.
	Client          *http.Client
	DisableFastPath bool
	Metrics         *Metrics     // nil: no Prometheus metrics
	Logger          *slog.Logger // nil: discard

	// Progress, when set, is called about every ProgressEvery with a snapshot of the
	// run so far (the CLI prints its status line from it).
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// withDefaults returns a copy of o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Weights == (Weights{}) {
		o.Weights = DefaultWeights
	}
	if o.Prompts == nil {
		o.Prompts = DefaultPrompts()
	}
	setInt(&o.MinLength, DefaultMinLength)
	setInt(&o.MaxLength, DefaultMaxLength)
	setInt(&o.RapidLength, DefaultRapidLength)
	setInt(&o.StreamLength, DefaultStreamLength)
	setInt(&o.Users, DefaultUsers)
	setInt(&o.MaxInFlight, DefaultMaxInFlight)
	setInt(&o.MaxBuckets, DefaultMaxBuckets)
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.SpawnRate == 0 {
		o.SpawnRate = DefaultSpawnRate
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.StopGrace == 0 {
		o.StopGrace = DefaultStopGrace
	}
	if o.BucketWidth == 0 {
		o.BucketWidth = DefaultBucketWidth
	}
	if o.ProgressEvery == 0 {
		o.ProgressEvery = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func setInt(p *int, def int) {
	if *p == 0 {
		*p = def
	}
}

// validate reports every problem with o (after defaults) at once.
func (o *Options) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if o.Targets == nil {
		add("no target: give one or more URLs or a Consul service")
	}
	for i, w := range o.Weights {
		if w < 0 {
			add("weight of %s is %d; must be >= 0", Scenario(i), w)
		}
	}
	if o.Weights.total() == 0 {
		add("every scenario weight is 0")
	}
	if o.MinLength < 1 || o.MaxLength < o.MinLength {
		add("length range %d..%d: need 1 <= min <= max", o.MinLength, o.MaxLength)
	}
	if o.RapidLength < 1 || o.StreamLength < 1 {
		add("rapid and stream lengths must be >= 1")
	}
	if o.Pacer == nil {
		if o.Users < 1 {
			add("users %d: must be >= 1", o.Users)
		}
		if o.SpawnRate <= 0 {
			add("spawn rate %g: must be > 0", o.SpawnRate)
		}
		if o.ThinkMin < 0 || o.ThinkMax < o.ThinkMin {
			add("think time %s..%s: need 0 <= min <= max", o.ThinkMin, o.ThinkMax)
		}
	}
	if o.MaxInFlight < 1 {
		add("max in-flight %d: must be >= 1", o.MaxInFlight)
	}
	if o.Duration < 0 || o.Timeout < 0 || o.BucketWidth < 0 {
		add("durations must not be negative")
	}
	if o.MaxBuckets < 2 {
		add("max buckets %d: must be >= 2", o.MaxBuckets)
	}
	return errors.Join(errs...)
}
