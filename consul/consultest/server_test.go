package consultest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func client(t *testing.T, s *Server, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: s.Addr(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends a raw request and returns status, body and headers.
func do(t *testing.T, method, u, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func waitStatus(t *testing.T, s *Server, serviceID, want string, timeout time.Duration) CheckSnapshot {
	t.Helper()
	var last CheckSnapshot
	ok := s.WaitFor(timeout, func() bool {
		snap, found := s.Service(serviceID)
		if !found || len(snap.Checks) == 0 {
			return false
		}
		last = snap.Checks[0]
		return last.Status == want
	})
	if !ok {
		t.Fatalf("check of %s: want status %q within %v, last %+v", serviceID, want, timeout, last)
	}
	return last
}

func TestRegisterAndReadBack(t *testing.T) {
	t.Parallel()
	s := New(t, WithDatacenter("dc7"), WithNode("node-a", "127.0.0.1"))
	c := client(t, s, "")
	reg := &api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Address: "10.1.2.3", Port: 8080,
		Tags: []string{"inference", "v1"}, Meta: map[string]string{"metrics_path": "/metrics", "model": "tiny"},
		Check: &api.AgentServiceCheck{TTL: "30s", DeregisterCriticalServiceAfter: "5m"},
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register: %v", err)
	}

	svcs, err := c.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	got := svcs["web-1"]
	if got == nil || got.Service != "web" || got.Address != "10.1.2.3" || got.Port != 8080 ||
		strings.Join(got.Tags, ",") != "inference,v1" || got.Meta["model"] != "tiny" ||
		got.Weights.Passing != 1 || got.Datacenter != "dc7" {
		t.Fatalf("agent/services: %+v", got)
	}

	one, _, err := c.Agent().Service("web-1", nil)
	if err != nil || one.ContentHash == "" || one.ID != "web-1" {
		t.Fatalf("agent/service/web-1: %+v, %v", one, err)
	}
	if _, _, err := c.Agent().Service("nope", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("agent/service/nope: want a 404 error, got %v", err)
	}

	checks, err := c.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	ck := checks["service:web-1"]
	if ck == nil || ck.Status != api.HealthCritical || ck.Name != "Service 'web' check" || ck.ServiceID != "web-1" || ck.Type != "ttl" {
		t.Fatalf("agent/checks: %+v", ck)
	}

	names, meta, err := c.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names["web"], ",") != "inference,v1" || names["consul"] == nil || meta.LastIndex == 0 || !meta.KnownLeader {
		t.Fatalf("catalog/services: %v, meta %+v", names, meta)
	}

	cs, _, err := c.Catalog().Service("web", "inference", nil)
	if err != nil || len(cs) != 1 || cs[0].ServiceID != "web-1" || cs[0].Node != "node-a" ||
		cs[0].ServiceAddress != "10.1.2.3" || cs[0].ServicePort != 8080 || cs[0].Datacenter != "dc7" {
		t.Fatalf("catalog/service/web: %+v, %v", cs, err)
	}
	if cs, _, _ := c.Catalog().Service("web", "absent-tag", nil); len(cs) != 0 {
		t.Fatalf("catalog/service/web?tag=absent-tag: want none, got %+v", cs)
	}

	entries, _, err := c.Health().Service("web", "", false, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("health/service/web: %+v, %v", entries, err)
	}
	e := entries[0]
	if e.Node.Node != "node-a" || e.Node.Datacenter != "dc7" || e.Service.ID != "web-1" || len(e.Checks) != 2 ||
		e.Checks[0].CheckID != "serfHealth" || e.Checks.AggregatedStatus() != api.HealthCritical {
		t.Fatalf("health entry: %+v checks %+v", e, e.Checks)
	}
	if passing, _, _ := c.Health().Service("web", "", true, nil); len(passing) != 0 {
		t.Fatalf("?passing: a critical instance must be left out, got %d", len(passing))
	}

	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "dc7" || self["Config"]["NodeName"] != "node-a" {
		t.Fatalf("agent/self: %v, %v", self["Config"], err)
	}
	leader, err := c.Status().Leader()
	if err != nil || leader == "" {
		t.Fatalf("status/leader: %q %v", leader, err)
	}

	if err := c.Agent().ServiceDeregister("web-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Service("web-1"); ok {
		t.Fatal("service still registered after deregister")
	}
	if ids := s.ServiceIDs(); len(ids) != 0 {
		t.Fatalf("services left: %v", ids)
	}
	// Deregistering an unknown service is a 404, ACLs or not, as in Consul.
	var se api.StatusError
	if err := c.Agent().ServiceDeregister("web-1"); !errors.As(err, &se) || se.Code != 404 || !strings.Contains(se.Body, "Unknown service ID") {
		t.Fatalf("second deregister: %v, want 404 Unknown service ID", err)
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	s := New(t)
	u := s.URL() + "/v1/agent/service/register"
	tests := []struct {
		name, body string
		code       int
		reason     string
	}{
		{"missing name", `{"ID":"x","Port":1}`, 400, "Missing service name"},
		{"empty body", ``, 400, "Request decode failed: EOF"},
		{"not json", `{"Name":`, 400, "Request decode failed:"},
		{"bad duration", `{"Name":"a","Check":{"TTL":"soon"}}`, 400, "Request decode failed:"},
		{"wildcard address", `{"Name":"a","Address":"0.0.0.0"}`, 400, "Invalid service address"},
		{"http check without interval", `{"Name":"a","Check":{"HTTP":"http://127.0.0.1:1/"}}`, 400,
			"Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks"},
		{"check without kind", `{"Name":"a","Check":{"Name":"c"}}`, 400, "Invalid check: TTL must be > 0 for TTL checks"},
		{"interval and ttl", `{"Name":"a","Check":{"TTL":"1s","Interval":"1s","HTTP":"http://x/"}}`, 400,
			"Invalid check: Interval and TTL cannot both be specified"},
		{"bad check status", `{"Name":"a","Check":{"TTL":"1s","Status":"fine"}}`, 400,
			"Status for checks must 'passing', 'warning', 'critical'"},
		{"bad meta key", `{"Name":"a","Meta":{"bad key":"v"}}`, 400, "Invalid Service Meta: Couldn't load metadata pair ('bad key', 'v'): Key contains invalid characters"},
		{"reserved meta key", `{"Name":"a","Meta":{"consul-x":"v"}}`, 400, "Key prefix 'consul-' is reserved"},
		{"bad weights", `{"Name":"a","Weights":{"Passing":0,"Warning":1}}`, 400, "Invalid Weights: Passing must be greater than 0"},
		{"script check", `{"Name":"a","Check":{"Args":["/bin/true"],"Interval":"1s"}}`, 400, "not run by this test double"},
		{"ok snake case", `{"name":"a","id":"a-1","port":80,"check":{"ttl":"10s","deregister_critical_service_after":"90m"}}`, 200, ""},
	}
	for _, tt := range tests {
		code, body, _ := do(t, http.MethodPut, u, tt.body)
		if code != tt.code || !strings.Contains(body, tt.reason) {
			t.Errorf("%s: got %d %q, want %d containing %q", tt.name, code, body, tt.code, tt.reason)
		}
	}
	snap, ok := s.Service("a-1")
	if !ok || snap.Port != 80 || len(snap.Checks) != 1 || snap.Checks[0].DeregisterCriticalServiceAfter != 90*time.Minute {
		t.Fatalf("snake_case registration: %+v", snap)
	}
	if code, _, _ := do(t, http.MethodDelete, u, ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE on register: %d, want 405", code)
	}
}

func TestHTTPCheckStatuses(t *testing.T) {
	t.Parallel()
	var code atomic.Int32
	code.Store(200)
	var ua atomic.Value
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.Header.Get("User-Agent"))
		w.WriteHeader(int(code.Load()))
		_, _ = io.WriteString(w, "state "+strconv.Itoa(int(code.Load())))
	}))
	t.Cleanup(ready.Close)
	s := New(t, WithMinCheckInterval(10*time.Millisecond))
	c := client(t, s, "")
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "h", Name: "h", Port: 1,
		Check: &api.AgentServiceCheck{HTTP: ready.URL + "/readyz", Interval: "50ms", Timeout: "1s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ck := waitStatus(t, s, "h", StatusPassing, 5*time.Second)
	if !strings.Contains(ck.Output, "200 OK") || !strings.Contains(ck.Output, "state 200") {
		t.Fatalf("passing output: %q", ck.Output)
	}
	if got, _ := ua.Load().(string); got != "Consul Health Check" {
		t.Fatalf("User-Agent %q", got)
	}
	code.Store(429)
	waitStatus(t, s, "h", StatusWarning, 5*time.Second)
	code.Store(503)
	waitStatus(t, s, "h", StatusCritical, 5*time.Second)
	code.Store(204)
	waitStatus(t, s, "h", StatusPassing, 5*time.Second)
	ready.Close()
	ck = waitStatus(t, s, "h", StatusCritical, 5*time.Second)
	if !strings.Contains(ck.Output, "connect") {
		t.Fatalf("output for a closed endpoint: %q", ck.Output)
	}
}

