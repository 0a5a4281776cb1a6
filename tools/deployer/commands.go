package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/inferstack/inferstack/loadtest"
	"github.com/inferstack/inferstack/tools/deployer/deploy"
)

// errHelp is returned after -h printed the usage: exit 0.
var errHelp = errors.New("help requested")

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// command is one subcommand: its flags (bound to opts) and what it runs.
type command struct {
	usage string // arguments after the command name
	help  string
	flags func(fs *flag.FlagSet, o *options)
	run   func(ctx context.Context, e *env, args []string) error
}

// waitTimeout is the --timeout of up and restart: a duration (0: no limit), or,
// when not given, a default computed by the command.
type waitTimeout struct {
	d   time.Duration
	set bool
}

func (w *waitTimeout) String() string {
	if w == nil || !w.set {
		return ""
	}
	return w.d.String()
}

func (w *waitTimeout) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return errors.New("want a duration such as 20m, or 0 for no limit")
	}
	w.d, w.set = d, true
	return nil
}

// options are every flag value of every command; each command registers the ones
// it uses.
type options struct {
	client  deploy.ClientOptions
	jobsDir string
	verbose bool
	timeout time.Duration
	// wait is the --timeout of up and restart.
	wait     waitTimeout
	varFiles stringList
	vars     stringList
	dev      bool

	healthService string
	noHealth      bool

	json bool

	follow  bool
	logType string
	all     bool

	purge bool

	offline bool

	users         int
	spawnRate     float64
	rate          float64
	duration      string
	weights       string
	targetService string
	thresholds    stringList
	summaryPath   string
	loadtestJob   string
}

// env is what a command runs with.
type env struct {
	opts   *options
	stdout io.Writer
	stderr io.Writer
	// deployer connects the clients and loads the bundle and variables.
	deployer func() (*deploy.Deployer, error)
}

var commands = map[string]*command{
	"up": {
		usage: "[flags] [JOB...]",
		help:  "submit the bundle (or the named jobs), wait for healthy deployments and print the addresses",
		flags: func(fs *flag.FlagSet, o *options) {
			varFlags(fs, o)
			fs.Var(&o.wait, "timeout", fmt.Sprintf("give up waiting after this `duration` (exit 5; 0: no limit) (default: the jobs' longest update.progress_deadline + %s, at least %s; %s for the bundle)",
				shortDuration(deploy.WaitSlack), shortDuration(deploy.MinWaitTimeout), shortDuration(10*time.Minute+deploy.WaitSlack)))
			fs.StringVar(&o.healthService, "health-service", "inference", "service whose instances must pass their checks (also in Consul when it answers, unless the job's consul_http_addr is empty)")
			fs.BoolVar(&o.noHealth, "no-health-wait", false, "return when the deployments succeed, without waiting for the services' checks")
		},
		run: cmdUp,
	},
	"status": {
		usage: "[--json]",
		help:  "jobs, deployments, allocations, service health (Nomad and Consul), Prometheus targets",
		flags: func(fs *flag.FlagSet, o *options) {
			fs.BoolVar(&o.json, "json", false, "print JSON")
		},
		run: cmdStatus,
	},
	"logs": {
		usage: "[flags] JOB [TASK]",
		help:  "print (or follow with -f) the logs of a job's running allocations",
		flags: func(fs *flag.FlagSet, o *options) {
			fs.BoolVar(&o.follow, "f", false, "follow the logs")
			fs.BoolVar(&o.follow, "follow", false, "follow the logs")
			fs.StringVar(&o.logType, "type", "both", "stdout, stderr or both")
			fs.BoolVar(&o.all, "all", false, "every allocation of the job, not only the running ones")
		},
		run: cmdLogs,
	},
	"restart": {
		usage: "[JOB...]",
		help:  "restart the tasks of every running allocation in place, one at a time, waiting for its checks",
		flags: func(fs *flag.FlagSet, o *options) {
			fs.Var(&o.wait, "timeout", fmt.Sprintf("give up waiting after this `duration` (exit 5; 0: no limit) (default %s)", shortDuration(deploy.MinWaitTimeout)))
		},
		run: cmdRestart,
	},
	"plan": {
		usage: "[flags] [JOB...]",
		help:  "show what `up` would change, without changing anything",
		flags: varFlags,
		run:   cmdPlan,
	},
	"down": {
		usage: "[--purge] [JOB...]",
		help:  "stop the bundle's jobs (and dispatched load tests) and wait until nothing runs",
		flags: func(fs *flag.FlagSet, o *options) {
			fs.BoolVar(&o.purge, "purge", false, "also remove the jobs from Nomad's state")
			fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up waiting after this long (exit 5; 0: no limit)")
		},
		run: cmdDown,
	},
	"validate": {
		usage: "[flags] [JOB...]",
		help:  "check the bundled files offline, then have the Nomad server parse and validate them",
		flags: func(fs *flag.FlagSet, o *options) {
			varFlags(fs, o)
			fs.BoolVar(&o.offline, "offline", false, "only the checks that need no Nomad server")
		},
		run: cmdValidate,
	},
	"loadtest": {
		usage: "[flags]",
		help:  "dispatch the load test job, stream its logs, print its summary; exit 6 when a threshold fails",
		flags: func(fs *flag.FlagSet, o *options) {
			fs.IntVar(&o.users, "users", 0, "closed loop: number of users (dispatch meta users; 0: the job's default)")
			fs.Float64Var(&o.spawnRate, "spawn-rate", 0, "closed loop: users started per second (meta spawn_rate)")
			fs.Float64Var(&o.rate, "rate", 0, "open loop: arrival rate in requests/s (meta rate)")
			fs.StringVar(&o.duration, "duration", "", "how long to run, e.g. 60s (meta duration; default: the job's, 5m for the bundle)")
			fs.StringVar(&o.weights, "weights", "", "scenario weights, e.g. basic=3,custom_length=2,rapid=1,metrics=1 (meta weights)")
			fs.StringVar(&o.targetService, "target-service", "", "Consul or Nomad service to load (meta target_service)")
			fs.Var(&o.thresholds, "threshold", "objective such as p99<2s or error_rate<1% (repeatable; meta thresholds, comma-separated)")
			fs.BoolVar(&o.json, "json", false, "print the JSON summary on stdout (the text summary goes to stderr)")
			fs.StringVar(&o.summaryPath, "summary-path", deploy.DefaultSummaryPath, "path of the JSON summary in the allocation directory")
			fs.StringVar(&o.loadtestJob, "job", "loadtest", "the bundle's parameterized load test job")
			fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up waiting after this long (exit 5; the dispatched job is stopped; 0: no limit)")
		},
		run: cmdLoadtest,
	},
	"version": {
		help: "print the version",
		run: func(_ context.Context, e *env, _ []string) error {
			fmt.Fprintln(e.stdout, versionString())
			return nil
		},
	},
}

