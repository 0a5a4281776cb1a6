package consultest

import (
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds request bodies (Consul has no documented limit; registrations are small).
const maxBody = 1 << 20

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", s.handleServiceRegister)
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id...}", s.handleServiceDeregister)
	mux.HandleFunc("GET /v1/agent/services", s.handleAgentServices)
	mux.HandleFunc("GET /v1/agent/service/{id...}", s.handleAgentService)
	mux.HandleFunc("GET /v1/agent/checks", s.handleAgentChecks)
	mux.HandleFunc("PUT /v1/agent/check/register", s.handleCheckRegister)
	mux.HandleFunc("PUT /v1/agent/check/deregister/{id...}", s.handleCheckDeregister)
	mux.HandleFunc("PUT /v1/agent/check/pass/{id...}", s.handleTTL(StatusPassing))
	mux.HandleFunc("PUT /v1/agent/check/warn/{id...}", s.handleTTL(StatusWarning))
	mux.HandleFunc("PUT /v1/agent/check/fail/{id...}", s.handleTTL(StatusCritical))
	mux.HandleFunc("PUT /v1/agent/check/update/{id...}", s.handleTTL(""))
	mux.HandleFunc("GET /v1/agent/self", s.handleSelf)
	mux.HandleFunc("GET /v1/catalog/services", s.handleCatalogServices)
	mux.HandleFunc("GET /v1/catalog/service/{name...}", s.handleCatalogService)
	mux.HandleFunc("GET /v1/catalog/nodes", s.handleCatalogNodes)
	mux.HandleFunc("GET /v1/catalog/datacenters", s.handleDatacenters)
	mux.HandleFunc("GET /v1/health/service/{name...}", s.handleHealthService)
	mux.HandleFunc("GET /v1/health/checks/{name...}", s.handleHealthChecks)
	mux.HandleFunc("GET /v1/status/leader", s.handleLeader)
	mux.HandleFunc("GET /v1/status/peers", s.handlePeers)
	return mux
}

// ---- helpers ----

// httpError answers like Consul's HTTP layer: the reason as a plain-text body.
func httpError(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, reason)
}

func (s *Server) aclNotFound(w http.ResponseWriter) {
	httpError(w, http.StatusForbidden, "ACL not found")
}

func (s *Server) setReadHeaders(w http.ResponseWriter, index uint64, filtered bool) {
	if index == 0 {
		index = 1
	}
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(index, 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	h.Set("X-Consul-Effective-Consistency", "leader")
	if s.opts.acl != nil {
		h.Set("X-Consul-Default-ACL-Policy", "deny")
		if filtered {
			h.Set("X-Consul-Results-Filtered-By-ACLs", "true")
		}
	} else {
		h.Set("X-Consul-Default-ACL-Policy", "allow")
	}
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	var b []byte
	if _, pretty := r.URL.Query()["pretty"]; pretty {
		b, _ = json.MarshalIndent(v, "", "    ")
	} else {
		b, _ = json.Marshal(v)
	}
	_, _ = w.Write(b)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large: %v", err))
		return nil, false
	}
	return b, true
}

// checkDC answers 500 "No path to datacenter" like Consul when ?dc names another one.
func (s *Server) checkDC(w http.ResponseWriter, r *http.Request) bool {
	if dc := r.URL.Query().Get("dc"); dc != "" && dc != s.opts.datacenter {
		httpError(w, http.StatusInternalServerError, "No path to datacenter")
		return false
	}
	return true
}

// ---- agent: services ----