func TestTTLCheck(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := client(t, s, "")
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "t", Name: "t", Check: &api.AgentServiceCheck{CheckID: "t-ttl", TTL: "300ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "t", StatusCritical, time.Second)
	if err := c.Agent().PassTTL("t-ttl", "all good"); err != nil {
		t.Fatal(err)
	}
	ck := waitStatus(t, s, "t", StatusPassing, time.Second)
	if ck.Output != "all good" {
		t.Fatalf("note as output: %q", ck.Output)
	}
	ck = waitStatus(t, s, "t", StatusCritical, 3*time.Second)
	if ck.Output != "TTL expired" {
		t.Fatalf("expired output: %q", ck.Output)
	}
	if err := c.Agent().UpdateTTL("t-ttl", "degraded", api.HealthWarning); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "t", StatusWarning, time.Second)

	code, body, _ := do(t, http.MethodPut, s.URL()+"/v1/agent/check/update/t-ttl", `{"Status":"meh"}`)
	if code != 400 || !strings.Contains(body, "Invalid check status") {
		t.Fatalf("bad status: %d %q", code, body)
	}
	code, body, _ = do(t, http.MethodPut, s.URL()+"/v1/agent/check/pass/nope", "")
	if code != 404 || !strings.Contains(body, `Unknown check ID "nope"`) {
		t.Fatalf("unknown check: %d %q", code, body)
	}
}

