package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inferstack/inferstack/loadtest"
)

// errHelp is returned after -h printed the usage.
var errHelp = errors.New("help requested")

// thresholdError lists the thresholds a finished run failed.
type thresholdError struct{ failed []loadtest.ThresholdResult }

func (e *thresholdError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d threshold(s) failed:", len(e.failed))
	for _, r := range e.failed {
		b.WriteString("\n  " + r.String())
	}
	return b.String()
}

// config is what the flags describe.
type config struct {
	targets       []string
	consulService string
	consulTag     string
	consulScheme  string
	consulRefresh time.Duration

	rate      float64
	arrival   string
	ramp      time.Duration
	rampFrom  float64
	users     int
	spawnRate float64
	thinkMin  time.Duration
	thinkMax  time.Duration
	inFlight  int

	duration  time.Duration
	requests  uint64
	timeout   time.Duration
	stopGrace time.Duration

	weights      string
	promptsFile  string
	minLength    int
	maxLength    int
	rapidLength  int
	streamLength int
	model        string
	ignoreEOS    bool
	seed         uint64

	authToken     string
	authTokenFile string

	thresholds  []string
	outDir      string
	metricsAddr string
	logLevel    string
	logFormat   string
	status      string
	cpuProfile  string
	fastPath    bool
}

// stringList is a repeatable flag; from the environment it takes a comma-separated list.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

const envPrefix = "LOADTEST_"

