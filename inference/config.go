package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/inferstack/inferstack/inference/engine"
)

// config is every setting of the inference binary. Each is a flag, and an environment
// variable of the same meaning (the flag wins when both are given).
type config struct {
	Addr              string
	ModelDir          string
	ORTLib            string
	ExecutionProvider string
	CUDADevice        int
	IntraOpThreads    int
	InterOpThreads    int

	MaxBatchSize        int
	MaxBatchTokens      int
	MaxQueue            int
	BatchWait           time.Duration
	QueueTimeout        time.Duration
	MaxNewTokens        int
	DefaultMaxNewTokens int
	ServedModelName     string
	ValidationFile      string

	RequestTimeout    time.Duration
	MaxBodyBytes      int64
	MaxHeaderBytes    int
	ReadHeaderTimeout time.Duration
	BodyReadTimeout   time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration

	AuthToken     string
	AuthTokenFile string
	MetricsAuth   bool

	ConsulAddr            string
	ConsulTokenFile       string
	ServiceName           string
	ServiceTags           string
	AdvertiseAddr         string
	AdvertisePort         int
	ConsulDeregisterAfter time.Duration
	ConsulCheckInterval   time.Duration
	ConsulResyncInterval  time.Duration

	ShutdownDelay time.Duration
	DrainTimeout  time.Duration

	LogLevel  string
	LogFormat string
	Version   bool
}

// envLookup reads one environment variable; tests substitute a map.
type envLookup func(string) (string, bool)

// binder registers flags whose defaults come from environment variables, collecting
// the errors of malformed environment values.
type binder struct {
	fs   *flag.FlagSet
	env  envLookup
	errs []error
}

func (b *binder) envValue(name string) (string, bool) {
	v, ok := b.env(name)
	return v, ok && v != ""
}

func (b *binder) str(p *string, flagName, envName, def, usage string) {
	if v, ok := b.envValue(envName); ok {
		def = v
	}
	b.fs.StringVar(p, flagName, def, usage+" (env "+envName+")")
}

func (b *binder) int(p *int, flagName, envName string, def int, usage string) {
	if v, ok := b.envValue(envName); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("env %s=%q: not an integer", envName, v))
		} else {
			def = n
		}
	}
	b.fs.IntVar(p, flagName, def, usage+" (env "+envName+")")
}

func (b *binder) int64(p *int64, flagName, envName string, def int64, usage string) {
	if v, ok := b.envValue(envName); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("env %s=%q: not an integer", envName, v))
		} else {
			def = n
		}
	}
	b.fs.Int64Var(p, flagName, def, usage+" (env "+envName+")")
}

func (b *binder) duration(p *time.Duration, flagName, envName string, def time.Duration, usage string) {
	if v, ok := b.envValue(envName); ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("env %s=%q: not a duration such as 30s or 5m", envName, v))
		} else {
			def = d
		}
	}
	b.fs.DurationVar(p, flagName, def, usage+" (env "+envName+")")
}

func (b *binder) bool(p *bool, flagName, envName string, def bool, usage string) {
	if v, ok := b.envValue(envName); ok {
		x, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			b.errs = append(b.errs, fmt.Errorf("env %s=%q: not true or false", envName, v))
		} else {
			def = x
		}
	}
	b.fs.BoolVar(p, flagName, def, usage+" (env "+envName+")")
}

