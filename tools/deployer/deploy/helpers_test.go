package deploy

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inferstack/inferstack/internal/syncbuf"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/inferstack/inferstack/tools/deployer/internal/nomadfake"
)

type harness struct {
	fake   *nomadfake.Server
	d      *Deployer
	stdout *syncbuf.Buffer
	stderr *syncbuf.Buffer
}

// newHarness returns a deployer on the test bundle talking to a fresh fake Nomad,
// without Consul.
func newHarness(t *testing.T) *harness {
	t.Helper()
	fake := nomadfake.New()
	t.Cleanup(fake.Close)
	h := &harness{fake: fake, stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}}
	d, err := New(ClientOptions{Address: fake.URL}, &Bundle{FS: os.DirFS("testdata/bundle")}, h.stderr, h.stdout,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.Consul = nil
	h.d = d
	return h
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantKind fails unless err has the given kind and its message contains every want.
func wantKind(t *testing.T, err error, kind Kind, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want kind %d", kind)
	}
	if got := KindOf(err); got != kind {
		t.Fatalf("kind = %d, want %d; error: %v", got, kind, err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err.Error(), w)
		}
	}
}

func contains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q; it is:\n%s", what, w, got)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// serviceJob is what the server's parse returns for a service job with one group.
func serviceJob(id, group string, count int, services ...*nomadapi.Service) *nomadapi.Job {
	return &nomadapi.Job{
		ID: ptr(id), Name: ptr(id), Type: ptr("service"),
		TaskGroups: []*nomadapi.TaskGroup{{
			Name: ptr(group), Count: ptr(count), Services: services,
			Tasks: []*nomadapi.Task{{Name: "server", Driver: "raw_exec",
				Resources: &nomadapi.Resources{CPU: ptr(500), MemoryMB: ptr(512)}}},
		}},
	}
}

func nomadService(name string) *nomadapi.Service {
	return &nomadapi.Service{Name: name, Provider: "nomad", PortLabel: "http",
		Checks: []nomadapi.ServiceCheck{{Name: "ready", Type: "http", Path: "/readyz"}}}
}

func batchJob(id string, parameterized *nomadapi.ParameterizedJobConfig) *nomadapi.Job {
	return &nomadapi.Job{
		ID: ptr(id), Name: ptr(id), Type: ptr("batch"), ParameterizedJob: parameterized,
		TaskGroups: []*nomadapi.TaskGroup{{Name: ptr(id), Count: ptr(1),
			Tasks: []*nomadapi.Task{{Name: id, Driver: "raw_exec"}}}},
	}
}

func deployment(id, jobID, status, desc string, placed, healthy, unhealthy int) nomadapi.Deployment {
	return nomadapi.Deployment{ID: id, JobID: jobID, Status: status, StatusDescription: desc, JobVersion: 1,
		TaskGroups: map[string]*nomadapi.DeploymentState{"api": {DesiredTotal: 1, PlacedAllocs: placed, HealthyAllocs: healthy, UnhealthyAllocs: unhealthy, AutoRevert: true}}}
}

// scriptHealthyInference scripts a fake where job inference registers, deploys and
// passes its checks.
func scriptHealthyInference(f *nomadfake.Server) {
	f.Parsed["inference"] = serviceJob("inference", "api", 1, nomadService("inference"))
	f.Parsed["prometheus"] = serviceJob("prometheus", "prometheus", 1, nomadService("prometheus"))
	f.Parsed["loadtest"] = batchJob("loadtest", &nomadapi.ParameterizedJobConfig{MetaOptional: []string{"users", "duration", "thresholds"}})
	f.RegisterEval["inference"] = "eval-inf-0000"
	f.RegisterEval["prometheus"] = "eval-prom-000"
	f.Evals["eval-inf-0000"] = nomadfake.Script(
		nomadapi.Evaluation{ID: "eval-inf-0000", Status: "pending"},
		nomadapi.Evaluation{ID: "eval-inf-0000", Status: "complete", DeploymentID: "dep-inf-00000"},
	)
	f.Evals["eval-prom-000"] = nomadfake.Script(
		nomadapi.Evaluation{ID: "eval-prom-000", Status: "complete", DeploymentID: "dep-prom-0000"},
	)
	f.Deployments["dep-inf-00000"] = nomadfake.Script(
		deployment("dep-inf-00000", "inference", "running", "Deployment is running", 0, 0, 0),
		deployment("dep-inf-00000", "inference", "running", "Deployment is running", 1, 0, 0),
		deployment("dep-inf-00000", "inference", "successful", "Deployment completed successfully", 1, 1, 0),
	)
	f.Deployments["dep-prom-0000"] = nomadfake.Script(
		deployment("dep-prom-0000", "prometheus", "successful", "Deployment completed successfully", 1, 1, 0),
	)
	reg := func(job, name, alloc string, port int) *nomadapi.ServiceRegistration {
		return &nomadapi.ServiceRegistration{ID: "_nomad-task-" + alloc + "-" + name, ServiceName: name, JobID: job, AllocID: alloc, Address: "127.0.0.1", Port: port}
	}
	f.Services["inference"] = []*nomadapi.ServiceRegistration{reg("inference", "inference", "alloc-inf-1", 8000)}
	f.Services["prometheus"] = []*nomadapi.ServiceRegistration{reg("prometheus", "prometheus", "alloc-prom-1", 9090)}
	f.JobServices["inference"] = f.Services["inference"]
	f.JobServices["prometheus"] = f.Services["prometheus"]
	f.Checks["alloc-inf-1"] = nomadapi.AllocCheckStatuses{"c1": {Check: "ready", Service: "inference", Status: "success", StatusCode: 200}}
	f.Checks["alloc-prom-1"] = nomadapi.AllocCheckStatuses{"c2": {Check: "ready", Service: "prometheus", Status: "success", StatusCode: 200}}
}