// envName is the environment variable of a flag: LOADTEST_<FLAG>.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func newFlagSet(c *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var((*stringList)(&c.targets), "target", "base URL of a server, e.g. http://127.0.0.1:8000 (repeatable; env: comma-separated)")
	fs.StringVar(&c.consulService, "consul-service", "", "discover targets as the passing instances of this Consul service (uses CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, …)")
	fs.StringVar(&c.consulTag, "consul-tag", "", "only Consul instances with this tag")
	fs.StringVar(&c.consulScheme, "consul-scheme", "http", "scheme to reach Consul-discovered instances")
	fs.DurationVar(&c.consulRefresh, "consul-refresh", 10*time.Second, "longest wait of each blocking query refreshing the Consul instances")

	fs.Float64Var(&c.rate, "rate", 0, "open loop: arrival rate in requests/s (0: closed loop with --users)")
	fs.StringVar(&c.arrival, "arrival", "constant", "open loop: arrival process, constant or poisson")
	fs.DurationVar(&c.ramp, "ramp", 0, "open loop: raise the rate linearly from --ramp-from to --rate over this long")
	fs.Float64Var(&c.rampFrom, "ramp-from", 0, "open loop: rate at the start of the ramp, requests/s")
	fs.IntVar(&c.users, "users", loadtest.DefaultUsers, "closed loop: number of users")
	fs.Float64Var(&c.spawnRate, "spawn-rate", loadtest.DefaultSpawnRate, "closed loop: users started per second")
	fs.DurationVar(&c.thinkMin, "think-min", 0, "closed loop: shortest think time between a user's requests")
	fs.DurationVar(&c.thinkMax, "think-max", 0, "closed loop: longest think time (uniform in [min, max]; none after rapid requests)")
	fs.IntVar(&c.inFlight, "max-in-flight", loadtest.DefaultMaxInFlight, "open loop: most requests outstanding; beyond, requests wait and count as missed schedule")

	fs.DurationVar(&c.duration, "duration", 0, "stop issuing after this long (default 60s when --requests is not given either)")
	fs.Uint64Var(&c.requests, "requests", 0, "stop issuing after this many requests (0: no limit)")
	fs.DurationVar(&c.timeout, "timeout", loadtest.DefaultTimeout, "per-request timeout, whole exchange")
	fs.DurationVar(&c.stopGrace, "stop-grace", loadtest.DefaultStopGrace, "at the stop, in-flight requests get this long before they are cancelled (0: at once; keep under Nomad's kill_timeout)")

	fs.StringVar(&c.weights, "weights", loadtest.DefaultWeights.String(), "scenario weights")
	fs.StringVar(&c.promptsFile, "prompts", "", "prompt file, one per line, # comments (default: the embedded medical/definition set)")
	fs.IntVar(&c.minLength, "min-length", loadtest.DefaultMinLength, "custom_length: smallest max_length")
	fs.IntVar(&c.maxLength, "max-length", loadtest.DefaultMaxLength, "custom_length: largest max_length")
	fs.IntVar(&c.rapidLength, "rapid-length", loadtest.DefaultRapidLength, "rapid: max_length")
	fs.IntVar(&c.streamLength, "stream-length", loadtest.DefaultStreamLength, "stream: max_tokens")
	fs.StringVar(&c.model, "model", "", "stream: the \"model\" field of /v1/completions requests (omitted when empty)")
	fs.BoolVar(&c.ignoreEOS, "ignore-eos", false, "stream: ask for exactly --stream-length tokens (ignore_eos), for stable token timings")
	fs.Uint64Var(&c.seed, "seed", loadtest.DefaultSeed, "random seed (>= 1); the same seed gives the same request sequence")
	fs.StringVar(&c.authToken, "auth-token", "", "bearer token sent on every request (for a server run with --auth-token)")
	fs.StringVar(&c.authTokenFile, "auth-token-file", "", "file holding the bearer token (instead of --auth-token)")

	fs.Var((*stringList)(&c.thresholds), "threshold", "objective such as p99<2s, error_rate<1%, ttft_p95<500ms, basic:p95<1s; a failure exits 2 (repeatable; env: comma-separated)")
	fs.StringVar(&c.outDir, "out", "", "write summary.json, summary.csv, timeseries.csv and report.html into this directory")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics here while running, e.g. :9102 (a bare port binds 127.0.0.1; empty: off)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json (logs go to stderr)")
	fs.BoolVar(&c.fastPath, "fast-path", true, "send plain-HTTP requests without a body over raw keep-alive HTTP/1.1 connections (false: net/http for every request)")
	fs.StringVar(&c.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the generator itself to this file (for tuning)")
	fs.StringVar(&c.status, "status", "auto", "live status: auto (a line on a terminal, a log line every 10s otherwise), line, log or off")

	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loadtest [flags]\n\nDrives an inference server with weighted scenarios and reports exact percentiles.\nEvery flag can be set with LOADTEST_<FLAG> (e.g. LOADTEST_MAX_IN_FLIGHT); the command line wins.\nExit codes: 0 ok, 1 usage or runtime error, 2 a threshold failed.\n\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(stderr, "  --%s\n    \t%s%s [$%s]\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
	return fs
}

// applyEnv sets every flag whose LOADTEST_ variable is set; flags parsed afterwards win.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(envName(f.Name))
		if v == "" {
			return
		}
		parts := []string{v}
		if _, ok := f.Value.(*stringList); ok {
			parts = strings.Split(v, ",")
		}
		for _, p := range parts {
			if err := f.Value.Set(strings.TrimSpace(p)); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// run parses the configuration, runs the load test and writes the reports.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c config
	fs := newFlagSet(&c, stderr)
	if err := applyEnv(fs, getenv); err != nil {
		return fmt.Errorf("environment: %w", err)
	}
	// Repeatable flags given on the command line replace the environment's list.
	envTargets, envThresholds := c.targets, c.thresholds
	c.targets, c.thresholds = nil, nil
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (every setting is a flag; see -h)", fs.Args())
	}
	if c.targets == nil {
		c.targets = envTargets
	}
	if c.thresholds == nil {
		c.thresholds = envThresholds
	}

	status, err := resolveStatus(c.status, stderr)
	if err != nil {
		return err
	}
	var term *statusTerm // shares stderr between the status line and the logs
	logOut := stderr
	if status == "line" {
		term = &statusTerm{w: stderr}
		logOut = term
	}
	log, err := newLogger(logOut, c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	thresholds, err := loadtest.ParseThresholds(c.thresholds)
	if err != nil {
		return err
	}
	opts, closeTargets, err := c.options(ctx, log)
	if err != nil {
		return err
	}
	defer closeTargets()
	if c.outDir != "" {
		// Find an unusable directory now, not after the run.
		if err := checkOutDir(c.outDir); err != nil {
			return err
		}
	}

	if c.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		opts.Metrics = loadtest.NewMetrics()
		if err := opts.Metrics.Register(reg); err != nil {
			return err
		}
		srv, err := serveMetrics(c.metricsAddr, reg, log)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	opts.Progress = statusPrinter(status, term, log)

	if c.cpuProfile != "" {
		stopProfile, err := startCPUProfile(c.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	sum, err := loadtest.Run(ctx, opts)
	if term != nil {
		term.clear()
	}
	if err != nil {
		return err
	}
	results := loadtest.Evaluate(sum, thresholds)
	if err := loadtest.WriteText(stdout, sum); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if len(results) > 0 {
		fmt.Fprintln(stdout, "\nthresholds:")
		for _, r := range results {
			fmt.Fprintln(stdout, "  "+r.String())
		}
	}
	var errs []error // a report that cannot be written must not hide a failed threshold
	if sum.ReachedNoServer() {
		errs = append(errs, fmt.Errorf("no request reached a server (%d attempts; see the error kinds above): check --target / --consul-service", sum.Total.Requests))
	}
	if c.outDir != "" {
		if err := writeReports(c.outDir, sum, results); err != nil {
			errs = append(errs, err)
		} else {
			log.Info("reports written", "dir", c.outDir)
		}
	}
	if failed := loadtest.Failed(results); len(failed) > 0 {
		errs = append(errs, &thresholdError{failed: failed})
	}
	return errors.Join(errs...)
}

// checkOutDir creates dir and checks that files can be written into it.
func checkOutDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	f, err := os.CreateTemp(dir, ".loadtest-write-check-*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// options turns the flags into loadtest.Options; the returned func releases the targets.
func (c *config) options(ctx context.Context, log *slog.Logger) (loadtest.Options, func(), error) {
	noop := func() {}
	var errs []error
	o := loadtest.Options{
		MinLength: c.minLength, MaxLength: c.maxLength, RapidLength: c.rapidLength, StreamLength: c.streamLength,
		StreamModel: c.model, IgnoreEOS: c.ignoreEOS, Seed: c.seed,
		Users: c.users, SpawnRate: c.spawnRate, ThinkMin: c.thinkMin, ThinkMax: c.thinkMax,
		MaxInFlight: c.inFlight, Duration: c.duration, Requests: c.requests, Timeout: c.timeout, StopGrace: c.stopGrace,
		Logger: log, DisableFastPath: !c.fastPath,
	}
	if o.Duration == 0 && o.Requests == 0 {
		o.Duration = 60 * time.Second
	}
	switch {
	case c.authToken != "" && c.authTokenFile != "":
		errs = append(errs, errors.New("give --auth-token or --auth-token-file, not both"))
	case c.authTokenFile != "":
		b, err := os.ReadFile(c.authTokenFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--auth-token-file: %w", err))
		} else if o.AuthToken = strings.TrimSpace(string(b)); o.AuthToken == "" {
			errs = append(errs, fmt.Errorf("--auth-token-file %s is empty", c.authTokenFile))
		}
	default:
		o.AuthToken = strings.TrimSpace(c.authToken)
	}
	if strings.ContainsFunc(o.AuthToken, unicode.IsControl) {
		errs = append(errs, errors.New("the auth token must not contain control characters"))
	}
	if c.stopGrace == 0 {
		o.StopGrace = -1 // no grace: cancel in-flight requests at the stop (Options' 0 is the default)
	}
	// The library reads a zero as "use the default"; on the command line a zero is what
	// the user asked for, so reject it where it is not a valid value.
	for _, v := range []struct {
		name string
		val  int
	}{{"--min-length", c.minLength}, {"--max-length", c.maxLength}, {"--rapid-length", c.rapidLength},
		{"--stream-length", c.streamLength}, {"--max-in-flight", c.inFlight}} {
		if v.val < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be >= 1", v.name, v.val))
		}
	}
	if c.seed == 0 {
		errs = append(errs, errors.New("--seed 0: seeds start at 1"))
	}
	if c.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: must be positive", c.timeout))
	}
	if c.duration < 0 || c.stopGrace < 0 || c.ramp < 0 || c.thinkMin < 0 || c.thinkMax < 0 {
		errs = append(errs, errors.New("--duration, --stop-grace, --ramp, --think-min and --think-max must not be negative"))
	}
	for _, v := range []struct {
		name string
		val  float64
	}{{"--rate", c.rate}, {"--ramp-from", c.rampFrom}, {"--spawn-rate", c.spawnRate}} {
		if math.IsNaN(v.val) || math.IsInf(v.val, 0) {
			errs = append(errs, fmt.Errorf("%s %g: must be a finite number", v.name, v.val))
		}
	}
	w, err := loadtest.ParseWeights(c.weights)
	if err != nil {
		errs = append(errs, err)
	} else if w == (loadtest.Weights{}) {
		errs = append(errs, fmt.Errorf("--weights %q: every scenario weight is 0", c.weights))
	}
	o.Weights = w
	if c.consulService != "" {
		if c.consulScheme != "http" && c.consulScheme != "https" {
			errs = append(errs, fmt.Errorf("--consul-scheme %q: want http or https", c.consulScheme))
		}
		if c.consulRefresh <= 0 {
			errs = append(errs, fmt.Errorf("--consul-refresh %s: must be positive", c.consulRefresh))
		}
	}
	if c.promptsFile != "" {
		f, err := os.Open(c.promptsFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("prompts: %w", err))
		} else {
			o.Prompts, err = loadtest.ReadPrompts(f)
			f.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.promptsFile, err))
			}
		}
	}
	if c.users < 1 || c.spawnRate <= 0 {
		errs = append(errs, fmt.Errorf("--users %d and --spawn-rate %g must be positive", c.users, c.spawnRate))
	}
	if c.rate < 0 || c.rampFrom < 0 {
		errs = append(errs, fmt.Errorf("--rate %g and --ramp-from %g must not be negative", c.rate, c.rampFrom))
	}
	if c.rate > 0 {
		var p loadtest.Pacer = loadtest.ConstantPacer{Freq: c.rate}
		if c.ramp > 0 {
			p = loadtest.RampPacer{From: c.rampFrom, To: c.rate, Over: c.ramp}
		}
		switch c.arrival {
		case "constant":
		case "poisson":
			if p, err = loadtest.NewPoissonPacer(p, c.seed); err != nil {
				errs = append(errs, err)
			}
		default:
			errs = append(errs, fmt.Errorf("--arrival %q: want constant or poisson", c.arrival))
		}
		o.Pacer = p
	} else if c.ramp > 0 || c.arrival != "constant" {
		errs = append(errs, errors.New("--ramp and --arrival need an open-loop --rate"))
	}
	if err := errors.Join(errs...); err != nil {
		return o, noop, err
	}
	switch {
	case len(c.targets) > 0 && c.consulService != "":
		return o, noop, errors.New("give --target or --consul-service, not both")
	case len(c.targets) > 0:
		var urls []string
		for _, t := range c.targets {
			urls = append(urls, strings.Split(t, ",")...)
		}
		st, err := loadtest.NewStaticTargets(urls...)
		if err != nil {
			return o, noop, err
		}
		o.Targets = st
		return o, noop, nil
	case c.consulService != "":
		ct, err := loadtest.NewConsulTargets(ctx, loadtest.ConsulOptions{
			Service: c.consulService, Tag: c.consulTag, Scheme: c.consulScheme, Refresh: c.consulRefresh, Logger: log,
		})
		if err != nil {
			return o, noop, err
		}
		o.Targets = ct
		log.Info("consul targets", "service", c.consulService, "instances", len(ct.Targets()))
		return o, func() { _ = ct.Close() }, nil
	}
	return o, noop, errors.New("no target: give --target URL (repeatable) or --consul-service NAME")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serveMetrics serves /metrics on addr; a bare ":port" binds 127.0.0.1.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (*http.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return srv, nil
}

// startCPUProfile profiles the process into path until the returned func runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// writeReports writes the four report files into dir.
func writeReports(dir string, sum *loadtest.Summary, results []loadtest.ThresholdResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	files := []struct {
		name  string
		write func(io.Writer) error
	}{
		{"summary.json", func(w io.Writer) error { return loadtest.WriteJSON(w, sum, results) }},
		{"summary.csv", func(w io.Writer) error { return loadtest.WriteCSV(w, sum) }},
		{"timeseries.csv", func(w io.Writer) error { return loadtest.WriteSeriesCSV(w, sum) }},
		{"report.html", func(w io.Writer) error { return loadtest.WriteHTML(w, sum, results) }},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		out, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		err = f.write(out)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}
