// Command inference serves a text-generation ONNX model over HTTP: the seed-compatible
// API (POST /infer), an OpenAI-compatible completions API, health, readiness and
// Prometheus metrics. It registers itself in Consul when an agent address is given,
// and drains gracefully on SIGTERM.
//
// Every setting is a flag with an environment variable of the same meaning; run
// `inference -h` for the list with defaults.
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
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/inferstack/inferstack/consul"
	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/server"
	"github.com/inferstack/inferstack/inference/telemetry"
)

// version and buildRevision are set at build time:
// -ldflags "-X main.version=v1.2.3 -X main.buildRevision=$(git rev-parse --short HEAD)".
// Without buildRevision, the VCS revision Go stamps into the binary is used.
var (
	version       = "dev"
	buildRevision = ""
)

// Compile-time checks that the real engine fits the server and the metrics fit the
// engine.
var (
	_ server.Generator = (*engine.Engine)(nil)
	_ engine.Observer  = (*telemetry.Metrics)(nil)
)

// checkModelValidationLoss is the validation check on the start-up validation loss.
const checkModelValidationLoss = "model_validation_loss"

func main() {
	if err := run(os.Args[1:], os.LookupEnv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "inference:", err)
		os.Exit(1)
	}
}

// errForced reports a second shutdown signal.
var errForced = errors.New("second signal: forced exit before the drain finished")