func (s *Server) handleServiceRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var def serviceDefinition
	if err := decodeBody(body, &def); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("Request decode failed: %v", err))
		return
	}
	if def.Name == "" {
		httpError(w, http.StatusBadRequest, "Missing service name")
		return
	}
	if isAnyAddr(def.Address) {
		httpError(w, http.StatusBadRequest, "Invalid service address")
		return
	}
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	wts := weights{Passing: 1, Warning: 1}
	if def.Weights != nil {
		wts = *def.Weights
		if wts.Passing < 1 {
			httpError(w, http.StatusBadRequest, "Invalid Weights: Passing must be greater than 0")
			return
		}
		if wts.Warning < 0 {
			httpError(w, http.StatusBadRequest, "Invalid Weights: Warning must be greater or equal than 0")
			return
		}
	}
	if err := validateMeta(def.Meta); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid Service Meta: %v", err))
		return
	}
	if def.Kind != "" || len(def.Proxy) > 0 && string(def.Proxy) != "null" || len(def.Connect) > 0 && string(def.Connect) != "null" {
		httpError(w, http.StatusBadRequest, "Validation failed: Connect, proxies and gateways are not supported by this test double (consultest)")
		return
	}
	if def.Port < 0 || def.Port > 65535 {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("Validation failed: invalid port %d", def.Port))
		return
	}
	var defs []*checkDefinition
	if def.Check != nil {
		defs = append(defs, def.Check)
	}
	for _, c := range def.Checks {
		if c != nil {
			defs = append(defs, c)
		}
	}
	for _, c := range defs {
		if err := c.validate(); err != nil {
			if err == errBadCheckStatus {
				httpError(w, http.StatusBadRequest, err.Error())
			} else {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid check: %v", err))
			}
			return
		}
	}
	if !authz.serviceWrite(def.Name) {
		httpError(w, http.StatusForbidden, authz.denied("service", "write", def.Name))
		return
	}
	id := def.ID
	if id == "" {
		id = def.Name
	}
	svc := &service{
		ID: id, Name: def.Name, Address: def.Address, Port: def.Port,
		Tags: def.Tags, Meta: def.Meta, TaggedAddresses: def.TaggedAddresses,
		Weights: wts, EnableTagOverride: def.EnableTagOverride,
	}
	if svc.Tags == nil {
		svc.Tags = []string{}
	}
	if svc.Meta == nil {
		svc.Meta = map[string]string{}
	}
	q := r.URL.Query()
	replace := len(q["replace-existing-checks"]) > 0 && (q.Get("replace-existing-checks") == "" || q.Get("replace-existing-checks") == "true")
	s.mu.Lock()
	if prev, ok := s.services[id]; ok && prev.Name != def.Name && !authz.serviceWrite(prev.Name) {
		s.mu.Unlock()
		httpError(w, http.StatusForbidden, authz.denied("service", "write", prev.Name))
		return
	}
	s.addServiceLocked(svc, defs, replace)
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func isAnyAddr(a string) bool {
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	ip, err := netip.ParseAddr(a)
	return err == nil && ip.IsUnspecified()
}

func (s *Server) handleServiceDeregister(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, exists := s.services[id]
	if !exists {
		// Consul's agent answers 404 for an unknown ID, with or without ACLs
		// (vetServiceUpdateWithAuthorizer; ACLs off resolve to an allow-all authorizer).
		httpError(w, http.StatusNotFound, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id))
		return
	}
	if !authz.serviceWrite(svc.Name) {
		httpError(w, http.StatusForbidden, authz.denied("service", "write", svc.Name))
		return
	}
	s.removeServiceLocked(id)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) agentServiceJSON(svc *service) agentServiceJSON {
	return agentServiceJSON{
		ID: svc.ID, Service: svc.Name, Tags: svc.Tags, Meta: svc.Meta, Port: svc.Port,
		Address: svc.Address, TaggedAddresses: svc.TaggedAddresses, Weights: svc.Weights,
		EnableTagOverride: svc.EnableTagOverride, Datacenter: s.opts.datacenter,
	}
}

func (s *Server) handleAgentServices(w http.ResponseWriter, r *http.Request) {
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	f, err := parseFilterFor(r.URL.Query().Get("filter"), agentServiceFields(&agentServiceJSON{}))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	out := make(map[string]agentServiceJSON, len(s.services))
	filtered := false
	for id, svc := range s.services {
		if !authz.serviceRead(svc.Name) {
			filtered = true
			continue
		}
		v := s.agentServiceJSON(svc)
		if !f.match(agentServiceFields(&v)) {
			continue
		}
		out[id] = v
	}
	idx := s.index
	s.mu.Unlock()
	s.setReadHeaders(w, idx, filtered)
	writeJSON(w, r, out)
}

func (s *Server) handleAgentService(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	s.mu.Lock()
	svc, exists := s.services[id]
	var v agentServiceJSON
	if exists {
		v = s.agentServiceJSON(svc)
	}
	idx := s.index
	s.mu.Unlock()
	if !exists {
		httpError(w, http.StatusNotFound, fmt.Sprintf("unknown service ID: %s", id))
		return
	}
	if !authz.serviceRead(v.Service) {
		httpError(w, http.StatusForbidden, authz.denied("service", "read", v.Service))
		return
	}
	b, _ := json.Marshal(v)
	v.ContentHash = fmt.Sprintf("%016x", fnv64(b))
	w.Header().Set("X-Consul-ContentHash", v.ContentHash)
	s.setReadHeaders(w, idx, false)
	writeJSON(w, r, v)
}

