package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names.
const (
	MetricRegistered         = "inference_consul_registered"
	MetricRegistrationErrors = "inference_consul_registration_errors_total"
)

// errStopped reports that Deregister was called.
var errStopped = errors.New("registrar stopped")

// Registrar keeps one service instance registered in a Consul agent.
type Registrar struct {
	cfg    Config
	client *api.Client
	reg    *api.AgentServiceRegistration
	log    *slog.Logger

	registeredGauge prometheus.Gauge
	errorsTotal     prometheus.Counter
	registered      atomic.Bool

	mu       sync.Mutex // serialises registration attempts with Deregister
	stopOnce sync.Once
	stopCh   chan struct{}
}

// NewRegistrar validates cfg, builds the Consul client (api.DefaultConfig, so the
// CONSUL_HTTP_* variables apply; Address, Token and TokenFile override them when
// set) and registers the metrics on reg (nil: not exported). It does not contact
// Consul: Run does.
func NewRegistrar(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Registrar, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("consul registration config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ac := api.DefaultConfig()
	ac.Address = cfg.Address
	if cfg.Token != "" {
		ac.Token = cfg.Token
	}
	if cfg.TokenFile != "" {
		ac.TokenFile = cfg.TokenFile
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	r := &Registrar{
		cfg:    cfg,
		client: client,
		log:    logger.With("component", "consul", "service_id", cfg.ServiceID),
		stopCh: make(chan struct{}),
		registeredGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricRegistered,
			Help: "1 while this instance is registered in the Consul agent, else 0.",
		}),
		errorsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricRegistrationErrors,
			Help: "Failed calls to the Consul agent while registering or comparing the registration.",
		}),
	}
	r.reg = r.registration()
	if reg != nil {
		for _, c := range []prometheus.Collector{r.registeredGauge, r.errorsTotal} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register consul metrics: %w", err)
			}
		}
	}
	return r, nil
}

// ServiceID is the ID this instance registers under.
func (r *Registrar) ServiceID() string { return r.cfg.ServiceID }

// CheckURL is the URL the agent's HTTP check calls.
func (r *Registrar) CheckURL() string {
	return "http://" + net.JoinHostPort(r.cfg.AdvertiseAddr, strconv.Itoa(r.cfg.Port)) + r.cfg.CheckPath
}

func (r *Registrar) registration() *api.AgentServiceRegistration {
	return &api.AgentServiceRegistration{
		ID:      r.cfg.ServiceID,
		Name:    r.cfg.ServiceName,
		Address: r.cfg.AdvertiseAddr,
		Port:    r.cfg.Port,
		Tags:    r.cfg.Tags,
		Meta:    r.cfg.Meta,
		Check: &api.AgentServiceCheck{
			Name:                           "readiness " + r.cfg.CheckPath,
			HTTP:                           r.CheckURL(),
			Method:                         "GET",
			Interval:                       r.cfg.CheckInterval.String(),
			Timeout:                        r.cfg.CheckTimeout.String(),
			DeregisterCriticalServiceAfter: r.cfg.DeregisterCriticalAfter.String(),
		},
	}
}

// Registered reports whether the last call to the agent found us registered.
func (r *Registrar) Registered() bool { return r.registered.Load() }

func (r *Registrar) setRegistered(v bool) {
	if r.registered.Swap(v) != v {
		if v {
			r.log.Info("registered in consul", "service", r.cfg.ServiceName,
				"address", r.cfg.AdvertiseAddr, "port", r.cfg.Port, "check", r.CheckURL())
		}
	}
	if v {
		r.registeredGauge.Set(1)
	} else {
		r.registeredGauge.Set(0)
	}
}

func (r *Registrar) stopped() bool {
	select {
	case <-r.stopCh:
		return true
	default:
		return false
	}
}