// run starts the server and blocks until it has shut down. signals, when nil, are the
// process's SIGINT and SIGTERM.
func run(args []string, env envLookup, stderr io.Writer, signals <-chan os.Signal) error {
	cfg, err := parseConfig(args, env, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Println("inference", version, revision()) // stdout, so that `inference --version | …` works
		return nil
	}
	log := newLogger(cfg, stderr)
	token, err := cfg.authToken()
	if err != nil {
		return err
	}
	if signals == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(ch)
		signals = ch
	}

	metrics := telemetry.New(telemetry.Options{Logger: log})
	defer metrics.Close()

	eng, err := engine.New(engine.Config{
		ModelDir: cfg.ModelDir, ORTLib: cfg.ORTLib, ExecutionProvider: cfg.ExecutionProvider,
		CUDADeviceID: cfg.CUDADevice, IntraOpThreads: cfg.IntraOpThreads, InterOpThreads: cfg.InterOpThreads,
		MaxBatchSize: cfg.MaxBatchSize, MaxBatchTokens: cfg.MaxBatchTokens, MaxQueue: cfg.MaxQueue,
		QueueTimeout: cfg.QueueTimeout, MaxNewTokens: cfg.MaxNewTokens, BatchWait: engineBatchWait(cfg.BatchWait),
		Logger: log, Observer: metrics,
	})
	if err != nil {
		return fmt.Errorf("load model: %w", err)
	}
	closeEngine := sync.OnceValue(eng.Close)
	forced := false
	defer func() {
		if !forced {
			_ = closeEngine()
		}
	}()
	info := eng.Info()
	metrics.SetLosses(info.TrainingLoss, info.ValidationLoss)
	metrics.SetBuildInfo(telemetry.BuildInfo{Version: version, Revision: revision(), Model: info.Name, ModelVersion: info.Version})

	lim := eng.Limits()
	srv := server.New(server.Config{
		ModelName: cfg.ServedModelName, Version: version, Revision: revision(),
		MaxNewTokens: lim.MaxNewTokens, DefaultMaxNewTokens: cfg.DefaultMaxNewTokens,
		MaxBodyBytes: cfg.MaxBodyBytes, MaxHeaderBytes: cfg.MaxHeaderBytes, RequestTimeout: cfg.RequestTimeout,
		BodyReadTimeout: cfg.BodyReadTimeout, WriteTimeout: cfg.WriteTimeout, ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout: cfg.IdleTimeout, DrainTimeout: cfg.DrainTimeout, AuthToken: token, MetricsAuth: cfg.MetricsAuth,
		Batching: server.Batching{MaxBatchSize: lim.MaxBatchSize, MaxBatchTokens: lim.MaxBatchTokens, MaxQueue: lim.MaxQueue, QueueTimeout: lim.QueueTimeout, BatchWait: lim.BatchWait},
	}, eng, metrics, log)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	// The registrar is built now (it needs the model's name for its meta), so a bad
	// Consul setting fails before the validation pass and the warm-up; it contacts
	// Consul only once the model is ready.
	var registrar *consul.Registrar
	if cfg.ConsulAddr == "" {
		log.Info("consul registration off (no --consul-addr or CONSUL_HTTP_ADDR)")
	} else if registrar, err = newRegistrar(cfg, info, ln, metrics, log, env); err != nil {
		ln.Close()
		return err
	}
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln) }()

	// Readiness: validation loss on the held-out sample, then a warm-up generation.
	startCtx, cancelStart := context.WithCancel(context.Background())
	started := make(chan error, 1)
	go func() { started <- warmUp(startCtx, cfg, eng, metrics, log) }()
	select {
	case err := <-started:
		cancelStart()
		if err != nil {
			stopServing()
			<-served
			return err
		}
	case sig := <-signals:
		cancelStart()
		log.Info("signal during start-up; stopping", slog.String("signal", sig.String()))
		<-started
		stopServing()
		return <-served
	case err := <-served:
		cancelStart()
		<-started
		return err
	}
	srv.SetReady(true)
	log.Info("ready", slog.String("addr", ln.Addr().String()), slog.String("model", info.Name))

	regCtx, stopRegistrar := context.WithCancel(context.Background())
	defer stopRegistrar()
	if registrar != nil {
		go registrar.Run(regCtx)
	}

	// leave turns readiness off and takes the instance out of Consul.
	leave := func() {
		srv.BeginDrain()
		if registrar != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := registrar.Deregister(dctx); err != nil {
				log.Warn("consul deregistration failed; the agent will drop the instance once its check is critical", slog.Any("error", err))
			}
			cancel()
			stopRegistrar()
		}
	}

	var sig os.Signal
	select {
	case sig = <-signals:
	case err := <-served:
		// The listener failed: leave Consul now rather than sit there critical until
		// DeregisterCriticalServiceAfter.
		leave()
		return err
	}

	// Shutdown, in the order issue 3 describes. A second signal abandons it.
	log.Info("shutting down", slog.String("signal", sig.String()))
	done := make(chan error, 1)
	go func() {
		leave()
		if cfg.ShutdownDelay > 0 {
			log.Info("waiting for routers to notice", slog.Duration("shutdown_delay", cfg.ShutdownDelay))
			time.Sleep(cfg.ShutdownDelay)
		}
		stopServing()
		serveErr := <-served
		closeErr := closeEngine()
		if closeErr != nil {
			closeErr = fmt.Errorf("release model: %w", closeErr)
		}
		done <- errors.Join(serveErr, closeErr)
	}()
	select {
	case err := <-done:
		if err == nil {
			log.Info("shut down cleanly")
		}
		return err
	case sig := <-signals:
		log.Warn("forced exit", slog.String("signal", sig.String()))
		forced = true // do not wait for Close: the process is exiting
		return errForced
	}
}