// commandOrder is the order of `deployer help`.
var commandOrder = []string{"up", "status", "logs", "restart", "plan", "down", "validate", "loadtest", "version"}

// clientFlags registers the connection flags every command shares.
func clientFlags(fs *flag.FlagSet, o *options) {
	c := &o.client
	fs.StringVar(&c.Address, "address", "", "Nomad HTTP address (default: $NOMAD_ADDR or http://127.0.0.1:4646)")
	fs.StringVar(&c.Region, "region", "", "Nomad region (default: $NOMAD_REGION)")
	fs.StringVar(&c.Namespace, "namespace", "", "Nomad namespace (default: $NOMAD_NAMESPACE)")
	fs.StringVar(&c.Token, "token", "", "Nomad ACL token (default: $NOMAD_TOKEN)")
	fs.StringVar(&c.CACert, "ca-cert", "", "CA certificate file for Nomad TLS (default: $NOMAD_CACERT)")
	fs.StringVar(&c.CAPath, "ca-path", "", "directory of CA certificates (default: $NOMAD_CAPATH)")
	fs.StringVar(&c.ClientCert, "client-cert", "", "client certificate file (default: $NOMAD_CLIENT_CERT)")
	fs.StringVar(&c.ClientKey, "client-key", "", "client key file (default: $NOMAD_CLIENT_KEY)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", "", "server name for TLS (default: $NOMAD_TLS_SERVER_NAME)")
	fs.BoolVar(&c.TLSSkipVerify, "tls-skip-verify", false, "skip TLS verification (default: $NOMAD_SKIP_VERIFY)")
	fs.StringVar(&c.ConsulAddress, "consul-address", "", "Consul HTTP address (default: $CONSUL_HTTP_ADDR or "+deploy.DefaultConsulAddress+")")
	fs.StringVar(&c.ConsulToken, "consul-token", "", "Consul ACL token (default: $CONSUL_HTTP_TOKEN)")
	fs.StringVar(&o.jobsDir, "jobs-dir", os.Getenv("DEPLOYER_JOBS_DIR"), "read the job files from this directory instead of the embedded bundle; their file() paths are relative to its parent (as jobs/… from the repository root) or else to it (env DEPLOYER_JOBS_DIR)")
	fs.BoolVar(&o.verbose, "verbose", false, "debug logging on stderr")
}

