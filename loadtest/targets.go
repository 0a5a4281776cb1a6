package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// Target is one server's base address.
type Target struct {
	Scheme string // "http" or "https"
	Host   string // host:port
}

// String returns the base URL.
func (t Target) String() string { return t.Scheme + "://" + t.Host }

// A Targeter hands out the server for the next request. Implementations are safe for
// concurrent use.
type Targeter interface {
	Next() (Target, error)
}

// ErrNoTarget is returned by a Targeter with no server to offer (for example, no
// passing instance in Consul); the request is counted with error kind "no_target".
var ErrNoTarget = errors.New("no target available")

// ParseTarget reads a base URL such as "http://127.0.0.1:8000". A path, query or
// fragment is refused: the scenarios choose the paths.
func ParseTarget(raw string) (Target, error) {
	if !strings.Contains(raw, "://") {
		return Target{}, fmt.Errorf("target %q: scheme must be http or https (e.g. http://127.0.0.1:8000)", raw)
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return Target{}, fmt.Errorf("target %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Target{}, fmt.Errorf("target %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return Target{}, fmt.Errorf("target %q: no host", raw)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, fmt.Errorf("target %q: give only scheme://host:port; the scenarios choose the paths", raw)
	}
	return Target{Scheme: u.Scheme, Host: u.Host}, nil
}

// StaticTargets spreads requests round-robin over a fixed list.
type StaticTargets struct {
	list []Target
	n    atomic.Uint64
}

var _ Targeter = (*StaticTargets)(nil)

// NewStaticTargets parses the base URLs; at least one is needed.
func NewStaticTargets(urls ...string) (*StaticTargets, error) {
	if len(urls) == 0 {
		return nil, errors.New("targets: no URL given")
	}
	st := &StaticTargets{}
	for _, u := range urls {
		t, err := ParseTarget(u)
		if err != nil {
			return nil, err
		}
		st.list = append(st.list, t)
	}
	return st, nil
}

// Next implements Targeter.
func (st *StaticTargets) Next() (Target, error) {
	if len(st.list) == 1 {
		return st.list[0], nil
	}
	return st.list[(st.n.Add(1)-1)%uint64(len(st.list))], nil
}

// ConsulTargets spreads requests round-robin over the passing instances of a Consul
// service, refreshed by blocking queries on /v1/health/service/<name>?passing.
type ConsulTargets struct {
	health  *consul.Health
	service string
	tag     string
	scheme  string
	wait    time.Duration
	answer  time.Duration
	log     *slog.Logger

	list atomic.Pointer[[]Target]
	n    atomic.Uint64

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

var _ Targeter = (*ConsulTargets)(nil)

// ConsulOptions selects the service to discover. The client honours the standard
// CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT, … variables through
// consul.DefaultConfig.
type ConsulOptions struct {
	Service string        // service name (required)
	Tag     string        // only instances with this tag ("" = any)
	Scheme  string        // scheme to reach instances ("" = http)
	Refresh time.Duration // longest wait of each blocking query (0 = 10s)
	// AnswerTimeout bounds how long a query may go unanswered beyond its blocking wait
	// (and Consul's jitter of up to wait/16), so a hung agent is an error, not a hang
	// (0 = 10s).
	AnswerTimeout time.Duration
	Config        *consul.Config
	Logger        *slog.Logger
}

// NewConsulTargets queries Consul once (failing if it cannot, or if no instance
// passes), then keeps the list fresh in the background until Close.
func NewConsulTargets(ctx context.Context, o ConsulOptions) (*ConsulTargets, error) {
	if o.Service == "" {
		return nil, errors.New("consul targets: no service name")
	}
	cfg := o.Config
	if cfg == nil {
		cfg = consul.DefaultConfig()
	}
	client, err := consul.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	ct := &ConsulTargets{
		health:  client.Health(),
		service: o.Service,
		tag:     o.Tag,
		scheme:  o.Scheme,
		wait:    o.Refresh,
		answer:  o.AnswerTimeout,
		log:     o.Logger,
		done:    make(chan struct{}),
	}
	if ct.scheme == "" {
		ct.scheme = "http"
	}
	if ct.wait <= 0 {
		ct.wait = 10 * time.Second
	}
	if ct.answer <= 0 {
		ct.answer = 10 * time.Second
	}
	if ct.log == nil {
		ct.log = slog.New(slog.DiscardHandler)
	}
	ct.log = ct.log.With("service", o.Service)
	index, err := ct.refresh(ctx, 0)
	if err != nil {
		return nil, err
	}
	if len(*ct.list.Load()) == 0 {
		return nil, fmt.Errorf("consul service %q: no passing instance", o.Service)
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ct.stop = cancel
	go ct.watch(bg, index)
	return ct, nil
}

// refresh runs one (blocking, when index > 0) health query and stores the result.
func (ct *ConsulTargets) refresh(ctx context.Context, index uint64) (uint64, error) {
	limit := ct.answer
	if index > 0 {
		limit += ct.wait + ct.wait/16
	}
	qctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	q := (&consul.QueryOptions{WaitIndex: index, WaitTime: ct.wait}).WithContext(qctx)
	entries, meta, err := ct.health.Service(ct.service, ct.tag, true, q)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no answer from the Consul agent within %s", limit)
		}
		return index, fmt.Errorf("consul health of service %q: %w", ct.service, err)
	}
	list := make([]Target, 0, len(entries))
	for _, e := range entries {
		if e.Service == nil {
			continue
		}
		addr := e.Service.Address
		if addr == "" && e.Node != nil {
			addr = e.Node.Address
		}
		if addr == "" || e.Service.Port == 0 {
			continue
		}
		list = append(list, Target{Scheme: ct.scheme, Host: net.JoinHostPort(addr, strconv.Itoa(e.Service.Port))})
	}
	old := ct.list.Swap(&list)
	if old == nil || len(*old) != len(list) {
		ct.log.Info("consul targets", "passing", len(list))
	}
	return meta.LastIndex, nil
}

func (ct *ConsulTargets) watch(ctx context.Context, index uint64) {
	defer close(ct.done)
	backoff := time.Second
	for ctx.Err() == nil {
		next, err := ct.refresh(ctx, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ct.log.Warn("consul refresh failed; keeping the last list", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		switch {
		case next == 0: // no X-Consul-Index: blocking is impossible, so poll
			select {
			case <-ctx.Done():
				return
			case <-time.After(ct.wait):
			}
		case next < index: // the index went backwards (agent restart): start over
			next = 0
		}
		index = next
	}
}

// Next implements Targeter.
func (ct *ConsulTargets) Next() (Target, error) {
	list := *ct.list.Load()
	if len(list) == 0 {
		return Target{}, ErrNoTarget
	}
	return list[(ct.n.Add(1)-1)%uint64(len(list))], nil
}

// Targets returns the current list.
func (ct *ConsulTargets) Targets() []Target {
	return append([]Target(nil), *ct.list.Load()...)
}

// Close stops the background refresh and waits for it.
func (ct *ConsulTargets) Close() error {
	ct.once.Do(func() {
		ct.stop()
		<-ct.done
	})
	return nil
}
