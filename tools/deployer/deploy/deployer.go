// Package deploy is the library behind the deployer command: it submits the bundled
// Nomad job specifications (parsed by the Nomad server itself), plans and registers
// them with check-index, watches evaluations and deployments with blocking queries,
// explains failures in words, waits for service health, and runs load tests, streams
// logs, restarts and stops the bundle.
//
// Every failure carries a Kind that the command maps to an exit code (see ExitCode).
// Progress goes to Deployer.Progress (stderr), results to Deployer.Out (stdout).
package deploy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// ClientOptions are the connection settings given on the command line. Empty fields
// keep what the standard environment (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE,
// NOMAD_REGION, NOMAD_CACERT, NOMAD_CAPATH, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY,
// NOMAD_TLS_SERVER_NAME, NOMAD_SKIP_VERIFY, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...)
// or the clients' defaults say.
type ClientOptions struct {
	Address       string
	Region        string
	Namespace     string
	Token         string
	CACert        string
	CAPath        string
	ClientCert    string
	ClientKey     string
	TLSServerName string
	TLSSkipVerify bool

	ConsulAddress string
	ConsulToken   string

	// ResponseTimeout bounds the wait for the headers of each Nomad response
	// (0: DefaultResponseTimeout). It must exceed the deployer's blocking-query wait.
	ResponseTimeout time.Duration
}

// NomadConfig returns the Nomad client configuration: api.DefaultConfig (which reads
// the NOMAD_* environment) overridden by the options that are set.
func (o ClientOptions) NomadConfig() *nomadapi.Config {
	c := nomadapi.DefaultConfig()
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Address, o.Address)
	set(&c.Region, o.Region)
	set(&c.Namespace, o.Namespace)
	set(&c.SecretID, o.Token)
	set(&c.TLSConfig.CACert, o.CACert)
	set(&c.TLSConfig.CAPath, o.CAPath)
	set(&c.TLSConfig.ClientCert, o.ClientCert)
	set(&c.TLSConfig.ClientKey, o.ClientKey)
	set(&c.TLSConfig.TLSServerName, o.TLSServerName)
	if o.TLSSkipVerify {
		c.TLSConfig.Insecure = true
	}
	return c
}

// DefaultConsulAddress is the Consul HTTP address used when neither --consul-address
// nor CONSUL_HTTP_ADDR is set: the loopback address the bundle's agents bind.
const DefaultConsulAddress = "127.0.0.1:8500"

// Timeouts of the HTTP transport to Nomad: an address that accepts connections but
// never answers fails instead of hanging.
const (
	dialTimeout = 10 * time.Second
	// DefaultResponseTimeout bounds the wait for a Nomad response's headers. It
	// exceeds the longest blocking-query wait (blockingWait, plus the up to wait/16
	// of jitter the server adds); log streams send their headers within a second
	// (heartbeat frames).
	DefaultResponseTimeout = blockingWait + 15*time.Second
)

// nomadHTTPClient returns the HTTP client for cfg's address, with dial and
// response-header timeouts and cfg's TLS settings; nil for a unix socket address
// (the Nomad client builds its own).
func nomadHTTPClient(cfg *nomadapi.Config, responseTimeout time.Duration) (*http.Client, error) {
	if strings.HasPrefix(cfg.Address, "unix:") {
		return nil, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = responseTimeout
	tr.ForceAttemptHTTP2 = false // as the Nomad client: alloc exec needs HTTP/1
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	hc := &http.Client{Transport: tr}
	if err := nomadapi.ConfigureTLS(hc, cfg.TLSConfig); err != nil {
		return nil, err
	}
	return hc, nil
}

// ConsulConfig returns the Consul client configuration: consulapi.DefaultConfig
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...) overridden by the options that are set.
func (o ClientOptions) ConsulConfig() *consulapi.Config {
	c := consulapi.DefaultConfig()
	if os.Getenv(consulapi.HTTPAddrEnvName) == "" {
		c.Address = DefaultConsulAddress
	}
	if o.ConsulAddress != "" {
		c.Address = o.ConsulAddress
	}
	if o.ConsulToken != "" {
		c.Token = o.ConsulToken
	}
	return c
}

// Deployer runs the deployer's commands against one Nomad cluster.
type Deployer struct {
	Nomad  *nomadapi.Client
	Consul *consulapi.Client // nil: Consul is not consulted
	// ConsulAddress is the Consul HTTP address, for the UI link ("" when Consul is nil).
	ConsulAddress string
	Bundle        *Bundle
	Vars          *Variables
	Progress      io.Writer // human progress messages (stderr)
	Out           io.Writer // results (stdout)
	Logger        *slog.Logger
	// Region and Namespace are the client's (from flags or environment); they apply
	// to jobs that name neither.
	Region, Namespace string

	// HealthService is the service whose instances must pass their checks before
	// Up reports success (default "inference").
	HealthService string

	// responseTimeout is the Nomad client's response-header timeout.
	responseTimeout time.Duration

	mu sync.Mutex
}