// engineBatchWait maps the flag (0 = no wait) to the engine's convention (0 = its
// default, negative = no wait).
func engineBatchWait(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// warmUp recomputes the validation loss and runs a warm-up generation.
func warmUp(ctx context.Context, cfg config, eng *engine.Engine, metrics *telemetry.Metrics, log *slog.Logger) error {
	path := cfg.ValidationFile
	if path == "" {
		path = filepath.Join(cfg.ModelDir, "validation.txt")
	}
	info := eng.Info()
	switch text, err := os.ReadFile(path); {
	case err != nil && cfg.ValidationFile == "" && errors.Is(err, os.ErrNotExist):
		log.Info("no validation.txt in the model directory; validation_loss{source=\"startup\"} is not computed")
	case err != nil:
		metrics.Check(checkModelValidationLoss, false)
		log.Warn("cannot read the validation file", slog.Any("error", err))
	default:
		start := time.Now()
		loss, err := eng.EvalLoss(ctx, string(text))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			metrics.Check(checkModelValidationLoss, false)
			log.Warn("validation loss failed", slog.Any("error", err))
			break
		}
		metrics.SetStartupValidationLoss(loss)
		ok := validationLossOK(loss, info.ValidationLoss, info.VocabSize)
		metrics.Check(checkModelValidationLoss, ok)
		level := slog.LevelInfo
		if !ok {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "validation loss at start-up", slog.Float64("loss", loss), slog.Float64("config_loss", info.ValidationLoss),
			slog.Bool("check_passed", ok), slog.Duration("took", time.Since(start)), slog.String("file", path))
	}
	if err := eng.Warmup(ctx); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	return nil
}

// validationLossOK is the start-up validation check: the loss must be finite, beat a
// uniform guess over the vocabulary (ln V nats), and when the model's config states a
// validation loss, be at most 1.5 times it plus 0.1 (the held-out sample differs from
// the training run's validation set, so the bound is loose; it catches a wrong or
// corrupted model, not drift).
func validationLossOK(loss, configLoss float64, vocab int) bool {
	if math.IsNaN(loss) || math.IsInf(loss, 0) || loss < 0 {
		return false
	}
	if vocab > 1 && loss >= math.Log(float64(vocab)) {
		return false
	}
	if !math.IsNaN(configLoss) && configLoss > 0 && loss > 1.5*configLoss+0.1 {
		return false
	}
	return true
}

// newRegistrar builds the Consul registrar from the flags and Nomad's environment.
func newRegistrar(cfg config, info engine.ModelInfo, ln net.Listener, metrics *telemetry.Metrics, log *slog.Logger, env envLookup) (*consul.Registrar, error) {
	getenv := func(k string) string { v, _ := env(k); return v }
	cc := consul.Config{
		Address:                 cfg.ConsulAddr,
		TokenFile:               cfg.ConsulTokenFile,
		ServiceName:             cfg.ServiceName,
		AdvertiseAddr:           cfg.AdvertiseAddr,
		Port:                    cfg.AdvertisePort,
		Meta:                    map[string]string{"model": info.Name, "model_version": info.Version, "version": version},
		CheckPath:               "/readyz",
		CheckInterval:           cfg.ConsulCheckInterval,
		DeregisterCriticalAfter: cfg.ConsulDeregisterAfter,
		ResyncInterval:          cfg.ConsulResyncInterval,
	}
	for _, t := range strings.Split(cfg.ServiceTags, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cc.Tags = append(cc.Tags, t)
		}
	}
	cc.FillFromNomadEnv(getenv)
	tcp, _ := ln.Addr().(*net.TCPAddr)
	if cc.Port == 0 && tcp != nil {
		cc.Port = tcp.Port
	}
	if cc.AdvertiseAddr == "" {
		cc.AdvertiseAddr = advertiseAddr(cfg.Addr)
	}
	r, err := consul.NewRegistrar(cc, log, metrics.Registry())
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	log.Info("consul registration on", slog.String("consul", cfg.ConsulAddr), slog.String("service_id", r.ServiceID()),
		slog.String("check", r.CheckURL()))
	return r, nil
}

// advertiseAddr picks the address to register when none is configured: the host of
// the listen address when it is specific, else this host's first non-loopback IPv4
// address, else 127.0.0.1.
func advertiseAddr(listen string) string {
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return host
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// revision returns the VCS revision the binary was built from, or "unknown".
func revision() string {
	if buildRevision != "" {
		return buildRevision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev := s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
				for _, m := range bi.Settings {
					if m.Key == "vcs.modified" && m.Value == "true" {
						rev += "-dirty"
					}
				}
				return rev
			}
		}
	}
	return "unknown"
}
