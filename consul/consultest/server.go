package consultest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Defaults that mirror Consul's agent.
const (
	// DefaultMinDeregisterAfter is Consul's floor for DeregisterCriticalServiceAfter.
	DefaultMinDeregisterAfter = time.Minute
	// DefaultReapInterval is how often Consul's agent looks for services to reap.
	DefaultReapInterval = 30 * time.Second
	// DefaultMinCheckInterval is Consul's floor for a check's interval.
	DefaultMinCheckInterval = time.Second
	// DefaultCheckTimeout is the HTTP/TCP check timeout when none is given.
	DefaultCheckTimeout = 10 * time.Second
	// MaxQueryTime caps a blocking query's wait, like Consul's max_query_time.
	MaxQueryTime = 10 * time.Minute
	// DefaultQueryTime is a blocking query's wait when ?wait is absent.
	DefaultQueryTime = 5 * time.Minute
)

// Option configures a Server.
type Option func(*options)

type options struct {
	addr               string
	datacenter         string
	nodeName           string
	nodeAddress        string
	acl                *ACL
	minDeregisterAfter time.Duration
	reapInterval       time.Duration
	minCheckInterval   time.Duration
	logger             *slog.Logger
}

// WithAddress makes the server listen on addr (host:port) instead of a free
// loopback port, for example to start it late on an address a client already uses.
func WithAddress(addr string) Option { return func(o *options) { o.addr = addr } }

// WithDatacenter sets the datacenter name (default "dc1").
func WithDatacenter(dc string) Option { return func(o *options) { o.datacenter = dc } }

// WithNode sets the agent's node name and address (default "consultest", 127.0.0.1).
func WithNode(name, address string) Option {
	return func(o *options) { o.nodeName, o.nodeAddress = name, address }
}

// WithACL turns on ACL enforcement with the given tokens (default deny).
func WithACL(acl ACL) Option { return func(o *options) { o.acl = &acl } }

// WithReaper sets the floor applied to DeregisterCriticalServiceAfter and how often
// critical services are reaped (Consul: 1m and 30s). Tests shorten both.
func WithReaper(minDeregisterAfter, interval time.Duration) Option {
	return func(o *options) { o.minDeregisterAfter, o.reapInterval = minDeregisterAfter, interval }
}

// WithMinCheckInterval sets the floor applied to check intervals (Consul: 1s).
func WithMinCheckInterval(d time.Duration) Option {
	return func(o *options) { o.minCheckInterval = d }
}

// WithLogger sets where the double logs registrations, check results and reaps.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Server is a running Consul agent double. Its methods are safe for concurrent use.
//
// Filter expressions (?filter=) support the simple forms only: terms joined by
// "and", each one of `Sel == "v"`, `Sel != "v"`, `"v" in Sel`, `"v" not in Sel`,
// `Sel contains "v"`, `Sel is empty`, `Sel is not empty`. Anything else is 400.
type Server struct {
	opts   options
	nodeID string

	lifeMu  sync.Mutex // serialises Start/Stop
	srv     *http.Server
	ln      net.Listener
	addr    string
	running bool
	quit    chan struct{}
	wg      sync.WaitGroup

	mu            sync.Mutex
	index         uint64
	changed       chan struct{}
	services      map[string]*service
	checks        map[string]*check
	servicesIndex uint64
	nameIndex     map[string]uint64
	nodeIndex     uint64
}

type service struct {
	ID, Name, Address, Kind string
	Port                    int
	Tags                    []string
	Meta                    map[string]string
	TaggedAddresses         map[string]serviceAddress
	Weights                 weights
	EnableTagOverride       bool
	CreateIndex             uint64
	ModifyIndex             uint64
}

type check struct {
	ID, Name, Status, Notes, Output string
	ServiceID, ServiceName          string
	kind                            string // "http", "tcp", "ttl"
	def                             checkDefinition
	interval, timeout, ttl          time.Duration
	deregisterAfter                 time.Duration
	criticalSince                   time.Time
	CreateIndex, ModifyIndex        uint64
	cancel                          context.CancelFunc
	ttlReset                        chan struct{}
}

