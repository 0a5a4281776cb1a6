package consultest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"time"
)

var errAddrInUse = syscall.EADDRINUSE

// outputLimit is how much of an HTTP check's response body Consul keeps.
const outputLimit = 4 * 1024

// addServiceLocked registers (or replaces) a service and its checks. s.mu held.
func (s *Server) addServiceLocked(svc *service, defs []*checkDefinition, replaceChecks bool) {
	idx := s.bumpLocked()
	if prev, ok := s.services[svc.ID]; ok {
		svc.CreateIndex = prev.CreateIndex
		if prev.Name != svc.Name {
			s.nameIndex[prev.Name] = idx
		}
	} else {
		svc.CreateIndex = idx
	}
	svc.ModifyIndex = idx
	s.services[svc.ID] = svc
	s.servicesIndex = idx
	s.nameIndex[svc.Name] = idx

	keep := make(map[string]bool, len(defs))
	for i, d := range defs {
		id := d.CheckID
		if id == "" {
			id = d.ID
		}
		if id == "" {
			id = "service:" + svc.ID
			if len(defs) > 1 {
				id += fmt.Sprintf(":%d", i+1)
			}
		}
		name := d.Name
		if name == "" {
			name = fmt.Sprintf("Service '%s' check", svc.Name)
		}
		keep[id] = true
		s.addCheckLocked(id, name, svc, d, idx)
	}
	if replaceChecks {
		for id, c := range s.checks {
			if c.ServiceID == svc.ID && !keep[id] {
				c.cancel()
				delete(s.checks, id)
			}
		}
	}
	s.opts.logger.Info("consultest: service registered", "id", svc.ID, "name", svc.Name,
		"address", svc.Address, "port", svc.Port, "checks", len(defs))
}

// addCheckLocked registers (or replaces) one check and starts running it. A check
// that replaces one with the same ID keeps its status, so re-registering does not
// make a healthy instance flap. s.mu held.
func (s *Server) addCheckLocked(id, name string, svc *service, d *checkDefinition, idx uint64) {
	status := d.Status
	if status == "" {
		status = StatusCritical
	}
	c := &check{
		ID: id, Name: name, Status: status, Notes: d.Notes, kind: d.kind(), def: *d,
		interval: time.Duration(d.Interval), timeout: time.Duration(d.Timeout), ttl: time.Duration(d.TTL),
		deregisterAfter: time.Duration(d.DeregisterCriticalServiceAfter),
		CreateIndex:     idx, ModifyIndex: idx,
	}
	if svc != nil {
		c.ServiceID, c.ServiceName = svc.ID, svc.Name
	}
	if c.kind != "ttl" {
		if c.interval < s.opts.minCheckInterval {
			c.interval = s.opts.minCheckInterval
		}
		if c.timeout <= 0 {
			c.timeout = DefaultCheckTimeout
		}
	}
	if prev, ok := s.checks[id]; ok {
		prev.cancel()
		c.CreateIndex = prev.CreateIndex
		if d.Status == "" {
			c.Status, c.Output, c.criticalSince = prev.Status, prev.Output, prev.criticalSince
		}
	}
	if c.Status == StatusCritical && c.criticalSince.IsZero() {
		c.criticalSince = time.Now()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.ttlReset = make(chan struct{}, 1)
	s.checks[id] = c
	if c.ServiceName != "" {
		s.nameIndex[c.ServiceName] = idx
	}
	go s.runCheck(ctx, c)
}

// removeServiceLocked deletes a service and its checks. s.mu held.
func (s *Server) removeServiceLocked(id string) bool {
	svc, ok := s.services[id]
	if !ok {
		return false
	}
	idx := s.bumpLocked()
	delete(s.services, id)
	for cid, c := range s.checks {
		if c.ServiceID == id {
			c.cancel()
			delete(s.checks, cid)
		}
	}
	s.servicesIndex = idx
	s.nameIndex[svc.Name] = idx
	s.opts.logger.Info("consultest: service deregistered", "id", id, "name", svc.Name)
	return true
}

// updateCheck records a check result. A status change advances the index and wakes
// blocking queries; an output-only change does not (the agent defers those).
func (s *Server) updateCheck(c *check, status, output string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.checks[c.ID] != c { // deregistered or replaced meanwhile
		return
	}
	c.Output = output
	if c.Status == status {
		return
	}
	prev := c.Status
	c.Status = status
	if status == StatusCritical {
		c.criticalSince = time.Now()
	} else {
		c.criticalSince = time.Time{}
	}
	idx := s.bumpLocked()
	c.ModifyIndex = idx
	if c.ServiceName != "" {
		s.nameIndex[c.ServiceName] = idx
	}
	s.opts.logger.Info("consultest: check status changed", "check", c.ID, "from", prev, "to", status)
}

func (s *Server) runCheck(ctx context.Context, c *check) {
	if c.kind == "ttl" {
		s.runTTL(ctx, c)
		return
	}
	// Like the agent, start after a random stagger within the interval.
	stagger := time.Duration(mrand.Int64N(int64(c.interval)))
	t := time.NewTimer(stagger)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var status, output string
		if c.kind == "http" {
			status, output = probeHTTP(ctx, &c.def, c.timeout)
		} else {
			status, output = probeTCP(ctx, c.def.TCP, c.timeout)
		}
		if ctx.Err() != nil {
			return
		}
		s.updateCheck(c, status, output)
		t.Reset(c.interval)
	}
}