func fnv64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// ---- agent: checks ----

func (s *Server) checkJSONLocked(c *check) healthCheckJSON {
	var tags []string
	if svc, ok := s.services[c.ServiceID]; ok {
		tags = svc.Tags
	}
	if tags == nil {
		tags = []string{}
	}
	def := checkDefinitionJSON{
		HTTP: c.def.HTTP, Header: c.def.Header, Method: c.def.Method, Body: c.def.Body,
		TLSServerName: c.def.TLSServerName, TLSSkipVerify: c.def.TLSSkipVerify, TCP: c.def.TCP,
		Interval: durString(c.interval), Timeout: durString(c.timeout),
		DeregisterCriticalServiceAfter: durString(c.deregisterAfter),
	}
	hc := healthCheckJSON{
		Node: s.opts.nodeName, CheckID: c.ID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: tags,
		Type: c.kind, Definition: def, CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex,
	}
	if c.kind != "ttl" {
		hc.Interval, hc.Timeout = durString(c.interval), durString(c.timeout)
	}
	return hc
}

func durString(d time.Duration) string { return d.String() }

func (s *Server) handleAgentChecks(w http.ResponseWriter, r *http.Request) {
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	f, err := parseFilterFor(r.URL.Query().Get("filter"), checkFields(&healthCheckJSON{}))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	out := make(map[string]healthCheckJSON, len(s.checks))
	filtered := false
	for id, c := range s.checks {
		allowed := authz.nodeRead()
		if c.ServiceID != "" {
			allowed = authz.serviceRead(c.ServiceName)
		}
		if !allowed {
			filtered = true
			continue
		}
		v := s.checkJSONLocked(c)
		if !f.match(checkFields(&v)) {
			continue
		}
		out[id] = v
	}
	idx := s.index
	s.mu.Unlock()
	s.setReadHeaders(w, idx, filtered)
	writeJSON(w, r, out)
}

func (s *Server) handleCheckRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var def checkDefinition
	if err := decodeBody(body, &def); err != nil {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("Request decode failed: %v", err))
		return
	}
	if def.Name == "" {
		httpError(w, http.StatusBadRequest, "Missing check name")
		return
	}
	if err := def.validate(); err != nil {
		if err == errBadCheckStatus {
			httpError(w, http.StatusBadRequest, err.Error())
		} else {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid check: %v", err))
		}
		return
	}
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	id := def.ID
	if id == "" {
		id = def.CheckID
	}
	if id == "" {
		id = def.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var svc *service
	if def.ServiceID != "" {
		var exists bool
		svc, exists = s.services[def.ServiceID]
		if !exists {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("ServiceID %q does not exist", def.ServiceID))
			return
		}
		if !authz.serviceWrite(svc.Name) {
			httpError(w, http.StatusForbidden, authz.denied("service", "write", svc.Name))
			return
		}
	} else if !authz.nodeWrite() {
		httpError(w, http.StatusForbidden, authz.denied("node", "write", s.opts.nodeName))
		return
	}
	s.addCheckLocked(id, def.Name, svc, &def, s.bumpLocked())
	w.WriteHeader(http.StatusOK)
}

// checkWriteAllowedLocked answers 403 and returns false when authz may not change c.
func (s *Server) checkWriteAllowedLocked(w http.ResponseWriter, authz authorizer, c *check) bool {
	if c.ServiceID != "" {
		if !authz.serviceWrite(c.ServiceName) {
			httpError(w, http.StatusForbidden, authz.denied("service", "write", c.ServiceName))
			return false
		}
		return true
	}
	if !authz.nodeWrite() {
		httpError(w, http.StatusForbidden, authz.denied("node", "write", s.opts.nodeName))
		return false
	}
	return true
}