// varFlags registers the job variable flags.
func varFlags(fs *flag.FlagSet, o *options) {
	fs.Var(&o.varFiles, "var-file", "variables file (HCL, or JSON when named *.json), [JOB=]PATH: for every job declaring the variables, or only JOB (repeatable)")
	fs.Var(&o.vars, "var", "variable [JOB.]NAME=VALUE (repeatable; wins over --var-file)")
	fs.BoolVar(&o.dev, "dev", false, "apply the bundle's dev var files (dev/JOB.vars.hcl: one dev agent, raw_exec, host network) and the checkout's files (bin/inference, bin/loadtest, the model, ONNX Runtime, Prometheus; run from the repository root after make build ort prometheus; a missing one is an error unless --var gives it) before --var-file and --var")
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stdout)
		if len(args) == 0 {
			return deploy.Errorf(deploy.KindInput, "no command given")
		}
		return nil
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		printUsage(stderr)
		return deploy.Errorf(deploy.KindInput, "unknown command %q", name)
	}
	o := &options{}
	fs := flag.NewFlagSet("deployer "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if name != "version" {
		clientFlags(fs, o)
	}
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: deployer %s %s\n\n%s\n\nFlags:\n", name, cmd.usage, cmd.help)
		fs.PrintDefaults()
	}
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return deploy.Errorf(deploy.KindInput, "%s: %w", name, err)
	}
	e := &env{opts: o, stdout: stdout, stderr: stderr}
	e.deployer = func() (*deploy.Deployer, error) { return newDeployer(o, positional, stdout, stderr) }
	return cmd.run(ctx, e, positional)
}

// parseInterspersed parses flags anywhere among the positional arguments
// (`deployer logs inference -f`); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: deployer COMMAND [flags] [args]\n\nCommands:\n")
	for _, n := range commandOrder {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].help)
	}
	fmt.Fprintf(w, "\n`deployer COMMAND -h` lists a command's flags.\n"+
		"Exit codes: 0 ok, 1 API/connection error, 2 invalid input, 3 placement failure,\n"+
		"4 deployment failed or reverted, 5 timeout, 6 load test threshold failed, 130 interrupted.\n")
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return fmt.Sprintf("deployer %s, %s", v, bi.GoVersion)
	}
	return "deployer " + v
}

// newDeployer builds the deployer from the flags: clients, bundle, variables. args
// are the command's positional arguments: with --dev, the jobs it acts on.
func newDeployer(o *options, args []string, stdout, stderr io.Writer) (*deploy.Deployer, error) {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	bundle, err := loadBundle(o.jobsDir)
	if err != nil {
		return nil, err
	}
	d, err := deploy.New(o.client, bundle, stderr, stdout, logger)
	if err != nil {
		return nil, err
	}
	d.HealthService = o.healthService
	if o.dev {
		names, err := bundle.Names()
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			p, ok := bundle.DevVarFile(n)
			if !ok {
				continue
			}
			src, err := fs.ReadFile(bundle.FS, p)
			if err != nil {
				return nil, deploy.Errorf(deploy.KindInput, "dev var file: %w", err)
			}
			if err := d.Vars.AddSource(n, p, src); err != nil {
				return nil, err
			}
		}
	}
	var missing []devDefault
	if o.dev {
		// After the dev var files, before the user's --var-file and --var.
		if missing, err = devDefaults(d, args, stderr); err != nil {
			return nil, err
		}
	}
	for _, vf := range o.varFiles {
		job, path := "", vf
		if j, p, ok := strings.Cut(vf, "="); ok && !strings.ContainsAny(j, `/\.`) {
			job, path = j, p
		}
		if err := d.Vars.AddFile(job, path); err != nil {
			return nil, err
		}
	}
	for _, v := range o.vars {
		if err := d.Vars.Set(v); err != nil {
			return nil, err
		}
	}
	if err := checkDevMissing(d, missing, stderr); err != nil {
		return nil, err
	}
	return d, nil
}