// parseConfig parses args (without the program name) and the environment.
func parseConfig(args []string, env envLookup, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("inference", flag.ContinueOnError)
	fs.SetOutput(stderr)
	b := &binder{fs: fs, env: env}
	paths := defaultPaths(env)

	b.str(&c.Addr, "addr", "INFERENCE_ADDR", ":8000", "listen address, host:port")
	b.str(&c.ModelDir, "model-dir", "INFERENCE_MODEL_DIR", paths.modelDir, "model directory (Optimum decoder layout: model.onnx, config.json, tokenizer.json)")
	b.str(&c.ORTLib, "ort-lib", "ORT_LIB", paths.ortLib, "path to libonnxruntime.so (1.24.x); make ort fetches it")
	b.str(&c.ExecutionProvider, "execution-provider", "INFERENCE_EXECUTION_PROVIDER", "cpu", "ONNX Runtime execution provider: cpu or cuda")
	b.int(&c.CUDADevice, "cuda-device", "INFERENCE_CUDA_DEVICE", 0, "CUDA device id (with --execution-provider cuda)")
	b.int(&c.IntraOpThreads, "intra-op-threads", "INFERENCE_INTRA_OP_THREADS", 0, "ONNX Runtime intra-op threads; 0 = one per core")
	b.int(&c.InterOpThreads, "inter-op-threads", "INFERENCE_INTER_OP_THREADS", 0, "ONNX Runtime inter-op threads; 0 = runtime default")

	b.int(&c.MaxBatchSize, "max-batch-size", "INFERENCE_MAX_BATCH_SIZE", engine.DefaultMaxBatchSize, "sequences decoded together per step (concurrency limit); 1 disables batching")
	b.int(&c.MaxBatchTokens, "max-batch-tokens", "INFERENCE_MAX_BATCH_TOKENS", engine.DefaultMaxBatchTokens, "prompt tokens prefilled per scheduler step; longer prompts are chunked")
	b.duration(&c.BatchWait, "batch-wait", "INFERENCE_BATCH_WAIT", engine.DefaultBatchWait, "how long an idle scheduler waits for more requests before prefilling, so requests sent together decode in step; 0 = no wait")
	b.int(&c.MaxQueue, "max-queue", "INFERENCE_MAX_QUEUE", engine.DefaultMaxQueue, "requests waiting for a slot; beyond it requests get 429")
	b.duration(&c.QueueTimeout, "queue-timeout", "INFERENCE_QUEUE_TIMEOUT", engine.DefaultQueueTimeout, "longest wait for a slot before 503")
	b.int(&c.MaxNewTokens, "max-new-tokens", "INFERENCE_MAX_NEW_TOKENS", 0, "upper bound of max_new_tokens/max_tokens; 0 = the model's context length")
	b.int(&c.DefaultMaxNewTokens, "default-max-new-tokens", "INFERENCE_DEFAULT_MAX_NEW_TOKENS", 50, "max_new_tokens of /infer when neither max_new_tokens nor max_length is given")
	b.str(&c.ServedModelName, "served-model-name", "INFERENCE_SERVED_MODEL_NAME", "", "model name in responses and /v1/models; empty = the model's own name")
	b.str(&c.ValidationFile, "validation-file", "INFERENCE_VALIDATION_FILE", "", "held-out text for the start-up validation loss; empty = <model-dir>/validation.txt")

	b.duration(&c.RequestTimeout, "request-timeout", "INFERENCE_REQUEST_TIMEOUT", 10*time.Minute, "longest a generation may take, queue wait included (then 503)")
	b.int64(&c.MaxBodyBytes, "max-body-bytes", "INFERENCE_MAX_BODY_BYTES", 1<<20, "request body limit in bytes (then 413)")
	b.int(&c.MaxHeaderBytes, "max-header-bytes", "INFERENCE_MAX_HEADER_BYTES", 64<<10, "request line and headers limit in bytes (then 431)")
	b.duration(&c.ReadHeaderTimeout, "read-header-timeout", "INFERENCE_READ_HEADER_TIMEOUT", 10*time.Second, "time to read request headers")
	b.duration(&c.BodyReadTimeout, "body-read-timeout", "INFERENCE_BODY_READ_TIMEOUT", 30*time.Second, "time to read a request body (then 408)")
	b.duration(&c.WriteTimeout, "write-timeout", "INFERENCE_WRITE_TIMEOUT", 30*time.Second, "time each response write may block; streams extend it per event")
	b.duration(&c.IdleTimeout, "idle-timeout", "INFERENCE_IDLE_TIMEOUT", 120*time.Second, "keep-alive idle connection timeout")

	b.str(&c.AuthToken, "auth-token", "INFERENCE_AUTH_TOKEN", "", "bearer token required on the inference endpoints; empty = no auth")
	b.str(&c.AuthTokenFile, "auth-token-file", "INFERENCE_AUTH_TOKEN_FILE", "", "file holding the bearer token (instead of --auth-token)")
	b.bool(&c.MetricsAuth, "metrics-auth", "INFERENCE_METRICS_AUTH", false, "require the bearer token on /metrics too")

	b.str(&c.ConsulAddr, "consul-addr", "CONSUL_HTTP_ADDR", "", "Consul agent address; empty = no registration")
	b.str(&c.ConsulTokenFile, "consul-token-file", "CONSUL_HTTP_TOKEN_FILE", "", "file holding the Consul ACL token (else CONSUL_HTTP_TOKEN)")
	b.str(&c.ServiceName, "service-name", "INFERENCE_SERVICE_NAME", "inference", "Consul service name")
	b.str(&c.ServiceTags, "service-tags", "INFERENCE_SERVICE_TAGS", "inference,metrics", "comma-separated Consul service tags")
	b.str(&c.AdvertiseAddr, "advertise-addr", "INFERENCE_ADVERTISE_ADDR", "", "address registered in Consul; empty = NOMAD_IP_http, else the --addr host, else this host's first non-loopback IPv4")
	b.int(&c.AdvertisePort, "advertise-port", "INFERENCE_ADVERTISE_PORT", 0, "port registered in Consul; 0 = NOMAD_HOST_PORT_http, else the listening port")
	b.duration(&c.ConsulDeregisterAfter, "consul-deregister-after", "INFERENCE_CONSUL_DEREGISTER_AFTER", time.Minute, "Consul removes the instance after its check has been critical this long (Consul's floor is 1m)")
	b.duration(&c.ConsulCheckInterval, "consul-check-interval", "INFERENCE_CONSUL_CHECK_INTERVAL", 10*time.Second, "interval of the agent's HTTP check on /readyz")
	b.duration(&c.ConsulResyncInterval, "consul-resync-interval", "INFERENCE_CONSUL_RESYNC_INTERVAL", 30*time.Second, "how often the registration is compared with the agent's services (re-registers after an agent restart)")

	b.duration(&c.ShutdownDelay, "shutdown-delay", "INFERENCE_SHUTDOWN_DELAY", 5*time.Second, "on SIGTERM, time between leaving Consul and closing the listener, for routers to notice")
	b.duration(&c.DrainTimeout, "drain-timeout", "INFERENCE_DRAIN_TIMEOUT", 60*time.Second, "on SIGTERM, longest wait for in-flight requests; keep shutdown-delay + drain-timeout below Nomad's kill_timeout")

	b.str(&c.LogLevel, "log-level", "INFERENCE_LOG_LEVEL", "info", "debug, info, warn or error")
	b.str(&c.LogFormat, "log-format", "INFERENCE_LOG_FORMAT", "text", "text or json")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (settings are flags)", fs.Args())
	}
	if len(b.errs) > 0 {
		return c, errors.Join(b.errs...)
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(c.ExecutionProvider == "cpu" || c.ExecutionProvider == "cuda", "--execution-provider %q: want cpu or cuda", c.ExecutionProvider)
	for _, v := range []struct {
		name string
		v    int
	}{{"--cuda-device", c.CUDADevice}, {"--intra-op-threads", c.IntraOpThreads}, {"--inter-op-threads", c.InterOpThreads}, {"--max-new-tokens", c.MaxNewTokens}} {
		check(v.v >= 0, "%s must not be negative (got %d)", v.name, v.v)
	}
	for _, v := range []struct {
		name string
		v    int
	}{{"--max-batch-size", c.MaxBatchSize}, {"--max-batch-tokens", c.MaxBatchTokens}, {"--max-queue", c.MaxQueue}, {"--default-max-new-tokens", c.DefaultMaxNewTokens}, {"--max-header-bytes", c.MaxHeaderBytes}} {
		check(v.v > 0, "%s must be positive (got %d)", v.name, v.v)
	}
	check(c.MaxBodyBytes > 0, "--max-body-bytes must be positive (got %d)", c.MaxBodyBytes)
	for _, v := range []struct {
		name string
		v    time.Duration
	}{{"--queue-timeout", c.QueueTimeout}, {"--request-timeout", c.RequestTimeout}, {"--read-header-timeout", c.ReadHeaderTimeout},
		{"--body-read-timeout", c.BodyReadTimeout}, {"--write-timeout", c.WriteTimeout}, {"--idle-timeout", c.IdleTimeout}, {"--drain-timeout", c.DrainTimeout},
		{"--consul-check-interval", c.ConsulCheckInterval}, {"--consul-deregister-after", c.ConsulDeregisterAfter}, {"--consul-resync-interval", c.ConsulResyncInterval}} {
		check(v.v > 0, "%s must be positive (got %s)", v.name, v.v)
	}
	check(c.BatchWait >= 0, "--batch-wait must not be negative (got %s)", c.BatchWait)
	check(c.ShutdownDelay >= 0, "--shutdown-delay must not be negative (got %s)", c.ShutdownDelay)
	check(c.AdvertisePort >= 0 && c.AdvertisePort <= 65535, "--advertise-port %d: out of range 0-65535", c.AdvertisePort)
	check(c.AuthToken == "" || c.AuthTokenFile == "", "give --auth-token or --auth-token-file, not both")
	check(!c.MetricsAuth || c.AuthToken != "" || c.AuthTokenFile != "", "--metrics-auth needs --auth-token or --auth-token-file")
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	check(c.LogFormat == "text" || c.LogFormat == "json", "--log-format %q: want text or json", c.LogFormat)
	return errors.Join(errs...)
}