func TestDeregisterCriticalServiceAfter(t *testing.T) {
	t.Parallel()
	s := New(t, WithReaper(200*time.Millisecond, 20*time.Millisecond), WithMinCheckInterval(10*time.Millisecond))
	c := client(t, s, "")
	start := time.Now()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "doomed", Name: "d",
		Check: &api.AgentServiceCheck{TTL: "1h", DeregisterCriticalServiceAfter: "50ms"}, // floored to 200ms
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "kept", Name: "k", Check: &api.AgentServiceCheck{TTL: "1h"}, // critical, but no reaping asked
	}); err != nil {
		t.Fatal(err)
	}
	if !s.WaitFor(5*time.Second, func() bool { _, ok := s.Service("doomed"); return !ok }) {
		t.Fatal("critical service not reaped")
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("reaped after %v, before the 200ms floor", el)
	}
	if _, ok := s.Service("kept"); !ok {
		t.Fatal("service without DeregisterCriticalServiceAfter was reaped")
	}
}

func TestBlockingQueries(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := client(t, s, "")
	_, meta, err := c.Health().Service("web", "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := meta.LastIndex
	if idx == 0 {
		t.Fatal("X-Consul-Index missing or zero")
	}

	// Times out with the same index when nothing changes.
	start := time.Now()
	_, meta, err = c.Health().Service("web", "", false, &api.QueryOptions{WaitIndex: idx, WaitTime: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second || meta.LastIndex != idx {
		t.Fatalf("idle blocking query: %v, index %d→%d", el, idx, meta.LastIndex)
	}

	// Returns as soon as the service changes.
	go func() {
		time.Sleep(150 * time.Millisecond)
		_ = c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "w1", Name: "web", Check: &api.AgentServiceCheck{TTL: "1h"}})
	}()
	start = time.Now()
	entries, meta, err := c.Health().Service("web", "", false, &api.QueryOptions{WaitIndex: idx, WaitTime: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second || len(entries) != 1 || meta.LastIndex <= idx {
		t.Fatalf("woken blocking query: %v, %d entries, index %d→%d", el, len(entries), idx, meta.LastIndex)
	}

	// A change to another service does not wake a query on this one.
	idx = meta.LastIndex
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "o", Name: "other"})
	}()
	start = time.Now()
	_, meta, err = c.Health().Service("web", "", false, &api.QueryOptions{WaitIndex: idx, WaitTime: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 400*time.Millisecond || meta.LastIndex != idx {
		t.Fatalf("unrelated change woke the query: %v, index %d→%d", el, idx, meta.LastIndex)
	}
	// But it does wake the catalog's service list.
	_, cm, err := c.Catalog().Services(&api.QueryOptions{WaitIndex: 1, WaitTime: time.Second})
	if err != nil || cm.LastIndex <= 1 {
		t.Fatalf("catalog/services index: %+v %v", cm, err)
	}

	code, body, hdr := do(t, http.MethodGet, s.URL()+"/v1/health/service/web?index=1&wait=soon", "")
	if code != 400 || body != "Invalid wait time" {
		t.Fatalf("bad wait: %d %q", code, body)
	}
	code, _, hdr = do(t, http.MethodGet, s.URL()+"/v1/agent/services", "")
	if code != 200 || hdr.Get("X-Consul-Index") == "" || hdr.Get("X-Consul-KnownLeader") != "true" {
		t.Fatalf("agent/services headers: %d %v", code, hdr)
	}
	if code, body, _ := do(t, http.MethodGet, s.URL()+"/v1/catalog/services?dc=elsewhere", ""); code != 500 || body != "No path to datacenter" {
		t.Fatalf("other dc: %d %q", code, body)
	}
}

func TestFilterTagsAndPassing(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := client(t, s, "")
	for i, model := range []string{"tiny", "big"} {
		status := api.HealthPassing
		if i == 1 {
			status = api.HealthCritical
		}
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: "inf-" + model, Name: "inf", Tags: []string{"inference", model}, Meta: map[string]string{"model": model},
			Check: &api.AgentServiceCheck{TTL: "1h", Status: status},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ids := func(entries []*api.ServiceEntry) string {
		var out []string
		for _, e := range entries {
			out = append(out, e.Service.ID)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		filter  string
		tags    []string
		passing bool
		want    string
	}{
		{"", nil, false, "inf-big,inf-tiny"},
		{"", nil, true, "inf-tiny"},
		{"", []string{"inference", "big"}, false, "inf-big"},
		{`Service.Meta.model == "big"`, nil, false, "inf-big"},
		{`Service.Meta.model != "big" and "inference" in Service.Tags`, nil, false, "inf-tiny"},
		{`Service.Tags contains "tiny"`, nil, false, "inf-tiny"},
		{`Service.ID is not empty and Node.Datacenter == "dc1"`, nil, false, "inf-big,inf-tiny"},
	}
	for _, tt := range tests {
		entries, _, err := c.Health().ServiceMultipleTags("inf", tt.tags, tt.passing, &api.QueryOptions{Filter: tt.filter})
		if err != nil || ids(entries) != tt.want {
			t.Errorf("filter %q tags %v passing %v: got %q (%v), want %q", tt.filter, tt.tags, tt.passing, ids(entries), err, tt.want)
		}
	}
	for _, bad := range []string{`Service.ID == "a" or Service.ID == "b"`, `Bogus == "x"`, `(Service.ID == "a")`} {
		code, body, _ := do(t, http.MethodGet, s.URL()+"/v1/health/service/inf?filter="+url.QueryEscape(bad), "")
		if code != 400 || !strings.Contains(body, "Failed to create boolean expression evaluator") {
			t.Errorf("filter %q: %d %q, want 400", bad, code, body)
		}
	}
}

func TestACL(t *testing.T) {
	t.Parallel()
	s := New(t, WithACL(ACL{Tokens: map[string]Policy{
		"web-secret":    {AccessorID: "acc-web", ServiceWrite: []string{"web"}, NodeRead: true},
		"reader-secret": {ServiceRead: []string{"*"}, NodeRead: true, AgentRead: true},
	}}))
	reg := &api.AgentServiceRegistration{ID: "web-1", Name: "web", Check: &api.AgentServiceCheck{TTL: "1h"}}

	err := client(t, s, "").Agent().ServiceRegister(reg)
	if err == nil || !strings.Contains(err.Error(), "403") ||
		!strings.Contains(err.Error(), `Permission denied: anonymous token lacks permission 'service:write' on "web"`) {
		t.Fatalf("anonymous: %v", err)
	}
	err = client(t, s, "wrong-secret").Agent().ServiceRegister(reg)
	if err == nil || !strings.Contains(err.Error(), "403 (ACL not found)") {
		t.Fatalf("unknown token: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("error echoes the token: %v", err)
	}
	err = client(t, s, "web-secret").Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "db"})
	if err == nil || !strings.Contains(err.Error(), `token with AccessorID 'acc-web' lacks permission 'service:write' on "db"`) {
		t.Fatalf("write outside policy: %v", err)
	}
	if err := client(t, s, "web-secret").Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("allowed write: %v", err)
	}

	// The three ways of passing a token.
	for _, hdr := range [][]string{{"X-Consul-Token", "reader-secret"}, {"Authorization", "Bearer reader-secret"}, nil} {
		u := s.URL() + "/v1/agent/services"
		if hdr == nil {
			u += "?token=reader-secret"
		}
		code, body, _ := do(t, http.MethodGet, u, "", hdr...)
		var m map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &m) != nil || m["web-1"] == nil {
			t.Errorf("token via %v: %d %s", hdr, code, body)
		}
	}
	// Reads are filtered, not refused.
	names, meta, err := client(t, s, "").Catalog().Services(nil)
	if err != nil || len(names) != 0 || !meta.ResultsFilteredByACLs {
		t.Fatalf("anonymous catalog read: %v %+v %v", names, meta, err)
	}
	if _, err := client(t, s, "").Agent().Self(); err == nil || !strings.Contains(err.Error(), "agent:read") {
		t.Fatalf("anonymous agent/self: %v", err)
	}
	if _, err := client(t, s, "reader-secret").Agent().Self(); err != nil {
		t.Fatalf("reader agent/self: %v", err)
	}
	if err := client(t, s, "reader-secret").Agent().ServiceDeregister("web-1"); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("reader deregister: %v", err)
	}
	if err := client(t, s, "web-secret").Agent().ServiceDeregister("web-1"); err != nil {
		t.Fatalf("writer deregister: %v", err)
	}
}