// NewServer starts a double outside of a test (for a dev command). Close it when done.
func NewServer(opts ...Option) (*Server, error) {
	o := options{
		addr:               "127.0.0.1:0",
		datacenter:         "dc1",
		nodeName:           "consultest",
		nodeAddress:        "127.0.0.1",
		minDeregisterAfter: DefaultMinDeregisterAfter,
		reapInterval:       DefaultReapInterval,
		minCheckInterval:   DefaultMinCheckInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:    o,
		nodeID:  newUUID(),
		index:   1,
		changed: make(chan struct{}),
	}
	s.resetState()
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// New starts a double for a test on a free loopback port (or WithAddress) and
// stops it when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := NewServer(opts...)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	return s.addr
}

// URL is the server's base URL, "http://host:port".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Datacenter is the datacenter name the server reports.
func (s *Server) Datacenter() string { return s.opts.datacenter }

// Start starts a stopped server on the same address. NewServer starts it already.
func (s *Server) Start() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.running {
		return nil
	}
	addr := s.opts.addr
	if s.addr != "" {
		addr = s.addr
	}
	var ln net.Listener
	var err error
	// The port of a just-closed listener can take a moment to be free again.
	for i := 0; i < 50; i++ {
		ln, err = net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.ln = ln
	s.addr = ln.Addr().String()
	s.quit = make(chan struct{})
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	s.running = true
	srv, quit := s.srv, s.quit
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln)
	}()
	go func() {
		defer s.wg.Done()
		s.reaper(quit)
	}()
	s.opts.logger.Info("consultest: agent started", "addr", s.addr)
	return nil
}

// Stop stops serving (open connections are closed, so clients see the agent go
// away) and forgets every service and check, as an agent without persisted state.
func (s *Server) Stop() {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if !s.running {
		return
	}
	s.running = false
	close(s.quit) // blocking queries abort their connections
	// Let in-flight handlers finish, so none writes into the state reset below.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = s.srv.Shutdown(ctx)
	cancel()
	_ = s.srv.Close()
	s.wg.Wait()
	s.mu.Lock()
	for _, c := range s.checks {
		c.cancel()
	}
	s.resetState()
	s.bumpLocked()
	s.servicesIndex = s.index
	s.mu.Unlock()
	s.opts.logger.Info("consultest: agent stopped")
}

// Restart stops and starts the server on the same address: it forgets every
// service and check, and clients see their connections closed.
func (s *Server) Restart() error {
	s.Stop()
	return s.Start()
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// resetState drops all services and checks. s.mu must be held (or s unshared).
func (s *Server) resetState() {
	s.services = make(map[string]*service)
	s.checks = make(map[string]*check)
	s.nameIndex = make(map[string]uint64)
	s.servicesIndex = s.index
	s.nodeIndex = 1
}

// bumpLocked advances the raft-like index and wakes blocking queries.
func (s *Server) bumpLocked() uint64 {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// ServiceSnapshot is a registered service as the test sees it.
type ServiceSnapshot struct {
	ID, Name, Address string
	Port              int
	Tags              []string
	Meta              map[string]string
	Checks            []CheckSnapshot
}

// CheckSnapshot is a check as the test sees it.
type CheckSnapshot struct {
	ID, Name, Status, Output, Type string
	HTTP                           string
	Interval, Timeout              time.Duration
	DeregisterCriticalServiceAfter time.Duration
}

// Service returns a copy of a registered service and its checks.
func (s *Server) Service(id string) (ServiceSnapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[id]
	if !ok {
		return ServiceSnapshot{}, false
	}
	snap := ServiceSnapshot{
		ID: svc.ID, Name: svc.Name, Address: svc.Address, Port: svc.Port,
		Tags: append([]string(nil), svc.Tags...), Meta: copyMap(svc.Meta),
	}
	for _, c := range s.sortedChecksLocked(id) {
		snap.Checks = append(snap.Checks, CheckSnapshot{
			ID: c.ID, Name: c.Name, Status: c.Status, Output: c.Output, Type: c.kind,
			HTTP: c.def.HTTP, Interval: c.interval, Timeout: c.timeout,
			DeregisterCriticalServiceAfter: c.deregisterAfter,
		})
	}
	return snap, true
}

// ServiceIDs lists the IDs of the registered services.
func (s *Server) ServiceIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.services))
	for id := range s.services {
		ids = append(ids, id)
	}
	return ids
}

// WaitFor polls cond (every 10ms) until it is true or timeout passes, and reports
// whether it became true. Handy with Service in tests.
func (s *Server) WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