// checkDevMissing handles the --dev files not found, once the user's --var-file and
// --var are applied: a variable they give is fine. Otherwise: an environment variable
// (ORT_LIB, PROMETHEUS_BIN) naming a file that does not exist is an error; a value
// kept from a dev var file or the job's default is used when its file exists here
// (with a warning when a checkout file was expected) and is an error when it does
// not; a checkout file that is missing with no such value is an error. Each error
// names the variable and how to fix it.
func checkDevMissing(d *deploy.Deployer, missing []devDefault, stderr io.Writer) error {
	var lines []string
	for _, m := range missing {
		origin := d.Vars.Origin(m.job, m.name)
		if origin != "" && origin != m.devOrigin {
			continue // the user's --var or --var-file
		}
		flag := fmt.Sprintf("--var %s.%s=PATH", m.job, m.name)
		if m.badEnv != "" {
			lines = append(lines, fmt.Sprintf("%s=%s (for %s.%s) does not exist: point %s at the file, unset it to use the checkout's %s, or give %s",
				m.env, m.badEnv, m.job, m.name, m.env, strings.Join(m.paths, " or "), flag))
			continue
		}
		value, from, ok := "", "", false
		if src, err := d.Bundle.Load(m.job); err == nil {
			value, from, ok = d.Vars.StringValue(src, m.name)
		}
		if len(m.paths) > 0 && origin == "" {
			// The job's default is the production path: the checkout's file is needed.
			lines = append(lines, fmt.Sprintf("%s not found (for %s.%s): %s, or give %s",
				strings.Join(m.tried, " or "), m.job, m.name, m.fix, flag))
			continue
		}
		if !ok || value == "" || !pathExists(value) {
			shown := value
			if !ok {
				shown = "(not a constant string)"
			}
			what := fmt.Sprintf("%s.%s = %s (%s) not found", m.job, m.name, shown, from)
			if len(m.tried) > 0 {
				what = fmt.Sprintf("%s not found, nor %s.%s = %s (%s)", strings.Join(m.tried, " or "), m.job, m.name, shown, from)
			}
			lines = append(lines, fmt.Sprintf("%s: %s, or give %s", what, m.fix, flag))
			continue
		}
		if len(m.paths) == 0 {
			fmt.Fprintf(stderr, "    dev: %s.%s = %s (%s)\n", m.job, m.name, value, from)
			continue
		}
		fmt.Fprintf(stderr, "    dev: WARNING: %s not found; %s.%s keeps the value of %s, %s (%s)\n",
			strings.Join(m.tried, " or "), m.job, m.name, origin, value, m.fix)
	}
	if len(lines) == 0 {
		return nil
	}
	cwd, _ := os.Getwd()
	return deploy.Errorf(deploy.KindInput, "--dev: in %s, %s", cwd, strings.Join(lines, "; "))
}

// pathExists says whether path names an existing file or directory.
func pathExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// devDefault is a dev variable naming a local file: one the deployer can fill from
// the repository checkout (or an environment variable), or one installed on the host
// that the dev var file names.
type devDefault struct {
	job, name string
	env       string   // environment variable naming the file; when set, it must exist
	paths     []string // checkout files relative to the working directory; the first that exists wins
	fix       string   // how to get the file

	// Filled in by devDefaults.
	tried     []string // the checkout files looked for, when none exists
	badEnv    string   // the value of env, when it names no file
	devOrigin string   // where the dev var files set the variable ("": they do not)
}

// devVariables are the variables --dev checks: the checkout's binaries, model, ONNX
// Runtime and Prometheus 2.54 with nomad_sd (`make build ort prometheus`), and the
// host's Grafana (no package or make target provides it: the dev var file names the
// paths of Grafana's own .deb).
var devVariables = []devDefault{
	{job: "inference", name: "binary", paths: []string{"bin/inference"}, fix: "run from the repository root after `make build`"},
	{job: "inference", name: "model_dir", paths: []string{"inference/model/default"}, fix: "run from the repository root"},
	{job: "inference", name: "ort_lib", env: "ORT_LIB", paths: []string{".cache/onnxruntime-1.24.1/libonnxruntime.so.1"}, fix: "run from the repository root after `make ort` (or set ORT_LIB)"},
	{job: "loadtest", name: "binary", paths: []string{"bin/loadtest"}, fix: "run from the repository root after `make build`"},
	{job: "prometheus", name: "binary", env: "PROMETHEUS_BIN", paths: []string{".cache/prometheus-2.54.1/prometheus"}, fix: "run from the repository root after `make prometheus` (or set PROMETHEUS_BIN)"},
	{job: "grafana", name: "binary", fix: "install Grafana (its .deb or tarball from grafana.com; Debian does not package it)"},
	{job: "grafana", name: "homepath", fix: "install Grafana (its .deb or tarball from grafana.com; Debian does not package it)"},
}