// authToken returns the bearer token from --auth-token or --auth-token-file.
func (c *config) authToken() (string, error) {
	if c.AuthTokenFile == "" {
		return c.AuthToken, nil
	}
	b, err := os.ReadFile(c.AuthTokenFile)
	if err != nil {
		return "", fmt.Errorf("read auth token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("auth token file %s is empty", c.AuthTokenFile)
	}
	return tok, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger builds the process logger.
func newLogger(c config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// paths are the default locations of the model and the ONNX Runtime library.
type paths struct{ modelDir, ortLib string }

// defaultPaths finds the bundled model and the library: under the repository when run
// from inside it (go run, make run), else next to the binary (<bin>/model/default,
// <bin>/libonnxruntime.so.1), else the system locations /usr/share/inferstack/model
// and /usr/lib/inferstack/libonnxruntime.so.1. The first that exists wins; when none
// does, the repository path is returned so the error names `make ort`.
func defaultPaths(env envLookup) paths {
	var modelCands, libCands []string
	if wd, err := os.Getwd(); err == nil {
		if root := moduleRoot(wd); root != "" {
			modelCands = append(modelCands, filepath.Join(root, engine.DefaultModelDir))
			libCands = append(libCands, filepath.Join(root, engine.DefaultORTLib))
		}
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		modelCands = append(modelCands, filepath.Join(dir, "model", "default"))
		libCands = append(libCands, filepath.Join(dir, "libonnxruntime.so.1"))
		if root := moduleRoot(dir); root != "" {
			modelCands = append(modelCands, filepath.Join(root, engine.DefaultModelDir))
			libCands = append(libCands, filepath.Join(root, engine.DefaultORTLib))
		}
	}
	modelCands = append(modelCands, "/usr/share/inferstack/model")
	libCands = append(libCands, "/usr/lib/inferstack/libonnxruntime.so.1")
	return paths{modelDir: firstExisting(modelCands), ortLib: firstExisting(libCands)}
}

func firstExisting(cands []string) string {
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return cands[0]
}

// moduleRoot returns the directory above dir holding this project's go.mod, or "".
func moduleRoot(dir string) string {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/inferstack/inferstack\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
