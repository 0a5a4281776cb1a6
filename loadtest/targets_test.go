package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"http://127.0.0.1:8000", "http://127.0.0.1:8000", ""},
		{"https://infer.example:443/", "https://infer.example:443", ""},
		{"127.0.0.1:8000", "", "scheme must be http or https"},
		{"http://", "", "no host"},
		{"http://h:1/infer", "", "only scheme://host:port"},
	} {
		got, err := ParseTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%q = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestStaticTargetsRoundRobin(t *testing.T) {
	st, err := NewStaticTargets("http://a:1", "http://b:2", "http://c:3")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 6 {
		tg, _ := st.Next()
		got = append(got, tg.Host)
	}
	if want := []string{"a:1", "b:2", "c:3", "a:1", "b:2", "c:3"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

// fakeConsul implements GET /v1/health/service/<name> as Consul's agent documents it:
// ?passing filters to instances whose checks all pass, ?tag filters by tag, the
// X-Consul-Index header carries the index, and ?index=N&wait=D blocks until the index
// moves past N or D elapses.
type fakeConsul struct {
	mu      sync.Mutex
	index   uint64
	entries []*consul.ServiceEntry
	changed chan struct{}
	queries []string
}

func (f *fakeConsul) set(entries ...*consul.ServiceEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.index++
	if f.changed != nil {
		close(f.changed)
	}
	f.changed = make(chan struct{})
}

func entry(addr string, port int, status string, tags ...string) *consul.ServiceEntry {
	return &consul.ServiceEntry{
		Node:    &consul.Node{Node: "node-" + addr, Address: "10.9.9.9"},
		Service: &consul.AgentService{ID: fmt.Sprintf("inference-%s-%d", addr, port), Service: "inference", Address: addr, Port: port, Tags: tags},
		Checks:  consul.HealthChecks{{Status: status, ServiceName: "inference"}},
	}
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if !ok || name != "inference" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RawQuery)
	index, changed := f.index, f.changed
	f.mu.Unlock()
	if want, err := strconv.ParseUint(q.Get("index"), 10, 64); err == nil && want >= index {
		wait, err := time.ParseDuration(q.Get("wait"))
		if err != nil {
			wait = 5 * time.Minute
		}
		select {
		case <-changed:
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*consul.ServiceEntry
	for _, e := range f.entries {
		if q.Has("passing") && e.Checks.AggregatedStatus() != consul.HealthPassing {
			continue
		}
		if tag := q.Get("tag"); tag != "" && !slices.Contains(e.Service.Tags, tag) {
			continue
		}
		out = append(out, e)
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func TestConsulTargetsPassingOnlyAndRefresh(t *testing.T) {
	fc := &fakeConsul{}
	fc.set(entry("127.0.0.1", 9001, consul.HealthPassing, "v1"), entry("127.0.0.2", 9002, consul.HealthCritical, "v1"),
		entry("", 9003, consul.HealthPassing, "v1"), entry("127.0.0.4", 9004, consul.HealthPassing, "canary"))
	srv := httptest.NewServer(fc)
	defer srv.Close()
	cfg := consul.DefaultConfig()
	cfg.Address = strings.TrimPrefix(srv.URL, "http://")
	ct, err := NewConsulTargets(context.Background(), ConsulOptions{Service: "inference", Tag: "v1", Refresh: 2 * time.Second, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	hosts := func() []string {
		var out []string
		for _, tg := range ct.Targets() {
			out = append(out, tg.String())
		}
		slices.Sort(out)
		return out
	}
	// The critical instance is left out; the one without a service address uses its node's.
	if got, want := hosts(), []string{"http://10.9.9.9:9003", "http://127.0.0.1:9001"}; !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	a, _ := ct.Next()
	b, _ := ct.Next()
	c, _ := ct.Next()
	if a == b || a != c {
		t.Errorf("not round-robin: %v %v %v", a, b, c)
	}
	// A change is picked up by the blocking query well before its wait ends.
	fc.set(entry("127.0.0.5", 9005, consul.HealthPassing, "v1"))
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && !slices.Equal(hosts(), []string{"http://127.0.0.5:9005"}) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := hosts(); !slices.Equal(got, []string{"http://127.0.0.5:9005"}) {
		t.Errorf("after the change: %v", got)
	}
	// No passing instance: Next says so, and the request counts as no_target.
	fc.set()
	deadline = time.Now().Add(time.Second)
	for time.Now().Before(deadline) && len(ct.Targets()) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := ct.Next(); err != ErrNoTarget {
		t.Errorf("Next with no instance: %v, want ErrNoTarget", err)
	}
	fc.mu.Lock()
	first := fc.queries[0]
	fc.mu.Unlock()
	if !strings.Contains(first, "passing") || !strings.Contains(first, "tag=v1") {
		t.Errorf("query %q lacks passing or tag", first)
	}
}

func TestConsulTargetsErrors(t *testing.T) {
	fc := &fakeConsul{}
	fc.set(entry("127.0.0.2", 9002, consul.HealthCritical))
	srv := httptest.NewServer(fc)
	defer srv.Close()
	cfg := consul.DefaultConfig()
	cfg.Address = strings.TrimPrefix(srv.URL, "http://")
	if _, err := NewConsulTargets(context.Background(), ConsulOptions{Service: "inference", Config: cfg}); err == nil || !strings.Contains(err.Error(), "no passing instance") {
		t.Errorf("err = %v, want no passing instance", err)
	}
	if _, err := NewConsulTargets(context.Background(), ConsulOptions{Service: "other", Config: cfg}); err == nil || !strings.Contains(err.Error(), "consul health") {
		t.Errorf("err = %v, want a consul health error", err)
	}
}

// An agent that accepts the connection and never answers is an error after
// AnswerTimeout, not a hang.
func TestConsulTargetsHungAgent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	cfg := consul.DefaultConfig()
	cfg.Address = ln.Addr().String()
	start := time.Now()
	_, err = NewConsulTargets(context.Background(), ConsulOptions{Service: "inference", Config: cfg, AnswerTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no answer from the Consul agent within 200ms") {
		t.Errorf("err = %v, want no answer within 200ms", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %s", el)
	}
}