// devDefaults sets, for --dev, the variables that name checkout files (binaries, the
// model, ONNX Runtime, Prometheus) from the environment variable or the checkout in
// the current directory, when the file exists, and points Prometheus at the Nomad
// agent the deployer talks to. They override the dev var files; --var-file and
// --var, applied afterwards, override them. It says what it picked. It returns the
// variables of the selected jobs (args; none: all) it did not set, and those named
// by the host's files, for checkDevMissing.
func devDefaults(d *deploy.Deployer, args []string, stderr io.Writer) ([]devDefault, error) {
	bundleJobs, err := d.Bundle.Names()
	if err != nil {
		return nil, err
	}
	selected, err := d.Bundle.Select(args)
	if err != nil {
		return nil, err
	}
	declares := func(job, name string) bool {
		src, err := d.Bundle.Load(job)
		return err == nil && src.Variables[name]
	}
	var missing []devDefault
	for _, def := range devVariables {
		if !slices.Contains(bundleJobs, def.job) || !declares(def.job, def.name) {
			continue
		}
		found := ""
		if v := os.Getenv(def.env); def.env != "" && v != "" {
			// An explicit environment variable wins, or fails: no silent fallback.
			if abs, err := filepath.Abs(v); err == nil && pathExists(abs) {
				found = abs
			} else {
				def.badEnv = v
			}
		}
		for _, c := range def.paths {
			if found != "" || def.badEnv != "" {
				break
			}
			if abs, err := filepath.Abs(c); err == nil && pathExists(abs) {
				found = abs
			} else {
				def.tried = append(def.tried, c)
			}
		}
		if found != "" {
			if err := d.Vars.Set(def.job + "." + def.name + "=" + found); err != nil {
				return nil, err
			}
			fmt.Fprintf(stderr, "    dev: %s.%s = %s\n", def.job, def.name, found)
			continue
		}
		if slices.Contains(selected, def.job) {
			def.devOrigin = d.Vars.Origin(def.job, def.name)
			missing = append(missing, def)
		}
	}
	// Prometheus scrapes and discovers through the agent the deployer talks to.
	addr := d.Nomad.Address()
	if u, err := url.Parse(addr); err == nil && u.Host != "" && slices.Contains(bundleJobs, "prometheus") {
		for name, value := range map[string]string{"nomad_addr": strings.TrimSuffix(addr, "/"), "nomad_agent": u.Host} {
			if declares("prometheus", name) {
				if err := d.Vars.Set("prometheus." + name + "=" + value); err != nil {
					return nil, err
				}
				fmt.Fprintf(stderr, "    dev: prometheus.%s = %s\n", name, value)
			}
		}
	}
	return missing, nil
}

// loadBundle returns the embedded bundle, or the one in dir.
func loadBundle(dir string) (*deploy.Bundle, error) {
	if dir == "" {
		return embeddedBundle(), nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, deploy.Errorf(deploy.KindInput, "--jobs-dir: %w", err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, deploy.Errorf(deploy.KindInput, "--jobs-dir %s: not a directory", dir)
	}
	// The bundle's job files name their files as jobs/… and grafana/… from the
	// repository root, the jobs directory's parent: file() paths are resolved
	// against it, whatever the working directory; failing that, against the jobs
	// directory itself (as in the embedded bundle).
	root := filepath.Dir(abs)
	return &deploy.Bundle{
		FS: os.DirFS(abs),
		ReadFile: func(name string) ([]byte, error) {
			p := filepath.FromSlash(name)
			if filepath.IsAbs(p) {
				return os.ReadFile(p)
			}
			b, err := os.ReadFile(filepath.Join(root, p))
			if errors.Is(err, fs.ErrNotExist) {
				if b, err2 := os.ReadFile(filepath.Join(abs, p)); !errors.Is(err2, fs.ErrNotExist) {
					return b, err2
				}
				return nil, fmt.Errorf("%s: not found in %s (the parent of --jobs-dir) nor in %s: file() paths are relative to them", name, root, abs)
			}
			return b, err
		},
	}, nil
}

// shortDuration prints whole minutes as "15m".
func shortDuration(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func cmdUp(ctx context.Context, e *env, args []string) error {
	d, err := e.deployer()
	if err != nil {
		return err
	}
	opts := deploy.UpOptions{Jobs: args, SkipHealth: e.opts.noHealth, AutoTimeout: !e.opts.wait.set}
	ctx, cancel := withTimeout(ctx, e.opts.wait.d) // not set: Up computes the limit
	defer cancel()
	return d.Up(ctx, opts)
}

func cmdStatus(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return deploy.Errorf(deploy.KindInput, "status takes no arguments")
	}
	d, err := e.deployer()
	if err != nil {
		return err
	}
	rep, err := d.Status(ctx)
	if err != nil {
		return err
	}
	if e.opts.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return deploy.WriteStatus(e.stdout, rep)
}

func cmdLogs(ctx context.Context, e *env, args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return deploy.Errorf(deploy.KindInput, "usage: deployer logs [-f] JOB [TASK]")
	}
	var types []string
	switch e.opts.logType {
	case "both", "":
	case "stdout", "stderr":
		types = []string{e.opts.logType}
	default:
		return deploy.Errorf(deploy.KindInput, "--type %q: want stdout, stderr or both", e.opts.logType)
	}
	d, err := e.deployer()
	if err != nil {
		return err
	}
	opts := deploy.LogsOptions{Job: args[0], Follow: e.opts.follow, Types: types, All: e.opts.all}
	if len(args) == 2 {
		opts.Task = args[1]
	}
	err = d.Logs(ctx, opts)
	if e.opts.follow && ctx.Err() != nil {
		return nil // Ctrl-C is how one stops following
	}
	return err
}