// New connects the clients described by opts. Consul is optional: Consul errors
// later only produce notes.
func New(opts ClientOptions, bundle *Bundle, progress, out io.Writer, logger *slog.Logger) (*Deployer, error) {
	ncfg := opts.NomadConfig()
	if opts.ResponseTimeout <= 0 {
		opts.ResponseTimeout = DefaultResponseTimeout
	}
	hc, err := nomadHTTPClient(ncfg, opts.ResponseTimeout)
	if err != nil {
		return nil, Errorf(KindInput, "nomad client TLS: %w", err)
	}
	ncfg.HttpClient = hc
	nc, err := nomadapi.NewClient(ncfg)
	if err != nil {
		return nil, Errorf(KindInput, "nomad client: %w", err)
	}
	cc := opts.ConsulConfig()
	consul, err := consulapi.NewClient(cc)
	if err != nil {
		return nil, Errorf(KindInput, "consul client: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Deployer{
		Nomad:           nc,
		Consul:          consul,
		ConsulAddress:   consulURL(cc),
		Bundle:          bundle,
		Vars:            NewVariables(),
		Progress:        progress,
		Out:             out,
		Logger:          logger,
		HealthService:   "inference",
		Region:          ncfg.Region,
		Namespace:       ncfg.Namespace,
		responseTimeout: opts.ResponseTimeout,
	}, nil
}

func consulURL(c *consulapi.Config) string {
	addr := c.Address
	if strings.HasPrefix(addr, "unix://") {
		return addr
	}
	if !strings.Contains(addr, "://") {
		scheme := c.Scheme
		if scheme == "" {
			scheme = "http"
		}
		addr = scheme + "://" + addr
	}
	return strings.TrimSuffix(addr, "/")
}

// progressf writes one line of progress.
func (d *Deployer) progressf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.Progress, format+"\n", args...)
}

// outf writes one line of results.
func (d *Deployer) outf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.Out, format+"\n", args...)
}

// linef writes one line to w under the output lock.
func (d *Deployer) linef(w io.Writer, format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(w, format+"\n", args...)
}

// badInputMarkers are parts of the messages with which the Nomad server answers 500
// to a request naming a region, namespace or node pool that does not exist: input
// errors, not server failures.
var badInputMarkers = []string{"nonexistent namespace", "nonexistent node pool", "No path to region", "namespace not found"}

// apiErr classifies an error from a Nomad or Consul call made for what: a
// cancelled or expired context keeps its meaning, an HTTP 400 (or a 500 naming a
// region, namespace or node pool that does not exist) is an input error, a refused
// connection or a server that does not answer gets a hint about the address.
func (d *Deployer) apiErr(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if ctx != nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Errorf(KindTimeout, "%s: timed out: %w", what, ctx.Err())
		}
		return Errorf(KindInterrupted, "%s: interrupted", what)
	}
	var ure nomadapi.UnexpectedResponseError
	if errors.As(err, &ure) && ure.HasStatusCode() {
		switch code := ure.StatusCode(); {
		case code == 400:
			return Errorf(KindInput, "%s: %s", what, strings.TrimSpace(ure.Body()))
		case code == 403:
			return Errorf(KindAPI, "%s: permission denied (check NOMAD_TOKEN or --token): %s", what, strings.TrimSpace(ure.Body()))
		case code == 500:
			body := strings.TrimSpace(ure.Body())
			for _, m := range badInputMarkers {
				if strings.Contains(body, m) {
					body = strings.ReplaceAll(strings.TrimPrefix(body, "1 error occurred:"), "\t* ", "")
					return Errorf(KindInput, "%s: %s (check --region, --namespace, NOMAD_REGION, NOMAD_NAMESPACE and the job's node_pool)",
						what, strings.Join(strings.Fields(body), " "))
				}
			}
		}
	}
	if strings.Contains(err.Error(), "timeout awaiting response headers") {
		return Errorf(KindAPI, "%s: Nomad at %s accepted the connection but did not answer within %s (is it a Nomad HTTP address? set NOMAD_ADDR or --address): %w",
			what, d.Nomad.Address(), d.responseTimeout, err)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return Errorf(KindAPI, "%s: cannot reach Nomad at %s (set NOMAD_ADDR or --address): %w", what, d.Nomad.Address(), err)
	}
	return Errorf(KindAPI, "%s: %w", what, err)
}

// qo returns query options bound to ctx, blocking from index when index > 0.
func qo(ctx context.Context, index uint64, wait time.Duration) *nomadapi.QueryOptions {
	q := &nomadapi.QueryOptions{WaitIndex: index, WaitTime: wait}
	return q.WithContext(ctx)
}

// shortID returns the first 8 characters of a UUID, as Nomad's CLI prints them.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