func unknownCheck(w http.ResponseWriter, id string) {
	httpError(w, http.StatusNotFound, fmt.Sprintf("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id))
}

func (s *Server) handleCheckDeregister(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, exists := s.checks[id]
	if !exists {
		unknownCheck(w, id)
		return
	}
	if !s.checkWriteAllowedLocked(w, authz, c) {
		return
	}
	c.cancel()
	delete(s.checks, id)
	idx := s.bumpLocked()
	if c.ServiceName != "" {
		s.nameIndex[c.ServiceName] = idx
	}
	w.WriteHeader(http.StatusOK)
}

// handleTTL serves pass/warn/fail (fixed status, ?note= as output) and update
// (JSON body {"Status", "Output"}).
func (s *Server) handleTTL(fixed string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		status, output := fixed, r.URL.Query().Get("note")
		if fixed == "" {
			body, ok := readBody(w, r)
			if !ok {
				return
			}
			var upd struct{ Status, Output string }
			if err := decodeBody(body, &upd); err != nil {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("Request decode failed: %v", err))
				return
			}
			if !validStatus(upd.Status) {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid check status: '%s'", upd.Status))
				return
			}
			status, output = upd.Status, upd.Output
		}
		authz, ok := s.resolve(r)
		if !ok {
			s.aclNotFound(w)
			return
		}
		s.mu.Lock()
		c, exists := s.checks[id]
		if !exists {
			s.mu.Unlock()
			unknownCheck(w, id)
			return
		}
		if !s.checkWriteAllowedLocked(w, authz, c) {
			s.mu.Unlock()
			return
		}
		if c.kind != "ttl" {
			s.mu.Unlock()
			httpError(w, http.StatusInternalServerError, fmt.Sprintf("CheckID %q does not have associated TTL", id))
			return
		}
		s.mu.Unlock()
		s.updateCheck(c, status, output)
		select {
		case c.ttlReset <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}
}

// ---- agent: self, status ----

func (s *Server) handleSelf(w http.ResponseWriter, r *http.Request) {
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	if !authz.agentRead() {
		httpError(w, http.StatusForbidden, authz.denied("agent", "read", s.opts.nodeName))
		return
	}
	out := map[string]any{
		"Config": map[string]any{
			"Datacenter":        s.opts.datacenter,
			"PrimaryDatacenter": s.opts.datacenter,
			"NodeName":          s.opts.nodeName,
			"NodeID":            s.nodeID,
			"Server":            true,
			"Revision":          "consultest",
			"Version":           "0.0.0",
			"BuildDate":         "",
		},
		"Member": map[string]any{
			"Name": s.opts.nodeName,
			"Addr": s.opts.nodeAddress,
			"Port": 8301,
			"Tags": map[string]string{
				"dc": s.opts.datacenter, "role": "consul", "id": s.nodeID, "port": "8300",
			},
			"Status": 1,
		},
		"Meta": map[string]string{"consul-network-segment": ""},
		"Stats": map[string]map[string]string{
			"agent": {"services": strconv.Itoa(len(s.ServiceIDs()))},
		},
	}
	s.mu.Lock()
	idx := s.index
	s.mu.Unlock()
	s.setReadHeaders(w, idx, false)
	writeJSON(w, r, out)
}

func (s *Server) handleLeader(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, r, s.opts.nodeAddress+":8300")
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, []string{s.opts.nodeAddress + ":8300"})
}

func (s *Server) handleDatacenters(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, []string{s.opts.datacenter})
}

// ---- blocking queries ----

// parseBlocking reads ?index= and ?wait= the way Consul does.
func parseBlocking(r *http.Request) (index uint64, wait time.Duration, err error) {
	q := r.URL.Query()
	if v := q.Get("index"); v != "" {
		index, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("Invalid index")
		}
	}
	if v := q.Get("wait"); v != "" {
		wait, err = time.ParseDuration(v)
		if err != nil {
			return 0, 0, fmt.Errorf("Invalid wait time")
		}
	}
	if wait <= 0 {
		wait = DefaultQueryTime
	}
	if wait > MaxQueryTime {
		wait = MaxQueryTime
	}
	return index, wait, nil
}