// Run registers the instance, retrying with capped exponential backoff and full
// jitter while that fails; once registered it compares the agent's services with
// ours every ResyncInterval and registers again when ours is gone (the agent
// restarted without state) or the agent cannot be reached. It returns when ctx
// ends or Deregister is called; it never deregisters by itself.
func (r *Registrar) Run(ctx context.Context) {
	r.log.Info("consul registration starting", "consul", r.cfg.Address, "service", r.cfg.ServiceName)
	attempt := 0
	for ctx.Err() == nil && !r.stopped() {
		err := r.registerOnce(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errStopped) {
				return
			}
			r.errorsTotal.Inc()
			r.setRegistered(false)
			delay := r.backoff(attempt)
			attempt++
			if rejected(err) {
				// The agent refused the request itself: retrying soon will not help, but
				// its rules (ACLs, limits) can change, so keep trying at the slowest pace.
				delay = r.cfg.BackoffMax
				r.log.Error("consul rejected the registration; fix the configuration (retrying)", "attempt", attempt, "retry_in", delay, "err", err)
			} else {
				r.log.Warn("consul registration failed; will retry", "attempt", attempt, "retry_in", delay, "err", err)
			}
			if !r.sleep(ctx, delay) {
				return
			}
			continue
		}
		attempt = 0
		r.watch(ctx)
	}
}

// watch compares the agent's services with ours every ResyncInterval and returns
// when a registration is needed again (or ctx ends, or Deregister is called).
func (r *Registrar) watch(ctx context.Context) {
	for r.sleep(ctx, r.cfg.ResyncInterval) {
		present, err := r.present(ctx)
		switch {
		case ctx.Err() != nil || r.stopped():
			return
		case err != nil:
			r.errorsTotal.Inc()
			r.setRegistered(false)
			r.log.Warn("consul agent unreachable; will register again", "err", err)
			return
		case !present:
			r.setRegistered(false)
			r.log.Warn("registration missing from the consul agent (restarted?); registering again")
			return
		}
	}
}

// backoff returns a random delay in [0, min(BackoffMax, BackoffMin*2^attempt)).
func (r *Registrar) backoff(attempt int) time.Duration {
	ceiling := r.cfg.BackoffMax
	if attempt < 62 {
		if d := r.cfg.BackoffMin << attempt; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling)
}

// sleep waits d; it returns false when ctx ends or Deregister is called first.
func (r *Registrar) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-r.stopCh:
		return false
	}
}

// attemptContext bounds one call by RequestTimeout and cancels it on Deregister.
func (r *Registrar) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	go func() {
		select {
		case <-r.stopCh:
			cancel()
		case <-actx.Done():
		}
	}()
	return actx, cancel
}

func (r *Registrar) registerOnce(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped() {
		return errStopped
	}
	actx, cancel := r.attemptContext(ctx)
	defer cancel()
	opts := api.ServiceRegisterOpts{}.WithContext(actx)
	if err := r.client.Agent().ServiceRegisterOpts(r.reg, opts); err != nil {
		if r.stopped() {
			return errStopped
		}
		return fmt.Errorf("register service %s: %w", r.cfg.ServiceID, err)
	}
	// Under r.mu, so that a Deregister that follows always has the last word.
	r.setRegistered(true)
	return nil
}

// present asks the agent whether our service ID is among its services.
func (r *Registrar) present(ctx context.Context) (bool, error) {
	actx, cancel := r.attemptContext(ctx)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(actx)
	services, err := r.client.Agent().ServicesWithFilterOpts("", q)
	if err != nil {
		return false, fmt.Errorf("list agent services: %w", err)
	}
	_, ok := services[r.cfg.ServiceID]
	return ok, nil
}

// Deregister removes the instance from the agent and stops Run's re-registration.
// Call it on shutdown before draining. An in-flight registration attempt is
// cancelled first; calling Deregister again repeats only the agent call.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.stopOnce.Do(func() { close(r.stopCh) })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setRegistered(false)
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := r.client.Agent().ServiceDeregisterOpts(r.cfg.ServiceID, q); err != nil {
		var se api.StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			// The agent no longer has it: it restarted without state, or reaped the
			// instance after its check stayed critical.
			r.log.Info("not registered in consul any more; nothing to deregister")
			return nil
		}
		return fmt.Errorf("deregister service %s: %w", r.cfg.ServiceID, err)
	}
	r.log.Info("deregistered from consul")
	return nil
}

// rejected reports whether the agent answered a request with a client error (400: bad
// definition; 403: ACL) rather than failing to answer.
func rejected(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && (se.Code == http.StatusBadRequest || se.Code == http.StatusForbidden)
}