func (s *Server) runTTL(ctx context.Context, c *check) {
	t := time.NewTimer(c.ttl)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ttlReset:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(c.ttl)
		case <-t.C:
			s.updateCheck(c, StatusCritical, "TTL expired")
		}
	}
}

// probeHTTP runs one HTTP check: 2xx passing, 429 warning, anything else critical.
func probeHTTP(ctx context.Context, d *checkDefinition, timeout time.Duration) (string, string) {
	method := d.Method
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if d.Body != "" {
		body = strings.NewReader(d.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.HTTP, body)
	if err != nil {
		return StatusCritical, err.Error()
	}
	for k, vs := range d.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "Consul Health Check")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}
	client := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: d.TLSSkipVerify, ServerName: d.TLSServerName}, //nolint:gosec // mirrors the check's own setting
	}}
	resp, err := client.Do(req)
	if err != nil {
		return StatusCritical, err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, outputLimit))
	output := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, d.HTTP, resp.Status, out)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return StatusPassing, output
	case resp.StatusCode == http.StatusTooManyRequests:
		return StatusWarning, output
	default:
		return StatusCritical, output
	}
}

func probeTCP(ctx context.Context, addr string, timeout time.Duration) (string, string) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return StatusCritical, err.Error()
	}
	_ = conn.Close()
	return StatusPassing, fmt.Sprintf("TCP connect %s: Success", addr)
}

// reaper deregisters services whose checks have been critical for longer than
// their DeregisterCriticalServiceAfter (floored at minDeregisterAfter).
func (s *Server) reaper(quit <-chan struct{}) {
	t := time.NewTicker(s.opts.reapInterval)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		s.mu.Lock()
		now := time.Now()
		var reap []string
		for _, c := range s.checks {
			if c.ServiceID == "" || c.deregisterAfter <= 0 || c.Status != StatusCritical {
				continue
			}
			timeout := max(c.deregisterAfter, s.opts.minDeregisterAfter)
			if now.Sub(c.criticalSince) > timeout {
				reap = append(reap, c.ServiceID)
			}
		}
		for _, id := range reap {
			if s.removeServiceLocked(id) {
				s.opts.logger.Info("consultest: reaped critical service", "id", id)
			}
		}
		s.mu.Unlock()
	}
}

// sortedChecksLocked returns a service's checks ordered by ID. s.mu held.
func (s *Server) sortedChecksLocked(serviceID string) []*check {
	var out []*check
	for _, c := range s.checks {
		if c.ServiceID == serviceID {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