// blockingRead answers a catalog or health read. indexFn gives the index of the
// data the query covers; build builds the answer. Both run under s.mu. With
// ?index=N the answer waits until indexFn() > N, the wait (plus up to wait/16 of
// jitter, as Consul adds) elapses, the client goes away, or the server stops.
func (s *Server) blockingRead(w http.ResponseWriter, r *http.Request, indexFn func() uint64, build func() (any, bool)) {
	if !s.checkDC(w, r) {
		return
	}
	minIndex, wait, err := parseBlocking(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	var timeout <-chan time.Time
	if minIndex > 0 {
		wait += time.Duration(mrand.Int64N(int64(wait)/16 + 1))
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	s.lifeMu.Lock()
	quit := s.quit
	s.lifeMu.Unlock()
	for {
		s.mu.Lock()
		idx := indexFn()
		if idx == 0 {
			idx = 1
		}
		if minIndex == 0 || idx > minIndex {
			v, filtered := build()
			s.mu.Unlock()
			s.setReadHeaders(w, idx, filtered)
			writeJSON(w, r, v)
			return
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			minIndex = 0 // answer with what there is now
		case <-r.Context().Done():
			return
		case <-quit:
			// The agent is going away: drop the connection without an answer,
			// as a real agent that stops does.
			panic(http.ErrAbortHandler)
		}
	}
}

// ---- catalog ----

// entry is one service instance as the catalog and health endpoints see it.
type entry struct {
	svc    *service
	checks []*check
}

// consulService is the "consul" service every server agent shows in the catalog.
func (s *Server) consulService() *service {
	return &service{
		ID: "consul", Name: "consul", Port: 8300, Tags: []string{}, Meta: map[string]string{},
		Weights: weights{Passing: 1, Warning: 1}, CreateIndex: 1, ModifyIndex: 1,
	}
}

// entriesLocked lists the instances of a service name, sorted by ID. s.mu held.
func (s *Server) entriesLocked(name string) []entry {
	var out []entry
	if name == "consul" {
		out = append(out, entry{svc: s.consulService()})
	}
	for _, svc := range s.services {
		if svc.Name == name {
			out = append(out, entry{svc: svc, checks: s.sortedChecksLocked(svc.ID)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].svc.ID < out[j].svc.ID })
	return out
}

func (s *Server) nodeMeta() map[string]string {
	return map[string]string{"consul-network-segment": ""}
}

func (s *Server) nodeJSON() nodeJSON {
	return nodeJSON{
		ID: s.nodeID, Node: s.opts.nodeName, Address: s.opts.nodeAddress, Datacenter: s.opts.datacenter,
		TaggedAddresses: map[string]string{
			"lan": s.opts.nodeAddress, "lan_ipv4": s.opts.nodeAddress,
			"wan": s.opts.nodeAddress, "wan_ipv4": s.opts.nodeAddress,
		},
		Meta: s.nodeMeta(), CreateIndex: s.nodeIndex, ModifyIndex: s.nodeIndex,
	}
}

// nodeMetaMatches applies ?node-meta=key:value filters.
func (s *Server) nodeMetaMatches(r *http.Request) bool {
	meta := s.nodeMeta()
	for _, kv := range r.URL.Query()["node-meta"] {
		k, v, _ := strings.Cut(kv, ":")
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func hasAllTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

func (s *Server) handleCatalogServices(w http.ResponseWriter, r *http.Request) {
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	metaOK := s.nodeMetaMatches(r)
	s.blockingRead(w, r, func() uint64 { return s.servicesIndex }, func() (any, bool) {
		out := map[string][]string{}
		filtered := false
		if !metaOK {
			return out, false
		}
		names := map[string][]*service{"consul": {s.consulService()}}
		for _, svc := range s.services {
			names[svc.Name] = append(names[svc.Name], svc)
		}
		for name, svcs := range names {
			if !authz.serviceRead(name) {
				filtered = true
				continue
			}
			tags := []string{}
			for _, svc := range svcs {
				for _, t := range svc.Tags {
					if !slices.Contains(tags, t) {
						tags = append(tags, t)
					}
				}
			}
			sort.Strings(tags)
			out[name] = tags
		}
		return out, filtered
	})
}

func (s *Server) handleCatalogService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	f, err := parseFilterFor(r.URL.Query().Get("filter"), catalogServiceFields(&catalogServiceJSON{}))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	tags := r.URL.Query()["tag"]
	metaOK := s.nodeMetaMatches(r)
	s.blockingRead(w, r, func() uint64 { return max(s.nameIndex[name], s.nodeIndex) }, func() (any, bool) {
		out := []catalogServiceJSON{}
		if !authz.serviceRead(name) || !authz.nodeRead() {
			return out, true
		}
		if !metaOK {
			return out, false
		}
		n := s.nodeJSON()
		for _, e := range s.entriesLocked(name) {
			if !hasAllTags(e.svc.Tags, tags) {
				continue
			}
			cs := catalogServiceJSON{
				ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
				TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta, ServiceKind: e.svc.Kind,
				ServiceID: e.svc.ID, ServiceName: e.svc.Name, ServiceTags: e.svc.Tags,
				ServiceAddress: e.svc.Address, ServiceTaggedAddresses: e.svc.TaggedAddresses,
				ServiceWeights: e.svc.Weights, ServiceMeta: e.svc.Meta, ServicePort: e.svc.Port,
				ServiceEnableTagOverride: e.svc.EnableTagOverride,
				CreateIndex:              e.svc.CreateIndex, ModifyIndex: e.svc.ModifyIndex,
			}
			if !f.match(catalogServiceFields(&cs)) {
				continue
			}
			out = append(out, cs)
		}
		return out, false
	})
}

func (s *Server) handleCatalogNodes(w http.ResponseWriter, r *http.Request) {
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	metaOK := s.nodeMetaMatches(r)
	s.blockingRead(w, r, func() uint64 { return s.nodeIndex }, func() (any, bool) {
		if !authz.nodeRead() {
			return []nodeJSON{}, true
		}
		if !metaOK {
			return []nodeJSON{}, false
		}
		return []nodeJSON{s.nodeJSON()}, false
	})
}

// ---- health ----

func (s *Server) serfHealth() healthCheckJSON {
	return healthCheckJSON{
		Node: s.opts.nodeName, CheckID: "serfHealth", Name: "Serf Health Status",
		Status: StatusPassing, Output: "Agent alive and reachable", ServiceTags: []string{},
		Definition:  checkDefinitionJSON{Interval: "0s", Timeout: "0s", DeregisterCriticalServiceAfter: "0s"},
		CreateIndex: s.nodeIndex, ModifyIndex: s.nodeIndex,
	}
}

func (s *Server) handleHealthService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	q := r.URL.Query()
	f, err := parseFilterFor(q.Get("filter"), serviceEntryFields(&serviceEntryJSON{}))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	passing := false
	if vs, ok := q["passing"]; ok {
		v := vs[0]
		if v == "" {
			passing = true
		} else if passing, err = strconv.ParseBool(v); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for ?passing: %q", v))
			return
		}
	}
	tags := q["tag"]
	metaOK := s.nodeMetaMatches(r)
	s.blockingRead(w, r, func() uint64 { return max(s.nameIndex[name], s.nodeIndex) }, func() (any, bool) {
		out := []serviceEntryJSON{}
		if !authz.serviceRead(name) || !authz.nodeRead() {
			return out, true
		}
		if !metaOK {
			return out, false
		}
		for _, e := range s.entriesLocked(name) {
			if !hasAllTags(e.svc.Tags, tags) {
				continue
			}
			checks := []healthCheckJSON{s.serfHealth()}
			for _, c := range e.checks {
				checks = append(checks, s.checkJSONLocked(c))
			}
			if passing && !allPassing(checks) {
				continue
			}
			se := serviceEntryJSON{Node: s.nodeJSON(), Service: s.agentServiceJSON(e.svc), Checks: checks}
			se.Service.CreateIndex, se.Service.ModifyIndex = e.svc.CreateIndex, e.svc.ModifyIndex
			if !f.match(serviceEntryFields(&se)) {
				continue
			}
			out = append(out, se)
		}
		return out, false
	})
}

func allPassing(checks []healthCheckJSON) bool {
	for _, c := range checks {
		if c.Status != StatusPassing {
			return false
		}
	}
	return true
}

func (s *Server) handleHealthChecks(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	authz, ok := s.resolve(r)
	if !ok {
		s.aclNotFound(w)
		return
	}
	f, err := parseFilterFor(r.URL.Query().Get("filter"), checkFields(&healthCheckJSON{}))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.blockingRead(w, r, func() uint64 { return max(s.nameIndex[name], s.nodeIndex) }, func() (any, bool) {
		out := []healthCheckJSON{}
		if !authz.serviceRead(name) {
			return out, true
		}
		for _, e := range s.entriesLocked(name) {
			for _, c := range e.checks {
				v := s.checkJSONLocked(c)
				if f.match(checkFields(&v)) {
					out = append(out, v)
				}
			}
		}
		return out, false
	})
}

// parseFilterFor parses ?filter= and checks its selectors against the item type.
func parseFilterFor(expr string, sample fields) (filter, error) {
	f, err := parseFilter(expr)
	if err != nil {
		return filter{}, err
	}
	return f, f.validate(sample)
}