func TestRestartForgetsServices(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := client(t, s, "")
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "a", Name: "a"}); err != nil {
		t.Fatal(err)
	}
	_, before, err := c.Catalog().Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()

	// A blocking query in flight when the agent goes away does not hang: its
	// connection is dropped, and it ends with an error, or (Go's transport retries
	// an idempotent request on a reused connection) with the restarted agent's
	// answer, which no longer has the service.
	type result struct {
		names map[string][]string
		err   error
	}
	resc := make(chan result, 1)
	go func() {
		names, _, err := c.Catalog().Services(&api.QueryOptions{WaitIndex: before.LastIndex, WaitTime: time.Minute})
		resc <- result{names, err}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-resc:
		if res.err == nil && res.names["a"] != nil {
			t.Fatalf("in-flight blocking query answered with the forgotten service: %v", res.names)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight blocking query still hanging after restart")
	}
	if s.Addr() != addr {
		t.Fatalf("address changed across restart: %s → %s", addr, s.Addr())
	}
	svcs, err := c.Agent().Services()
	if err != nil || len(svcs) != 0 {
		t.Fatalf("after restart: %v %v", svcs, err)
	}
	_, after, err := c.Catalog().Services(nil)
	if err != nil || after.LastIndex <= before.LastIndex {
		t.Fatalf("index must stay monotonic: %d → %d (%v)", before.LastIndex, after.LastIndex, err)
	}
	s.Stop()
	if _, err := c.Agent().Services(); err == nil {
		t.Fatal("stopped server still answers")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Agent().Services(); err != nil {
		t.Fatalf("after Start: %v", err)
	}
}

func TestReRegisterKeepsCheckStatus(t *testing.T) {
	t.Parallel()
	s := New(t)
	c := client(t, s, "")
	reg := &api.AgentServiceRegistration{ID: "r", Name: "r", Check: &api.AgentServiceCheck{CheckID: "r-ttl", TTL: "1h"}}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().PassTTL("r-ttl", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "r", StatusPassing, time.Second)
}
