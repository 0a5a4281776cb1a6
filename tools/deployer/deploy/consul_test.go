package deploy

import (
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/inferstack/inferstack/consul/consultest"
)

// withConsulDouble points h's deployer at a fresh Consul test double and returns a
// client of it.
func withConsulDouble(t *testing.T, h *harness) *consulapi.Client {
	t.Helper()
	agent := consultest.New(t)
	cfg := consulapi.DefaultConfig()
	cfg.Address = agent.Addr()
	client, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.d.Consul, h.d.ConsulAddress = client, agent.URL()
	return client
}

// TestUpWaitsForConsulHealth: with a Consul agent answering (the consultest
// double), Up waits until the inference server's own Consul registration passes
// its check, and links the Consul UI.
func TestUpWaitsForConsulHealth(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	client := withConsulDouble(t, h)

	// The server registers itself with a check that is critical until it is ready.
	err := client.Agent().ServiceRegister(&consulapi.AgentServiceRegistration{
		ID: "alloc-inf-1", Name: "inference", Address: "127.0.0.1", Port: 8000,
		Check: &consulapi.AgentServiceCheck{CheckID: "ready", TTL: "1m", Status: consulapi.HealthCritical},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(400*time.Millisecond, func() {
		_ = client.Agent().UpdateTTL("ready", "model loaded", consulapi.HealthPassing)
	})

	start := time.Now()
	if err := h.d.Up(testCtx(t, 20*time.Second), UpOptions{Jobs: []string{"inference"}}); err != nil {
		t.Fatalf("Up: %v\n%s", err, h.stderr)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("Up returned after %v, before the Consul check passed", waited)
	}
	contains(t, "stderr", h.stderr.String(), `Consul: service "inference": 1 registered (0 passing), want 1 passing`, `Consul: service "inference": 1 registered (1 passing), want 1 passing`)
	contains(t, "stdout", h.stdout.String(), "Consul UI    "+h.d.ConsulAddress+"/ui/\n")

	rep, err := h.d.Status(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Consul, "reachable at ") {
		t.Errorf("Consul status %q", rep.Consul)
	}
	var found bool
	for _, s := range rep.Jobs[0].Services {
		if s.Registry == "consul" && s.ID == "alloc-inf-1" && s.Health == "passing" && s.URL == "http://127.0.0.1:8000" {
			found = true
		}
	}
	if !found {
		t.Errorf("status lacks the Consul instance: %+v", rep.Jobs[0].Services)
	}
}