func cmdRestart(ctx context.Context, e *env, args []string) error {
	d, err := e.deployer()
	if err != nil {
		return err
	}
	limit := deploy.MinWaitTimeout
	if e.opts.wait.set {
		limit = e.opts.wait.d
	}
	ctx, cancel := withTimeout(ctx, limit)
	defer cancel()
	return d.Restart(ctx, args)
}

func cmdPlan(ctx context.Context, e *env, args []string) error {
	d, err := e.deployer()
	if err != nil {
		return err
	}
	return d.Plan(ctx, args)
}

func cmdDown(ctx context.Context, e *env, args []string) error {
	d, err := e.deployer()
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, e.opts.timeout)
	defer cancel()
	return d.Down(ctx, deploy.DownOptions{Jobs: args, Purge: e.opts.purge})
}

func cmdValidate(ctx context.Context, e *env, args []string) error {
	d, err := e.deployer()
	if err != nil {
		return err
	}
	return d.Validate(ctx, deploy.ValidateOptions{Jobs: args, Offline: e.opts.offline})
}

func cmdLoadtest(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return deploy.Errorf(deploy.KindInput, "loadtest takes flags only, not %q", args)
	}
	o := e.opts
	meta := map[string]string{}
	if o.users < 0 || o.spawnRate < 0 || o.rate < 0 {
		return deploy.Errorf(deploy.KindInput, "--users, --spawn-rate and --rate must not be negative")
	}
	if o.users > 0 {
		meta["users"] = strconv.Itoa(o.users)
	}
	if o.spawnRate > 0 {
		meta["spawn_rate"] = strconv.FormatFloat(o.spawnRate, 'g', -1, 64)
	}
	if o.rate > 0 {
		meta["rate"] = strconv.FormatFloat(o.rate, 'g', -1, 64)
	}
	if o.duration != "" {
		dur, err := time.ParseDuration(o.duration)
		if err != nil || dur <= 0 {
			return deploy.Errorf(deploy.KindInput, "--duration %q: want a positive duration such as 60s", o.duration)
		}
		meta["duration"] = o.duration
	}
	if o.weights != "" {
		meta["weights"] = o.weights
	}
	if o.targetService != "" {
		meta["target_service"] = o.targetService
	}
	if len(o.thresholds) > 0 {
		for _, t := range o.thresholds {
			if strings.Contains(t, ",") {
				return deploy.Errorf(deploy.KindInput, "--threshold %q: give one threshold per flag", t)
			}
		}
		// Refuse what the load generator would refuse, before dispatching.
		if _, err := loadtest.ParseThresholds(o.thresholds); err != nil {
			return deploy.Errorf(deploy.KindInput, "--threshold: %w", err)
		}
		meta["thresholds"] = strings.Join(o.thresholds, ",")
	}
	d, err := e.deployer()
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, o.timeout)
	defer cancel()
	_, err = d.Loadtest(ctx, deploy.LoadtestOptions{Job: o.loadtestJob, Meta: meta, SummaryPath: o.summaryPath, JSON: o.json})
	return err
}
